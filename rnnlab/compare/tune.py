"""`rnnlab tune`: an Optuna search over a run's options, each trial a normal run folder trained by fit().

The study lives in STUDY/study.db (SQLite), so a killed tune resumes: finished and pruned trials stay, and the
trial that was running when it died is marked failed and its parameters are tried again. Trials train with the
test evaluation off (`evaluate_test=False`) and are compared on validation accuracy alone; the best configuration
is then trained once more, in STUDY/best-trial-N, and only that run reads the test split. Frozen encoders are
encoded once for all trials (the feature cache is keyed by encoder and texts).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rnnlab import runs
from rnnlab.compare.tune_report import HISTORY_PNG, IMPORTANCE_PNG, plot_history, plot_importance, write_table
from rnnlab.compare.tune_space import Space, is_integer, with_value
from rnnlab.config import RunConfig
from rnnlab.errors import UserError

DB, BEST, STUDY_NAME = "study.db", "best.json", "rnnlab-tune"


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("rnnlab tune needs Optuna: pip install 'rnnlab[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from tune itself
    return optuna


def run_tune(base: RunConfig, space: Space, study_dir: Path, *, trials: int, timeout_min: float | None) -> dict[str, Any]:
    """Run the study to `trials` finished (complete or pruned) trials or `timeout_min`, then write its table,
    charts and best.json, and train the best configuration once with its test evaluation."""
    if trials < 1 or (timeout_min is not None and timeout_min <= 0):
        raise UserError(f"--trials must be at least 1 and --timeout positive, got {trials} and {timeout_min}")
    if base.run_dir is not None:
        raise UserError("--run-dir is not a tune option: every trial gets its own folder under --study")
    optuna = import_optuna()
    base.check_combinations()
    study_dir.mkdir(parents=True, exist_ok=True)
    study = _study(optuna, study_dir, base, space, startup=min(5, max(1, trials // 4)))
    _retry_killed(optuna, study)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0:
        objective = lambda trial: _objective(optuna, trial, base, space, study_dir=study_dir)  # noqa: E731
        study.optimize(objective, n_trials=remaining, timeout=None if timeout_min is None else timeout_min * 60,
                       callbacks=[_say])  # fmt: skip
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise UserError(f"{study_dir}: no trial has finished yet; give more --trials or a longer --timeout")
    return _conclude(optuna, study, base, space, study_dir=study_dir)


def _study(optuna, study_dir: Path, base: RunConfig, space: Space, *, startup: int):
    """Create or reopen the study; a study started with another base config or space is refused."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{(study_dir / DB).resolve()}")
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base.train.seed),
        # Pruning compares a trial's best validation accuracy by an epoch with the median of finished trials at that
        # epoch, from the second epoch on: the first, still in learning-rate warm-up, says little.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=2),
    )  # fmt: skip
    # How the trials run (device, progress bars, loader workers) may change on resume; what they train may not.
    how = {"device": "auto", "progress": True, "workers": 0}
    setup = {"base": dataclasses.replace(base, train=dataclasses.replace(base.train, **how)).to_dict(), "space": space}
    saved = study.user_attrs.get("setup")
    if saved is None:
        study.set_user_attr("setup", setup)
    elif saved != json.loads(json.dumps(setup)):
        raise UserError(f"--study {study_dir} was started with other options or another --space; "
                        "resume it with the same ones, or choose another --study")  # fmt: skip
    return study


def _retry_killed(optuna, study) -> None:
    """A trial still RUNNING in the database belongs to a killed tune (one tune per study at a time): mark it
    failed and queue its parameters again, so the resumed search trains what it was training."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        tqdm.write(f"trial {trial.number} was cut short by a killed tune; trying its parameters again")


def trial_config(base: RunConfig, params: dict[str, Any], run_dir: Path, *, test: bool) -> RunConfig:
    """`base` with a trial's parameters; trials skip the test evaluation and write no progress bars."""
    cfg = with_value(base, params, source="tune")
    cfg.check_combinations()
    train = dataclasses.replace(cfg.train, evaluate_test=test, progress=test and cfg.train.progress)
    return dataclasses.replace(cfg, train=train, run_dir=str(run_dir), overwrite=True)


def _suggest(trial, space: Space) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif is_integer(name, spec):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
    return params


def _objective(optuna, trial, base: RunConfig, space: Space, *, study_dir: Path) -> float:
    from rnnlab.training.fit import fit

    cfg = trial_config(base, _suggest(trial, space), study_dir / "trials" / f"trial-{trial.number:04d}", test=False)

    def report(row: dict[str, Any]) -> None:
        score = row.get("val_weighted_accuracy", row["val_accuracy"])  # what fit keeps the best epoch by
        trial.report(score, row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation accuracy {score:.4f} after epoch {row['epoch']}")

    return fit(cfg, on_epoch=report)["best_val_accuracy"]


def _say(study, trial) -> None:
    value = "" if trial.value is None else f" val acc {trial.value:.4f}"
    tqdm.write(f"trial {trial.number} {trial.state.name.lower()}{value}  {json.dumps(trial.params)}")


def _conclude(optuna, study, base: RunConfig, space: Space, *, study_dir: Path) -> dict[str, Any]:
    """best.json, the final run on test, the table and the charts."""
    from rnnlab.training.fit import fit

    best = study.best_trial
    final = study_dir / f"best-trial-{best.number:04d}"
    cfg = trial_config(base, best.params, final, test=True)
    runs.atomic_write_json(study_dir / BEST, dataclasses.replace(cfg, run_dir=None, overwrite=False).to_dict())
    if not runs.is_finished(final):
        fit(cfg)
    results = json.loads((final / runs.RESULTS).read_text())
    summary = {"best_trial": best.number, "best_val_accuracy": best.value, "params": best.params,
               "test_accuracy": results["test_accuracy"], "test_macro_f1": results["test_macro_f1"],
               "final_run": str(final), "trials": len(study.trials)}  # fmt: skip
    runs.atomic_write_json(study_dir / "summary.json", summary)
    rows = _rows(study)
    test = f"test accuracy {results['test_accuracy']:.4f}, macro-F1 {results['test_macro_f1']:.4f}"
    lines = [f"# Study {study_dir}", "", f"Best: trial {best.number}, validation accuracy {best.value:.4f}; "
             f"trained again as {final.name}: {test}."]  # fmt: skip
    write_table(rows, study_dir, params=list(space), summary=lines)
    plot_history(rows, study_dir / HISTORY_PNG)
    _importance(optuna, study, study_dir / IMPORTANCE_PNG, seed=base.train.seed)
    return summary


def _rows(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        seen = list(t.intermediate_values.values())
        value = t.value if t.value is not None else (max(seen) if seen else None)
        seconds = None if t.duration is None else round(t.duration.total_seconds(), 1)
        rows.append({"trial": t.number, "state": t.state.name, "val_accuracy": value, "epochs_run": len(seen),
                     "seconds": seconds, **t.params})  # fmt: skip
    return rows


def _importance(optuna, study, path: Path, *, seed: int) -> None:
    """fANOVA importances over the complete trials (seeded); with too few trials to tell, an empty chart says so."""
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:
        plot_importance({}, path, note=f"not enough finished trials ({e})"[:80])
        return
    plot_importance(importances, path)
