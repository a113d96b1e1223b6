"""The only place that parses arguments: `rnnlab COMMAND [OPTIONS]`, generated from typed dataclasses by tyro.

Every user error ends here as one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import tyro

from rnnlab.config import AnalyzeConfig, EncoderConfig, HeadName, RunConfig, ServeLimits
from rnnlab.errors import UserError
from rnnlab.lm.config import LMTrainArgs
from rnnlab.presets import LM_PRESETS, PRESETS
from rnnlab.presets import expand as expand_presets

Positional = tyro.conf.Positional


@dataclass
class TrainArgs:
    """Train a classifier: encoder → head → classes. Writes a run folder."""

    run: RunConfig = field(default_factory=RunConfig)
    config: str | None = None
    """JSON config to start from (a run's config.json or hand-written); other flags override it."""
    preset: str | None = None
    """Named configuration to start from (rnnlab/presets.py, e.g. `finetune-bilstm`); other flags override it."""
    resume: str | None = None
    """Continue the unfinished run in this folder from its last checkpoint."""
    dry_run: bool = False
    """One epoch of one optimizer step (with validation and test): a quick check that data, model and options work."""


@dataclass
class EvaluateArgs:
    """Evaluate a finished run on its own test split, or on another labelled file."""

    run: Positional[str]
    data: str | None = None
    """CSV, TSV or JSONL file to evaluate on (default: the run's test split)."""
    text_column: str | None = None
    """Column of --data holding the text (default: the run's --text-column)."""
    label_column: str | None = None
    """Column of --data holding the label (default: the run's --label-column)."""
    label_map: str | None = None
    """Rename --data's labels to the run's: `negative=0,positive=1`."""
    device: str = "auto"
    """Device to run on."""


@dataclass
class PredictArgs:
    """Label texts with a finished run: given as arguments, with --file, or on stdin; one line per text."""

    run: Positional[str]
    texts: Positional[list[str]] = field(default_factory=list)
    file: str | None = None
    """Text file with one text per line (`-` for stdin)."""
    jsonl: bool = False
    """Print one JSON object per line instead of `label<TAB>probabilities`."""
    batch_size: int = 64
    """Texts per forward pass."""
    device: str = "auto"
    """Device to run on (torch engine)."""
    engine: Literal["torch", "onnx"] = "torch"
    """`onnx` runs the graph written by `rnnlab export` under onnxruntime."""
    quantize: bool = False
    """With --engine onnx: use the int8 dynamically quantized graph."""
    bf16: bool = True
    """bf16 where the hardware runs it natively (torch engine; --no-bf16 for fp32)."""
    uncalibrated: bool = False
    """Raw probabilities, without the temperature `rnnlab analyze` fitted (calibration.json)."""
    progress: bool = True
    """Progress bar on stderr with --file (--no-progress turns it off)."""


@dataclass
class AnalyzeArgs:
    """Analyze a finished run: calibration (fits and stores a temperature), mistakes, slices, label issues,
    behavioural tests, attributions. Writes RUN/analysis/ (report.md, report.json, report.html, PNGs, CSVs)."""

    run: Positional[str]
    options: tyro.conf.OmitArgPrefixes[AnalyzeConfig] = field(default_factory=AnalyzeConfig)


@dataclass
class ServeArgs:
    """Serve a finished run over HTTP: a JSON API with micro-batching, Prometheus metrics and a web page at `/`.

    Set RNNLAB_API_KEY in the environment to require `Authorization: Bearer <key>` on /v1/classify."""

    run: Positional[str]
    engine: Literal["torch", "onnx"] = "torch"
    """`onnx` runs the graph written by `rnnlab export` (token highlights still come from the torch model)."""
    host: str = "127.0.0.1"
    """Address to bind; loopback by default, so nothing outside this machine reaches it unless asked."""
    port: int = 8000
    threads: int | None = None
    """Threads for the model's math (default: torch's choice, one per core)."""
    bf16: bool = True
    """bf16 where the CPU or GPU runs it natively (--no-bf16: fp32, whose probabilities do not depend on which
    requests share a batch)."""
    uncalibrated: bool = False
    """Raw probabilities, without the temperature `rnnlab analyze` fitted (calibration.json)."""
    limits: tyro.conf.OmitArgPrefixes[ServeLimits] = field(default_factory=ServeLimits)


@dataclass
class ExportArgs:
    """Export a finished run (encoder + head + classifier): one ONNX graph, or a Hugging Face folder."""

    run: Positional[str]
    format: Literal["onnx", "hf"] = "onnx"
    """`onnx`: RUN/model.onnx for `--engine onnx`; `hf`: a folder `transformers.pipeline` loads (trust_remote_code)."""
    quantize: bool = False
    """With --format onnx: also write an int8 dynamically quantized graph (model.int8.onnx)."""
    out: str | None = None
    """With --format hf: the folder to write (default RUN/hf)."""


@dataclass
class CompareArgs:
    """Train the encoder × head grid with several seeds, then write the results table and charts."""

    # Grids default to frozen encoders: each is encoded once and every cell trains on the cached features.
    run: RunConfig = field(default_factory=lambda: RunConfig(encoder=EncoderConfig(finetune=False)))
    encoders: str = "minilm,glove"
    """Comma-separated encoders (any --encoder value)."""
    heads: str = ",".join(get_args(HeadName))
    """Comma-separated heads."""
    seeds: int = 3
    """Seeds per cell (mean ± std in the table)."""
    grid: str = "runs/grid"
    """Grid folder: one run folder per cell, and report/."""
    baseline: bool = True
    """Add the TF-IDF + logistic regression row (--no-baseline turns it off)."""
    config: str | None = None
    """JSON config every cell starts from; other flags override it."""


@dataclass
class TuneArgs:
    """Search a run's options with Optuna (TPE, median pruning on validation accuracy); test is read only by the best."""

    # As in compare, encoders default to frozen: a transformer is encoded once and every trial trains on the cache.
    run: RunConfig = field(default_factory=lambda: RunConfig(encoder=EncoderConfig(finetune=False)))
    trials: int = 20
    """Trials the study should hold, finished or pruned (a resumed study counts those it has)."""
    timeout: float | None = None
    """Stop starting new trials after this many minutes (this invocation; the running trial and the final run finish)."""
    space: str | None = None
    """JSON search space, e.g. `{"lr": {"low": 1e-4, "high": 1e-2, "log": true}, "pooling": {"choices": ["max"]}}`
    (default: one per encoder kind, rnnlab/compare/tune_space.py)."""
    study: str = "runs/tune"
    """Study folder: study.db (resumable), trials/, best-trial-N/, trials.md/.csv, history.png, importance.png,
    best.json."""
    config: str | None = None
    """JSON config every trial starts from; other flags override it."""
    preset: str | None = None
    """Named configuration every trial starts from (rnnlab/presets.py); other flags override it."""


@dataclass
class ReportArgs:
    """Rebuild the results table and charts of a grid (or any folder of runs); needs no torch."""

    dir: Positional[str]


def _train(args: TrainArgs) -> None:
    import dataclasses

    from rnnlab import runs
    from rnnlab.training.distributed import launched_rank
    from rnnlab.training.fit import fit

    if args.resume:
        if args.dry_run:
            raise UserError("--dry-run starts a new run; it cannot be combined with --resume")
        cfg = runs.read_config(Path(args.resume))  # as it was saved: the run continues exactly
    else:
        cfg = args.run
        cfg.check_combinations()
        if args.dry_run:  # one optimizer step and one short epoch: checks data, model and run folder in seconds
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1, max_steps=1))
    results = fit(cfg, resume=args.resume is not None)
    if launched_rank() == 0 and results["test_accuracy"] is None:  # --no-evaluate-test
        print(f"best epoch {results['best_epoch']}, val accuracy {results['best_val_accuracy']:.4f} (test not evaluated)")
    elif launched_rank() == 0:  # under torchrun every process returns the same results
        print(f"test accuracy {results['test_accuracy']:.4f}  macro-F1 {results['test_macro_f1']:.4f}  "
          f"(best epoch {results['best_epoch']}, val accuracy {results['best_val_accuracy']:.4f})")  # fmt: skip


