"""Training loop properties that do not fit the resume or distributed suites."""

from __future__ import annotations

from conftest import rnnlab, train_args, write_data
from safetensors.torch import load_file

from rnnlab import runs


def test_data_loader_workers_do_not_change_the_result(tmp_path):
    """--workers only moves batch preparation into other processes: the trained weights are identical."""
    data, glove = write_data(tmp_path)
    for workers in (0, 2):
        done = rnnlab([*train_args(data, glove, tmp_path / f"w{workers}"), "--workers", str(workers)])
        assert done.returncode == 0, done.stderr
    inline, workers = load_file(tmp_path / "w0" / runs.WEIGHTS), load_file(tmp_path / "w2" / runs.WEIGHTS)
    assert inline.keys() == workers.keys()
    assert all((inline[k] == workers[k]).all() for k in inline)


def test_no_softmax_before_the_loss(monkeypatch):
    """Training feeds logits to cross-entropy: a training step must not call softmax anywhere."""
    import torch

    from rnnlab.config import HeadConfig
    from rnnlab.heads import build_head
    from rnnlab.model import TextClassifier
    from rnnlab.runtime import Inputs, Precision
    from rnnlab.training.distributed import Dist
    from rnnlab.training.loop import Optimization, TrainState, batch_stream, cross_entropy, train_epoch

    class Table(torch.nn.Module):  # a tiny trainable encoder: ids → vectors
        dim, pad_id, trainable = 6, 0, True

        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(20, 6)

        def forward(self, ids, mask):
            return self.embed(ids)

    def forbidden(*args, **kwargs):
        raise AssertionError("softmax called during a training step")

    model = TextClassifier(Table(), build_head(HeadConfig(head="bilstm", hidden_size=4), 6), 2, 0.0)
    inputs = Inputs([[1, 2, 3], [4, 5], [6, 7, 8, 9]], pad_id=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    monkeypatch.setattr(torch, "softmax", forbidden)
    monkeypatch.setattr(torch.Tensor, "softmax", forbidden)
    monkeypatch.setattr(torch.nn.functional, "softmax", forbidden)
    stream = batch_stream(inputs, [[0, 1, 2]], 0, Dist(), workers=0)
    opt = Optimization(optimizer, scheduler, Precision(torch.device("cpu"), None), Dist(), 1.0,
                       cross_entropy(torch.tensor([0, 1, 0])))  # fmt: skip
    state = TrainState()
    train_epoch(model, stream, opt, state, cached=False)
    assert state.step == 1 and state.seen == 3 and state.loss_sum > 0


def test_test_labels_never_drive_model_selection(tmp_path):
    """Two runs that differ only in their test labels pick the same epoch and end with the same weights."""
    import csv

    data, glove = write_data(tmp_path)
    rows = list(csv.reader(data.open(encoding="utf-8")))[1:]
    for name, flip in (("test_a.csv", False), ("test_b.csv", True)):
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as f:
            labels = [("neg" if label == "pos" else "pos") if flip else label for _, label in rows[:20]]
            csv.writer(f).writerows([("text", "label"), *[(f"held out {text}", lab) for (text, _), lab in zip(rows, labels)]])
    results = []
    for name in ("test_a.csv", "test_b.csv"):
        run = tmp_path / f"run-{name}"
        done = rnnlab([*train_args(data, glove, run), "--test-file", str(tmp_path / name), "--epochs", "3"])
        assert done.returncode == 0, done.stderr
        results.append((load_file(run / runs.WEIGHTS), (run / runs.METRICS).read_text().count("val_accuracy")))
    (a, epochs_a), (b, epochs_b) = results
    assert epochs_a == epochs_b and all((a[k] == b[k]).all() for k in a)


def test_metrics_log_the_scheduled_learning_rate_and_results_record_the_encoders_truth(tmp_path):
    """metrics.jsonl's lr is the rate warmup and decay set, not the flag; a scratch run is recorded as fine-tuned."""
    import json

    data, _ = write_data(tmp_path)
    run = tmp_path / "scratch"
    args = ["train", "--data", str(data), "--encoder", "scratch", "--embedding-dim", "8", "--vocab-size", "100",
            "--head", "gru", "--hidden-size", "4", "--epochs", "2", "--lr", "0.01", "--no-progress",
            "--run-dir", str(run)]  # fmt: skip
    done = rnnlab(args)
    assert done.returncode == 0, done.stderr
    rates = [json.loads(line)["lr"] for line in (run / runs.METRICS).read_text().splitlines()]
    assert len(rates) == 2 and rates[0] < 0.01 and rates[1] == 0.0  # linear decay ends at zero
    assert json.loads((run / runs.RESULTS).read_text())["finetune"] is True
