"""Distillation: a student learns a teacher run's logits on a transfer set — the same loop, another loss.

The transfer set is the training split plus `augment` copies of every training text (Tang et al. 2019: word
masking, word swaps for same-class words or GloVe neighbours, n-gram sampling), all labelled by the teacher once.
Its logits are stored in the student's run folder (teacher.safetensors, keyed by the teacher and the transfer
texts), so a resumed run is exact and never pays the teacher again. The teacher only ever sees training texts,
never the validation or test labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab import runs
from rnnlab.config import DistillConfig
from rnnlab.data.split import Prepared
from rnnlab.errors import UserError
from rnnlab.model import load_tensors, load_trained, save_tensors
from rnnlab.runtime import Precision, autocast_dtype, inputs_for, predict_logits, resolve_device
from rnnlab.training.loop import LossFn

TEACHER_FILE = "teacher.safetensors"
MASK = "[MASK]"
NEIGHBOURS, NEIGHBOUR_POOL = 10, 50_000
_WORD = re.compile(r"\S+")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$")  # leading punctuation, the word, trailing punctuation


def augment(texts: list[str], labels: np.ndarray, cfg: DistillConfig, seed: int) -> tuple[list[str], np.ndarray]:
    """`cfg.augment` perturbed versions of every text (copy c of text i is seeded by (seed, c, i)), with its label.

    Each word is masked with p `mask_p` or swapped with p `swap_p` (for a word of another training text of the same
    label, or for one of its nearest GloVe neighbours); then, with p `ngram_p`, only an n-gram of the result is kept
    (n from 1 to 5 words per 10 of the text, so that a review is cut to a passage, not to a word).
    """
    swaps = _class_swaps(texts, labels) if cfg.swap_with == "class" else _glove_swaps(texts)
    out, out_labels = [], []
    for c in range(cfg.augment):
        for i, (text, label) in enumerate(zip(texts, labels.tolist())):
            rng = random.Random(f"{seed}/{c}/{i}")
            words = [_perturb(w, rng, cfg, swaps(w, label)) for w in _WORD.findall(text)]
            if words and rng.random() < cfg.ngram_p:
                n = max(1, round(len(words) * rng.randint(1, 5) / 10))
                start = rng.randrange(len(words) - n + 1)
                words = words[start : start + n]
            out.append(" ".join(words) or text)
            out_labels.append(label)
    return out, np.asarray(out_labels, dtype=np.int64)


def _perturb(word: str, rng: random.Random, cfg: DistillConfig, candidates: list[str]) -> str:
    roll = rng.random()
    if roll < cfg.mask_p:
        return MASK
    if roll < cfg.mask_p + cfg.swap_p and candidates:
        return rng.choice(candidates)
    return word


def _class_swaps(texts: list[str], labels: np.ndarray):
    vocab: dict[int, set[str]] = {}
    for text, label in zip(texts, labels.tolist()):
        vocab.setdefault(label, set()).update(_WORD.findall(text))
    same_class = {label: sorted(words) for label, words in vocab.items()}
    return lambda word, label: same_class[label]


def _glove_swaps(texts: list[str]):
    """Each word's nearest GloVe neighbours, its punctuation and capitalisation kept ("Good," → "Great,")."""
    neighbours = glove_neighbours({_CORE.match(w).group(2).lower() for t in texts for w in _WORD.findall(t)})

    def swaps(word: str, label: int) -> list[str]:
        head, core, tail = _CORE.match(word).groups()
        found = neighbours.get(core.lower(), [])
        return [head + (n.capitalize() if core[:1].isupper() else n) + tail for n in found]

    return swaps


def glove_neighbours(words: set[str], k: int = NEIGHBOURS, pool: int = NEIGHBOUR_POOL) -> dict[str, list[str]]:
    """The k nearest neighbours (cosine) of each word among the packaged GloVe's `pool` most frequent alphabetic
    words (GloVe also holds punctuation and numbers, which would make a swap a deletion)."""
    from rnnlab.encoders.words import read_packaged_glove

    vocab, vectors, _ = read_packaged_glove()
    kept = [i for i, w in enumerate(vocab[:pool]) if w.isalpha()]
    names = [vocab[i] for i in kept]
    candidates = np.array(vectors[kept], dtype=np.float32)  # a copy: the packaged file is memory-mapped read-only
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True) + 1e-8
    index = {w: i for i, w in enumerate(names)}
    queries = sorted(w for w in words if w in index)
    out: dict[str, list[str]] = {}
    for start in range(0, len(queries), 4096):  # [4096, pool] similarities at a time
        rows = [index[w] for w in queries[start : start + 4096]]
        sims = candidates[rows] @ candidates.T
        sims[np.arange(len(rows)), rows] = -np.inf  # never the word itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for row, sim, cols in zip(rows, sims, top):
            out[names[row]] = [names[j] for j in cols[np.argsort(-sim[cols], kind="stable")]]
    return out


