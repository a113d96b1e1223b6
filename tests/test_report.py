import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab.compare.report import build_report, summarize_run

N = 40  # test examples per fixture run
HASH = "a" * 64


def _write_run(run_dir: Path, encoder: str, head: str, seed: int, wrong: int, *, split_hash: str = HASH,
               finished: bool = True, epochs: int = 3, with_config: bool = True) -> None:  # fmt: skip
    """A run folder whose first `wrong` test examples are mispredicted (so accuracy = 1 - wrong / N)."""
    run_dir.mkdir(parents=True)
    labels = ["0", "1"] * (N // 2)
    preds = [("1" if y == "0" else "0") if i < wrong else y for i, y in enumerate(labels)]
    if with_config:
        config = {"encoder": {"encoder": encoder, "finetune": False}, "model": {"head": head},
                  "train": {"seed": seed, "epochs": 3}}  # fmt: skip
        (run_dir / "config.json").write_text(json.dumps(config))
    metrics = [{"epoch": e, "val_accuracy": 0.5 + 0.1 * e + 0.01 * seed} for e in range(1, epochs + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    lines = [json.dumps({"index": 100 + i, "label": y, "pred": p, "probs": [0.5, 0.5]}) for i, (y, p) in
             enumerate(zip(labels, preds, strict=True))]  # fmt: skip
    (run_dir / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    if finished is None:
        return
    confusion = [[0, 0], [0, 0]]
    for y, p in zip(labels, preds, strict=True):
        confusion[int(y)][int(p)] += 1
    results = {
        "finished": finished, "test_accuracy": 1 - wrong / N, "test_macro_f1": 1 - wrong / N - 0.01,
        "confusion_matrix": confusion, "label_names": ["0", "1"], "best_epoch": 1 + seed, "train_seconds": 10.0 + seed,
        "reviews_per_s": 100.0 * (1 + seed), "peak_memory_mb": 500.0, "params_trainable": 4000 if encoder != "tfidf"
        else 9000, "params_total": 1_000_000, "encoder": encoder, "head": head, "finetune": False, "seed": seed,
        "split_hash": split_hash,
    }  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture
def grid(tmp_path) -> Path:
    # wrong-counts chosen so the test statistics are known by hand (see test_mcnemar_p_value_for_constructed_case).
    wrong = {"bilstm": (4, 2), "gru": (5, 7), "lstm": (14, 12)}
    for head, per_seed in wrong.items():
        for seed, n_wrong in enumerate(per_seed):
            _write_run(tmp_path / "grid" / f"minilm-{head}" / f"seed{seed}", "minilm", head, seed, n_wrong)
    _write_run(tmp_path / "grid" / "baseline", "tfidf", "logreg", 0, 8, with_config=False)
    _write_run(tmp_path / "grid" / "minilm-rnn" / "seed0", "minilm", "rnn", 0, 0, finished=None, epochs=1)
    _write_run(tmp_path / "grid" / "minilm-rnn" / "seed1", "minilm", "rnn", 1, 0, finished=False, epochs=2)
    return tmp_path / "grid"


def _rows(report: dict) -> dict[str, dict]:
    return {r["head"]: r for r in report["rows"]}


def test_table_values_and_order(grid):
    report = build_report(grid)
    rows = _rows(report)
    assert [r["head"] for r in report["rows"]] == ["bilstm", "gru", "logreg", "lstm"]
    assert rows["bilstm"]["accuracy_mean"] == pytest.approx(0.925)
    assert rows["bilstm"]["accuracy_std"] == pytest.approx(np.std([0.9, 0.95], ddof=1))
    assert rows["gru"]["macro_f1_mean"] == pytest.approx(0.84)
    assert rows["logreg"]["n"] == 1 and rows["logreg"]["accuracy_std"] == 0.0 and rows["logreg"]["baseline"]
    assert rows["bilstm"]["best_epoch"] == 1.5 and rows["bilstm"]["train_seconds"] == 10.5
    assert rows["logreg"]["params_trainable"] == 9000 and rows["bilstm"]["seeds"] == [0, 1]
    csv = pd.read_csv(grid / "report" / "results.csv")
    assert csv["head"].tolist() == ["bilstm", "gru", "logreg", "lstm"]
    assert csv["accuracy_mean"].iloc[0] == pytest.approx(0.925)
    saved = json.loads((grid / "report" / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))


def test_mcnemar_p_value_for_constructed_case(grid):
    rows = _rows(build_report(grid))
    # Seed 0 pairs: bilstm misses examples 0-3; lstm misses 0-13 -> b=10, c=0 -> exact p = 2 * 0.5**10.
    assert (rows["lstm"]["mcnemar_b"], rows["lstm"]["mcnemar_c"]) == (10, 0)
    assert rows["lstm"]["p_value"] == pytest.approx(2 * 0.5**10)
    assert rows["gru"]["p_value"] == 1.0  # b=1, c=0
    assert rows["logreg"]["p_value"] == pytest.approx(2 * 0.5**4)
    assert rows["bilstm"]["p_value"] is None  # the best row is the reference


def test_markdown_order_summary_and_skipped_runs(grid):
    report = build_report(grid)
    md = (grid / "report" / "results.md").read_text()
    summary_at, table_at, notes_at = md.index("The best row is"), md.index("| # |"), md.index("## Notes")
    assert summary_at < table_at < notes_at
    assert (
        "minilm + bilstm with test accuracy 92.5% ± 3.5 points" in report["summary"]
        and "12.5 points above the TF-IDF" in report["summary"]
    )
    assert "Significantly worse than the best" in report["summary"] and "minilm + lstm (p=0.00195)" in md
    assert "highest throughput is minilm + bilstm" in report["summary"]
    assert "rnn" not in {r["head"] for r in report["rows"]}
    assert len(report["skipped"]) == 2 and all("unfinished" in s for s in report["skipped"])
    assert "- Skipped minilm-rnn/seed1: unfinished (2/3 epochs)" in md
    assert "(baseline)" in md and "WARNING" not in md


def test_charts_written(grid):
    report = build_report(grid, out_dir=grid / "out")
    for name in ("accuracy.png", "val_curves_minilm.png", "confusion.png", "results.md"):
        path = grid / "out" / name
        assert path.exists() and path.stat().st_size > 1000, name
        assert str(path) in report["files"]
    assert not (grid / "report").exists()
    assert not list((grid / "out").glob("*.tmp"))
    build_report(grid, out_dir=grid / "out")  # a rerun must not pick up its own output as runs
    assert len(build_report(grid, out_dir=grid / "out")["rows"]) == 4


def test_mismatched_split_hash_is_reported(grid):
    for seed in (0, 1):
        results_path = grid / "minilm-gru" / f"seed{seed}" / "results.json"
        results = json.loads(results_path.read_text())
        results["split_hash"] = "b" * 64
        results_path.write_text(json.dumps(results))
    report = build_report(grid)
    gru = _rows(report)["gru"]
    assert gru["p_value"] is None and gru["test_note"] == "split differs"
    md = (grid / "report" / "results.md").read_text()
    assert "**WARNING:**" in md and "minilm + gru: test split hash bbbbbbbbbbbb differs" in md
    assert md.index("WARNING") < md.index("| # |")
    assert _rows(report)["lstm"]["p_value"] == pytest.approx(2 * 0.5**10)  # others still tested


def test_empty_grid(tmp_path):
    report = build_report(tmp_path)
    assert report["rows"] == [] and "No finished runs" in report["summary"]
    assert (tmp_path / "report" / "results.md").exists()


def test_summarize_run(grid):
    run = summarize_run(grid / "minilm-gru" / "seed1")
    assert run["finished"] and run["encoder"] == "minilm" and run["head"] == "gru" and run["seed"] == 1
    assert run["test_accuracy"] == pytest.approx(1 - 7 / 40) and run["epochs_done"] == 3
    assert run["best_val_accuracy"] == pytest.approx(0.81)
    unfinished = summarize_run(grid / "minilm-rnn" / "seed0")
    assert not unfinished["finished"] and unfinished["head"] == "rnn" and unfinished["epochs_done"] == 1


def test_report_modules_import_with_torch_made_unimportable():
    # A finder that refuses torch makes `import torch` raise ImportError, as on a machine without torch.
    modules = "rnnlab.compare.report, rnnlab.compare.text, rnnlab.compare.charts, rnnlab.compare.stats, rnnlab.compare.baseline"
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('torch is unimportable here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"import {modules}, rnnlab.runs, rnnlab.metrics\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_corrupt_results_is_skipped_not_fatal(grid):
    (grid / "minilm-gru" / "seed1" / "results.json").write_text('{"finished": tr')
    report = build_report(grid)
    assert _rows(report)["gru"]["n"] == 1
    assert any(s.startswith("minilm-gru/seed1: unreadable") for s in report["skipped"])


def test_summary_when_the_baseline_wins(tmp_path):
    _write_run(tmp_path / "baseline", "tfidf", "logreg", 0, 2, with_config=False)
    _write_run(tmp_path / "lstm", "minilm", "lstm", 0, 6)
    summary = build_report(tmp_path)["summary"]
    assert summary.startswith("The best row is tfidf + logreg")
    assert "the closest, minilm + lstm, falls 10.0 points short of it" in summary
