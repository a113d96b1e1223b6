"""DDP under torchrun (gloo, 2 CPU processes) takes exactly the steps of one process on the same global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import write_data
from safetensors.torch import load_file

from rnnlab import runs
from rnnlab.data.batching import LengthBucketSampler, shard
from rnnlab.training.distributed import Dist

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

ARGS = ["--head", "gru", "--hidden-size", "8", "--max-length", "16", "--epochs", "2", "--batch-size", "8",
        "--dropout", "0", "--checkpoint-every", "3", "--no-progress", "--no-bf16"]  # fmt: skip
# Dropout 0: each rank draws its own masks, so only a dropout-free model can match one process bit for bit.


def train(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "rnnlab"]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "rnnlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("RNNLAB_TEST_KILL_AT_STEP", None)
    return subprocess.run([*launch, "train", *args], env=env, capture_output=True, text=True, timeout=180)


def test_two_processes_match_one(tmp_path):
    data, glove = write_data(tmp_path)
    common = ["--data", str(data), "--encoder", str(glove), *ARGS]
    single = train([*common, "--run-dir", str(tmp_path / "single")], nproc=1)
    assert single.returncode == 0, single.stderr
    ddp = train([*common, "--run-dir", str(tmp_path / "ddp")], nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one, two = load_file(tmp_path / "single" / runs.WEIGHTS), load_file(tmp_path / "ddp" / runs.WEIGHTS)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5)

    run = tmp_path / "ddp"
    metrics = [json.loads(line) for line in (run / runs.METRICS).open()]
    assert [row["epoch"] for row in metrics] == [1, 2] and metrics[-1]["step"] == 16  # one line per epoch, same steps
    reference = [json.loads(line) for line in (tmp_path / "single" / runs.METRICS).open()]
    for row, ref in zip(metrics, reference):
        assert row["val_accuracy"] == ref["val_accuracy"] and row["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-5)
    log = (run / runs.LOG).read_text().splitlines()
    assert sum(line.split(" ", 2)[2].startswith("run ") for line in log) == 1  # rank 0 alone writes the log, once
    assert sum("epoch 1:" in line for line in log) == 1 and sum("test accuracy" in line for line in log) == 1
    for name in (runs.CONFIG, runs.SPLIT, runs.LABELS, runs.RESULTS, runs.PREDICTIONS, runs.CURVES, "encoder.json"):
        assert (run / name).is_file(), name
    assert not (run / runs.CHECKPOINT).exists() and not [p for p in run.iterdir() if p.name.startswith(".")]
    results, reference = (json.loads((folder / runs.RESULTS).read_text()) for folder in (run, tmp_path / "single"))
    assert results["finished"] and results["test_accuracy"] == reference["test_accuracy"]


def test_shards_cover_each_global_batch_once():
    """The sampler's batches do not depend on the world size; the ranks' shards partition every batch."""
    batches = LengthBucketSampler(list(range(3, 60)), batch_size=8, shuffle=True, seed=1).batches(0)
    assert sorted(i for b in batches for i in b) == list(range(57))
    assert min(map(len, batches)) == 1  # one batch leaves rank 1 of 2 empty: it runs a zero-weighted stand-in
    for world in (1, 2, 3):
        for batch in batches:
            parts = [shard(batch, rank, world) for rank in range(world)]
            assert sorted(i for part in parts for i in part) == sorted(batch)


def test_single_process_dist_is_a_no_op():
    d = Dist()
    assert d.is_main and not d.enabled
    d.barrier()
    t = torch.tensor([1.0, 2.0])
    assert d.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