def _evaluate(args: EvaluateArgs) -> None:
    from rnnlab.serve.evaluate import evaluate_run

    if args.data is None and (args.text_column or args.label_column or args.label_map):
        raise UserError("--text-column, --label-column and --label-map describe --data; pass --data too")
    result = evaluate_run(Path(args.run), args.data, args.device, text_column=args.text_column,
                          label_column=args.label_column, label_map=args.label_map)  # fmt: skip
    print(json.dumps(result, indent=2))


def _predict(args: PredictArgs) -> None:
    import rnnlab

    predictor = rnnlab.load(args.run, device=args.device, bf16=args.bf16, calibrated=not args.uncalibrated,
                            engine=args.engine, quantized=args.quantize)  # fmt: skip
    predictor.batch_size = args.batch_size
    rows = predictor.stream(_texts(args))
    if args.progress and args.file not in (None, "-"):  # a progress bar on stderr (a terminal only), so stdout stays the labels
        from tqdm.auto import tqdm

        with Path(args.file).open("rb") as f:
            total = sum(1 for line in f if line.strip())
        rows = tqdm(rows, total=total, unit="text", desc="predicting", disable=None, file=sys.stderr)
    for row in rows:
        if args.jsonl:
            print(json.dumps(row))
        else:
            print(row["label"] + "\t" + " ".join(f"{k}={v:.4f}" for k, v in row["probs"].items()))


