"""`rnnlab compare`: the encoder × head × seed grid, each cell a normal run folder, then the report.

Frozen encoders are encoded once for the whole grid (the feature cache is keyed by encoder and
texts); an interrupted grid resumes: finished cells are skipped, a cell with a checkpoint resumes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rnnlab import runs
from rnnlab.config import RunConfig
from rnnlab.errors import UserError
from rnnlab.heads import HEADS
from rnnlab.training.distributed import launched_rank
from rnnlab.training.tracking import require


def grid_cells(base: RunConfig, grid: Path, encoders: list[str], heads: list[str], seeds: int) -> list[RunConfig]:
    """One config per encoder × head × seed; the split (dataset options, split_seed) is the same for all."""
    bad = [h for h in heads if h not in HEADS]
    if bad:
        raise UserError(f"--heads: unknown head(s) {', '.join(bad)}; choose from {', '.join(HEADS)}")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    # Fine-tuned cells get their own names, so frozen and fine-tuned rows of one encoder × head share a grid.
    tuned = "-finetuned" if base.encoder.finetune else ""
    cells = []
    for encoder in encoders:
        for head in heads:
            for seed in range(seeds):
                # A scratch encoder always trains its embeddings, also in a grid of frozen encoders.
                finetune = base.encoder.finetune or encoder == "scratch"
                cells.append(dataclasses.replace(
                    base,
                    encoder=dataclasses.replace(base.encoder, encoder=encoder, finetune=finetune),
                    model=dataclasses.replace(base.model, head=head),
                    train=dataclasses.replace(base.train, seed=base.train.seed + seed),
                    run_dir=str(grid / f"{Path(encoder).name}{tuned}-{head}-seed{base.train.seed + seed}"),
                    overwrite=False,
                ))  # fmt: skip
    for cell in cells:
        cell.check_combinations()
    return cells


def run_grid(base: RunConfig, grid: Path, encoders: list[str], heads: list[str], seeds: int, baseline: bool) -> dict[str, Any]:
    from rnnlab.analyze.checks import run_checks
    from rnnlab.training.fit import fit

    cells = grid_cells(base, grid, encoders, heads, seeds)
    require(base.train.tracking.report_to)  # every cell reports as --report-to says: a missing package stops the grid first
    main = launched_rank() == 0
    if main:
        grid.mkdir(parents=True, exist_ok=True)
        if baseline:
            baseline_row(base, grid / "tfidf-logreg")
    bar = tqdm(cells, desc="grid", unit="cell", disable=not (base.train.progress and main))
    for cfg in bar:
        run = Path(cfg.run_dir)
        bar.set_postfix_str(run.name)
        if not runs.is_finished(run):
            resume = (run / runs.CHECKPOINT).exists()
            fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False)), resume=resume)
        if main and not (run / runs.CHECKS).exists():
            run_checks(run, device=cfg.train.device, seed=cfg.train.seed)
    if not main:
        return {}
    from rnnlab.compare.report import build_report

    return build_report(grid)


def baseline_row(base: RunConfig, out: Path) -> None:
    """TF-IDF + logistic regression on exactly the grid's split; skipped when already done."""
    from rnnlab.compare.baseline import run_baseline
    from rnnlab.data.split import prepare

    if runs.is_finished(out):
        return
    data = prepare(base.dataset)
    train_idx = list(data.split["train"]) + list(data.split["val"])  # the baseline has no early stopping
    test_idx = list(data.split["test"])
    start = time.perf_counter()
    run_baseline([data.texts[i] for i in train_idx], data.labels[train_idx], [data.texts[i] for i in test_idx],
                 data.labels[test_idx], data.label_names, out, seed=base.train.seed,
                 split_hash=data.manifest()["hash"], test_indices=test_idx)  # fmt: skip
    tqdm.write(f"baseline tfidf-logreg done in {time.perf_counter() - start:.1f}s")