def with_transfer_set(data: Prepared, cfg: DistillConfig, seed: int) -> Prepared:
    """`data` with the augmented copies of its training texts appended to the texts and to the training split."""
    if not cfg.augment:
        return data
    train = data.split["train"]
    texts, labels = augment([data.texts[i] for i in train], data.labels[train], cfg, seed)
    start = len(data.texts)
    split = {**data.split, "train": np.concatenate([train, np.arange(start, start + len(texts))])}
    ids = None if data.ids is None else np.concatenate([data.ids, np.full(len(texts), -1, dtype=np.int64)])
    return dataclasses.replace(data, texts=data.texts + texts, labels=np.concatenate([data.labels, labels]), split=split,
                               ids=ids)  # fmt: skip


def check_teacher(cfg: DistillConfig, data: Prepared) -> None:
    """Refuse, before any work, a teacher that is unfinished, trained on another split or with other labels."""
    teacher = Path(cfg.teacher)
    try:
        runs.require_finished(teacher)
    except UserError as e:
        raise UserError(f"--teacher {e}") from None
    saved = json.loads((teacher / runs.SPLIT).read_text())
    if saved.get("hash") != data.manifest()["hash"]:
        raise UserError(f"--teacher {teacher}: trained on another split (split hash differs); give the student the "
                        "teacher's --data, --fraction, --test-size, --val-size and --split-seed")  # fmt: skip
    names = json.loads((teacher / runs.LABELS).read_text())
    if names != data.label_names:
        raise UserError(f"--teacher {teacher}: its labels {names} are not the student's {data.label_names}")


def teacher_logits(run: Path, data: Prepared, cfg: DistillConfig, *, device: str) -> torch.Tensor:
    """[N, C] logits of the teacher for every text of `data` (zero outside the training split), computed once and
    stored in `run` (`check_teacher` has vouched for the teacher)."""
    teacher = Path(cfg.teacher)
    train = data.split["train"]
    key = hashlib.sha256(json.dumps([str(teacher.resolve()), [data.texts[i] for i in train]]).encode()).hexdigest()
    path = run / TEACHER_FILE
    if path.is_file():
        tensors, meta = load_tensors(path)
        if meta.get("key") == key:
            return tensors["logits"]
    model, names = load_trained(teacher)
    dev = resolve_device(device)
    inputs = inputs_for(model.encoder, model.encoder.tokenize([data.texts[i] for i in train]))
    prec = Precision(dev, autocast_dtype(dev, True))
    logits = torch.zeros(len(data.texts), len(names))
    logits[torch.as_tensor(train)] = torch.from_numpy(predict_logits(model.to(dev), inputs, range(len(train)), prec, 64))
    save_tensors(path, {"logits": logits}, {"key": key, "teacher": str(teacher)})
    return logits


def distill_loss(cfg: DistillConfig, teacher: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> LossFn:
    """Summed over the batch: (1 − α) · the teacher term + α · cross-entropy on the hard labels (class-weighted
    by `weights` [C] when given, as the plain loss is)."""

    def loss(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        logits = logits.float()
        target = teacher[rows].to(logits.device)
        if cfg.distill_loss == "mse":
            soft = F.mse_loss(logits, target, reduction="none").sum(-1)  # [B]: summed over classes
        else:
            t = cfg.distill_temperature
            student, teacher_p = F.log_softmax(logits / t, -1), F.log_softmax(target / t, -1)
            soft = F.kl_div(student, teacher_p, reduction="none", log_target=True).sum(-1) * t * t
        weight = None if weights is None else weights.to(logits.device)
        hard = F.cross_entropy(logits, labels[rows].to(logits.device), weight=weight, reduction="none")
        return ((1 - cfg.alpha) * soft + cfg.alpha * hard).sum()

    return loss