def _texts(args: PredictArgs):
    if args.texts:
        return iter(args.texts)
    if args.file in (None, "-"):
        return (line.rstrip("\n") for line in sys.stdin if line.strip())
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    return (line.rstrip("\n") for line in path.open(encoding="utf-8", errors="strict") if line.strip())


def _compare(args: CompareArgs) -> None:
    from rnnlab.compare.grid import run_grid

    if args.run.run_dir is not None:
        raise UserError("--run-dir is not a compare option: every cell gets its own folder under --grid")

    split = lambda value: [v.strip() for v in value.split(",") if v.strip()]  # noqa: E731
    report = run_grid(args.run, Path(args.grid), split(args.encoders), split(args.heads), args.seeds, args.baseline)
    if report:
        print(f"report: {Path(args.grid) / 'report' / 'results.md'}")


def _tune(args: TuneArgs) -> None:
    from rnnlab.compare.tune import run_tune
    from rnnlab.compare.tune_space import default_space, load_space

    space = load_space(args.space, args.run) if args.space else default_space(args.run)
    summary = run_tune(args.run, space, Path(args.study), trials=args.trials, timeout_min=args.timeout)
    print(f"best trial {summary['best_trial']}: val accuracy {summary['best_val_accuracy']:.4f}, test accuracy "
          f"{summary['test_accuracy']:.4f}  macro-F1 {summary['test_macro_f1']:.4f}; "
          f"reproduce with: rnnlab train --config {Path(args.study) / 'best.json'}")  # fmt: skip


def _export(args: ExportArgs) -> None:
    if args.format == "hf":
        if args.quantize:
            raise UserError("--quantize writes an int8 ONNX graph; it does not apply to --format hf")
        from rnnlab.serve.hf import export_hf

        print(f"wrote {export_hf(Path(args.run), Path(args.out) if args.out else None)}")
        return
    from rnnlab.serve.onnx import export_onnx

    if args.out:
        raise UserError("--out names the Hugging Face folder; --format onnx writes RUN/model.onnx")
    print(f"wrote {export_onnx(Path(args.run), quantize=args.quantize)}")


def _analyze(args: AnalyzeArgs) -> None:
    from rnnlab.analyze.run import analyze_run

    analyze_run(Path(args.run), args.options)


def _serve(args: ServeArgs) -> None:
    from rnnlab.serve.http import serve

    serve(Path(args.run), engine=args.engine, host=args.host, port=args.port, threads=args.threads, bf16=args.bf16,
          calibrated=not args.uncalibrated, limits=args.limits)  # fmt: skip


def _report(args: ReportArgs) -> None:
    from rnnlab.compare.report import build_report

    if not Path(args.dir).is_dir():
        raise UserError(f"{args.dir}: folder not found")
    report = build_report(Path(args.dir))
    print(f"wrote {report.get('out_dir', Path(args.dir) / 'report')}")


COMMANDS: dict[str, tuple[type, Callable[[Any], None]]] = {
    "train": (TrainArgs, _train),
    "evaluate": (EvaluateArgs, _evaluate),
    "predict": (PredictArgs, _predict),
    "export": (ExportArgs, _export),
    "serve": (ServeArgs, _serve),
    "analyze": (AnalyzeArgs, _analyze),
    "compare": (CompareArgs, _compare),
    "tune": (TuneArgs, _tune),
    "report": (ReportArgs, _report),
}


