"""`rnnlab compare`: every cell is a normal run on one shared split, and a killed grid resumes without redoing work."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import rnnlab, write_data

from rnnlab import runs


def compare_args(data: Path, glove: Path, grid: Path, seeds: int = 1) -> list[str]:
    return ["compare", "--data", str(data), "--encoders", str(glove), "--heads", "gru,fnn", "--seeds", str(seeds),
            "--grid", str(grid), "--hidden-size", "8", "--max-length", "16", "--epochs", "1", "--batch-size", "8",
            "--checkpoint-every", "3", "--no-progress", "--no-bf16"]  # fmt: skip


def cells(grid: Path) -> list[Path]:
    return sorted(p.parent for p in grid.glob("*/config.json"))


def test_every_cell_shares_the_split_and_the_report_lists_each_row(tmp_path):
    data, glove = write_data(tmp_path)
    done = rnnlab(compare_args(data, glove, tmp_path / "grid", seeds=2))
    assert done.returncode == 0, done.stderr
    runs_ = cells(tmp_path / "grid")
    assert len(runs_) == 4 and all(runs.is_finished(r) for r in runs_)  # 2 heads × 2 seeds
    hashes = {json.loads((r / runs.SPLIT).read_text())["hash"] for r in runs_}
    hashes.add(json.loads((tmp_path / "grid" / "tfidf-logreg" / runs.RESULTS).read_text())["split_hash"])
    assert len(hashes) == 1
    table = (tmp_path / "grid" / "report" / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 3  # header, gru, fnn, baseline
    # Every cell is also calibrated on validation and put through the behavioural suite; the table shows both.
    for run in runs_:
        checks = json.loads((run / runs.CHECKS).read_text())
        assert checks["temperature"] > 0 and 0 <= checks["ece_scaled"] <= 1
        assert 0 <= checks["negation_failure_rate"] <= 1 and (run / runs.CALIBRATION).is_file()
    results = (tmp_path / "grid" / "report" / "results.md").read_text()
    assert "ECE (scaled)" in results and "negation fails" in results
    row = next(line for line in results.splitlines() if "+ gru" in line)
    assert row.count("%") >= 2  # behaviour and negation failure rates filled in for a trained cell


def test_a_killed_grid_resumes_its_cell_and_skips_finished_ones(tmp_path):
    data, glove = write_data(tmp_path)
    grid = tmp_path / "grid"
    killed = rnnlab(compare_args(data, glove, grid), kill_at=5)  # inside the first cell, after the step-3 checkpoint
    assert killed.returncode != 0
    first = grid / f"{glove.name}-gru-seed0"
    assert (first / runs.CHECKPOINT).exists() and not runs.is_finished(first)

    resumed = rnnlab(compare_args(data, glove, grid))
    assert resumed.returncode == 0, resumed.stderr
    assert all(runs.is_finished(r) for r in cells(grid)) and len(cells(grid)) == 2
    stamps = {r: (r / runs.RESULTS).stat().st_mtime_ns for r in cells(grid)}

    again = rnnlab(compare_args(data, glove, grid))
    assert again.returncode == 0, again.stderr
    assert stamps == {r: (r / runs.RESULTS).stat().st_mtime_ns for r in cells(grid)}  # nothing retrained


def test_frozen_and_finetuned_cells_of_one_grid_get_different_folders(tmp_path):
    from rnnlab.compare.grid import grid_cells
    from rnnlab.config import EncoderConfig, RunConfig

    def folders(finetune: bool) -> set[str]:
        base = RunConfig(encoder=EncoderConfig(finetune=finetune))
        return {Path(c.run_dir).name for c in grid_cells(base, tmp_path, ["minilm"], ["bilstm", "gru"], seeds=2)}

    frozen, tuned = folders(False), folders(True)
    assert len(frozen) == len(tuned) == 4 and not frozen & tuned
    assert "minilm-finetuned-bilstm-seed0" in tuned