def _lm_commands() -> dict[str, tuple[type, Callable[[Any], None]]]:
    from rnnlab.lm import config as lm_config

    def runner(name: str) -> Callable[[Any], None]:
        return lambda args: getattr(__import__("rnnlab.lm.commands", fromlist=[name]), name)(args)

    return {
        "train": (lm_config.LMTrainArgs, runner("train")),
        "eval": (lm_config.LMEvalArgs, runner("evaluate")),
        "generate": (lm_config.LMGenerateArgs, runner("generate")),
    }


_PRESETS = {TrainArgs: PRESETS, TuneArgs: PRESETS, LMTrainArgs: LM_PRESETS}


def _demo_commands() -> dict[str, tuple[type, Callable[[Any], None]]]:
    from rnnlab.demos import config as demo_config

    def runner(module: str) -> Callable[[Any], None]:
        return lambda cfg: __import__(f"rnnlab.demos.{module}", fromlist=["run"]).run(cfg)

    return {
        "char": (demo_config.CharConfig, runner("char")),
        "memory": (demo_config.MemoryConfig, runner("memory")),
        "gradients": (demo_config.GradientsConfig, runner("gradients")),
        "gates": (demo_config.GatesConfig, runner("gates")),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        name, (kind, handler), rest = _command(argv)
        rest = expand_presets(rest, _PRESETS[kind]) if kind in _PRESETS else rest
        handler(_parse(kind, rest, f"rnnlab {name}"))
    except UserError as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnlab: interrupted; an unfinished run resumes with `rnnlab train --resume RUN`", file=sys.stderr)
        return 130
    return 0


def _command(argv: list[str]) -> tuple[str, tuple[type, Callable[[Any], None]], list[str]]:
    table, name, rest = COMMANDS, argv[0] if argv else "", argv[1:]
    if name in ("demo", "lm"):
        group, table = name, _demo_commands() if name == "demo" else _lm_commands()
        name, rest = f"{group} {rest[0]}" if rest else group, rest[1:]
    key = name.removeprefix("demo ").removeprefix("lm ")
    if key in ("", "-h", "--help", "demo", "lm"):
        print(_usage(table, name))
        raise SystemExit(0 if key in ("-h", "--help") else 2)
    if key not in table:
        raise UserError(f"unknown command {name!r}; choose from: {', '.join(table)}")
    return name, table[key], rest


def _usage(table: dict, name: str) -> str:
    prefix = "rnnlab " + name.split()[0] if name.split()[0:1] in (["demo"], ["lm"]) else "rnnlab"
    lines = [f"usage: {prefix} COMMAND [OPTIONS]   ({prefix} COMMAND --help for its options)", ""]
    lines += [f"  {cmd:10s} {(kind.__doc__ or '').strip().splitlines()[0]}" for cmd, (kind, _) in table.items()]
    if prefix == "rnnlab":
        lines.append("  lm         Language models (ULMFiT): train, eval, generate")
        lines.append("  demo       Teaching demos: char, memory, gradients, gates")
    return "\n".join(lines)


def _parse(kind: type, args: list[str], prog: str) -> Any:
    """Parse with tyro; its boxed error becomes one line naming the option at fault."""
    default = None
    if "--config" in args and kind in (TrainArgs, CompareArgs, TuneArgs):
        i = args.index("--config")
        if i + 1 >= len(args):
            raise UserError("--config needs a file")
        default = kind(run=RunConfig.load(args[i + 1]), config=args[i + 1])
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
            return tyro.cli(kind, args=args, prog=prog, default=default, config=(tyro.conf.OmitArgPrefixes,))
    except SystemExit as e:
        if e.code in (0, None):
            print(buffer.getvalue(), end="")
            raise
        raise UserError(_one_line(buffer.getvalue())) from None


def _one_line(text: str) -> str:
    lines = [re.sub(r"[│╭╮╰╯─]+", " ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-")]
    message = lines[1] if len(lines) > 1 else (lines[0] if lines else "invalid arguments")
    hint = next((lines[i + 1].split()[0] for i, line in enumerate(lines[:-1]) if line.startswith("Perhaps")), None)
    return f"{message} (did you mean {hint}?)" if hint else message


if __name__ == "__main__":
    raise SystemExit(main())
