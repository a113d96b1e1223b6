"""Distillation: a student learns a teacher run's logits on a transfer set — the same loop, another loss.

The transfer set is the training split plus `augment` copies of every training text (Tang et al. 2019: word
masking, word swaps for same-class words or GloVe neighbours, n-gram sampling), all labelled by the teachers once,
their logits averaged. The logits are stored in the student's run folder (teacher.safetensors, keyed by the
teachers and the transfer texts), so a resumed run is exact and never pays the teachers again. Teachers only ever
see training texts, never the validation or test labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab import runs
from rnnlab.config import DistillConfig
from rnnlab.data.split import Prepared
from rnnlab.encoders.base import fingerprint
from rnnlab.encoders.words import WORD
from rnnlab.errors import UserError
from rnnlab.model import load_tensors, load_trained, save_tensors
from rnnlab.runs import atomic_write_json
from rnnlab.runtime import Precision, autocast_dtype, inference_batch_size, inputs_for, predict_logits, resolve_device
from rnnlab.training.loop import LossFn, on_device
from rnnlab.training.token_ids import cached_token_ids

log = logging.getLogger("rnnlab.run")  # the run folder's log.txt (runs.open_log)

TEACHER_FILE = "teacher.safetensors"
PARTIAL_FILE = "teacher.partial.safetensors"
LABEL_CHUNK = 8192
"""Texts labelled between two saves of an interrupted labelling (a minute or three of MiniLM on 2 cores)."""
MASK = "[MASK]"
NEIGHBOURS, NEIGHBOUR_POOL = 10, 50_000
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$")  # leading punctuation, the word, trailing punctuation


def augment(texts: list[str], labels: np.ndarray, cfg: DistillConfig, seed: int) -> tuple[list[str], np.ndarray]:
    """`cfg.augment` perturbed versions of every text (copy c draws from a generator seeded by (seed, c)), with its
    label.

    Each word is masked with p `mask_p` or swapped with p `swap_p` (for a word of another training text of the same
    label, or for one of its nearest GloVe neighbours); then, with p `ngram_p`, only an n-gram of the result is kept
    (n from 1 to 5 words per 10 of the text, so that a review is cut to a passage, not to a word). The texts are one
    flat array of word ids and a copy draws all its numbers at once, so 16 copies of IMDB take seconds, not minutes.
    """
    flat = _Flat(texts)
    pools = _class_pools(flat, labels) if cfg.swap_with == "class" else _glove_pools(flat)
    out: list[str] = []
    for c in range(cfg.augment):
        out += _copy(flat, pools, cfg, np.random.default_rng([seed, c]))
    return out, np.tile(np.asarray(labels, dtype=np.int64), cfg.augment)


class _Flat:
    """Texts as one array of word ids (`ids`, text i owning ids[offsets[i]:offsets[i + 1]]) into `strings`."""

    def __init__(self, texts: list[str]) -> None:
        words = [WORD.findall(text) for text in texts]  # a Chinese review's words are its ideographs
        index: dict[str, int] = {MASK: 0}
        ids = [index.setdefault(w, len(index)) for text in words for w in text]
        self.texts, self.ids = texts, np.asarray(ids, dtype=np.int64)
        self.offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(w) for w in words], out=self.offsets[1:])
        self.strings = list(index)  # index order: ids[j] names strings[ids[j]]; 0 is MASK

    def add(self, words: list[str]) -> np.ndarray:
        """Ids for `words` (swap candidates not in the texts get new ones)."""
        index = {w: i for i, w in enumerate(self.strings)}
        ids = [index.setdefault(w, len(index)) for w in words]
        self.strings = list(index)
        return np.asarray(ids, dtype=np.int64)


@dataclasses.dataclass
class _Pools:
    """Swap candidates: word j of the texts may become any of words[start[pool[j]] : start[pool[j]] + size[pool[j]]]."""

    pool: np.ndarray  # [W]
    start: np.ndarray  # [P]
    size: np.ndarray  # [P]
    words: np.ndarray  # ids into the texts' strings


def _pools(flat: _Flat, pool: np.ndarray, candidates: list[list[str]]) -> _Pools:
    sizes = np.array([len(c) for c in candidates], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return _Pools(pool, starts, sizes, flat.add([w for c in candidates for w in c]))


def _class_pools(flat: _Flat, labels: np.ndarray) -> _Pools:
    """One pool per label: the words of the training texts of that label, sorted."""
    per_text = np.repeat(np.asarray(labels, dtype=np.int64), np.diff(flat.offsets))
    classes = sorted(set(np.asarray(labels).tolist()))
    strings = np.array(flat.strings, dtype=object)
    candidates = [sorted(set(strings[np.unique(flat.ids[per_text == y])].tolist())) for y in classes]
    return _pools(flat, np.searchsorted(classes, per_text), candidates)


def _glove_pools(flat: _Flat) -> _Pools:
    """One pool per distinct word: its nearest GloVe neighbours, its punctuation and capitalisation kept
    ("Good," → "Great,")."""
    parts = [_CORE.match(w).groups() for w in flat.strings]
    neighbours = glove_neighbours({core.lower() for _, core, _ in parts})
    candidates = [[head + (n.capitalize() if core[:1].isupper() else n) + tail for n in neighbours.get(core.lower(), [])]
                  for head, core, tail in parts]  # fmt: skip
    candidates[0] = []  # MASK stays masked
    return _pools(flat, flat.ids, candidates)


def _copy(flat: _Flat, pools: _Pools, cfg: DistillConfig, rng: np.random.Generator) -> list[str]:
    """One augmented copy of every text."""
    roll, pick = rng.random(len(flat.ids)), rng.random(len(flat.ids))
    ids = flat.ids.copy()
    ids[roll < cfg.mask_p] = 0
    size = pools.size[pools.pool]
    swap = (roll >= cfg.mask_p) & (roll < cfg.mask_p + cfg.swap_p) & (size > 0)
    chosen = pools.start[pools.pool[swap]] + (pick[swap] * size[swap]).astype(np.int64)
    ids[swap] = pools.words[chosen]
    lengths, begin, end = np.diff(flat.offsets), flat.offsets[:-1].copy(), flat.offsets[1:].copy()
    crop = (rng.random(len(lengths)) < cfg.ngram_p) & (lengths > 0)
    n = np.maximum(1, np.round(lengths * rng.integers(1, 6, len(lengths)) / 10)).astype(np.int64)
    begin[crop] += (rng.random(len(lengths)) * (lengths - n + 1)).astype(np.int64)[crop]
    end[crop] = begin[crop] + n[crop]
    words = np.array(flat.strings, dtype=object)[ids].tolist()
    return [" ".join(words[b:e]) or text for b, e, text in zip(begin.tolist(), end.tolist(), flat.texts)]


def glove_neighbours(words: set[str], k: int = NEIGHBOURS, pool: int = NEIGHBOUR_POOL) -> dict[str, list[str]]:
    """The k nearest neighbours (cosine) of each word among the packaged GloVe's `pool` most frequent alphabetic
    words (GloVe also holds punctuation and numbers, which would make a swap a deletion); computed once per
    vocabulary and cached on disk, keyed by a hash of GloVe's files, k, pool and the words."""
    from rnnlab.encoders.words import read_packaged_glove
    from rnnlab.training.features import default_cache_dir

    vocab, vectors, files = read_packaged_glove()
    kept = [i for i, w in enumerate(vocab[:pool]) if w.isalpha()]
    names = [vocab[i] for i in kept]
    index = {w: i for i, w in enumerate(names)}
    queries = sorted(w for w in words if w in index)
    key = hashlib.sha256(json.dumps([fingerprint(files), k, pool, queries]).encode()).hexdigest()[:32]
    path = default_cache_dir().parent / "neighbours" / f"{key}.npy"
    if path.with_suffix(".json").is_file():  # written last: a file without it is never read
        top = np.load(path)
    else:
        top = _nearest(np.array(vectors[kept], dtype=np.float32), [index[w] for w in queries], k)
        _save_neighbours(path, top, {"k": k, "pool": pool, "words": len(queries)})
    return {w: [names[j] for j in row] for w, row in zip(queries, top.tolist())}


def _nearest(candidates: np.ndarray, rows: list[int], k: int) -> np.ndarray:
    """[len(rows), k] indices of each row's k nearest other candidates by cosine, nearest first."""
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True) + 1e-8
    top = np.zeros((len(rows), k), dtype=np.int32)
    for start in range(0, len(rows), 1024):  # [1024, pool] similarities at a time
        chunk = rows[start : start + 1024]
        sims = candidates[chunk] @ candidates.T
        sims[np.arange(len(chunk)), chunk] = -np.inf  # never the word itself
        best = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, best, 1), axis=1, kind="stable")
        top[start : start + len(chunk)] = np.take_along_axis(best, order, 1)
    return top


def _save_neighbours(path: Path, top: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, top)
    os.replace(tmp, path)
    atomic_write_json(path.with_suffix(".json"), meta)


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
    """Refuse, before any work, a teacher that is unfinished, trained on another split or with other labels: any one
    of several is enough."""
    if len({str(Path(t).resolve()) for t in cfg.teacher}) < len(cfg.teacher):
        raise UserError(f"--teacher {' '.join(cfg.teacher)}: a run is named twice; each teacher counts once")
    for teacher in map(Path, cfg.teacher):
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
    """[N, C] logits of the teachers, averaged, for every text of `data` (zero outside the training split), computed
    once and stored in `run` (`check_teacher` has vouched for the teachers)."""
    train = data.split["train"]
    texts = [data.texts[i] for i in train]
    key = transfer_key(cfg.teacher, texts)
    path = run / TEACHER_FILE
    if path.is_file():
        tensors, meta = load_tensors(path)
        if meta.get("key") == key:
            return tensors["logits"]
    logits = torch.zeros(len(data.texts), len(data.label_names))
    partial = run / PARTIAL_FILE
    logits[torch.as_tensor(train)] = torch.from_numpy(ensemble_logits(cfg.teacher, texts, device=device, partial=(partial, key)))
    save_tensors(path, {"logits": logits}, {"key": key, "teacher": cfg.teacher})
    partial.unlink(missing_ok=True)
    return logits


def transfer_key(teachers: list[str], texts: list[str]) -> str:
    """What the stored logits depend on: each teacher (its folder and its weights' hash: a teacher retrained in place
    is another teacher) and every transfer text."""
    who = [[str(Path(t).resolve()), fingerprint([Path(t) / runs.WEIGHTS])] for t in teachers]
    digest = hashlib.sha256(json.dumps(who).encode())
    for text in texts:
        raw = text.encode()
        digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def ensemble_logits(
    teachers: list[str], texts: list[str], *, device: str, partial: tuple[Path, str] | None = None
) -> np.ndarray:
    """[N, C] logits of `texts`, averaged over the teacher runs (one model in memory at a time).

    With `partial` = (file, key), the running sum is saved there after every `LABEL_CHUNK` texts and an interrupted
    labelling resumes from it when its key matches: labelling a full-IMDB transfer set takes over an hour on 2 cores.
    """
    dev = resolve_device(device)
    prec = Precision(dev, autocast_dtype(dev, True))
    total, first, done = _resumed_sum(partial, len(texts))
    for i in range(first, len(teachers)):
        model = load_trained(Path(teachers[i]))[0].to(prec.device)
        inputs = inputs_for(model.encoder, cached_token_ids(model.encoder, texts))
        for start in range(done if i == first else 0, len(texts), LABEL_CHUNK):
            rows = range(start, min(start + LABEL_CHUNK, len(texts)))
            part = _logits(model, inputs, rows, prec, teachers[i])
            total = np.zeros((len(texts), part.shape[1]), np.float32) if total is None else total
            total[rows.start : rows.stop] += part
            if partial is not None:
                save_tensors(partial[0], {"sum": torch.from_numpy(total)}, {"key": partial[1], "teacher": i, "done": rows.stop})
    return total / len(teachers)


def _resumed_sum(partial: tuple[Path, str] | None, n: int) -> tuple[np.ndarray | None, int, int]:
    """(summed logits so far, the teacher to go on with, its texts done): from `partial` when its key matches."""
    if partial is None or not partial[0].is_file():
        return None, 0, 0
    tensors, meta = load_tensors(partial[0])
    if meta.get("key") != partial[1] or len(tensors["sum"]) != n:
        return None, 0, 0
    log.info("teachers' labelling resumed at teacher %d, text %d of %d", meta["teacher"], meta["done"], n)
    return tensors["sum"].numpy().copy(), meta["teacher"], meta["done"]


def _logits(model: torch.nn.Module, inputs, rows: range, prec: Precision, teacher: str) -> np.ndarray:
    start = time.perf_counter()
    logits = predict_logits(model, inputs, rows, prec, inference_batch_size(prec.device))
    seconds = time.perf_counter() - start
    rate = len(rows) / seconds
    log.info("teacher %s labelled texts %d–%d in %.1f s (%.0f texts/s)", teacher, rows.start, rows.stop, seconds, rate)
    return logits


def distill_loss(
    cfg: DistillConfig, teacher: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> LossFn:
    """Summed over the batch: (1 − α) · the teacher term + α · cross-entropy on the hard labels (class-weighted
    by `weights` [C] when given, as the plain loss is)."""

    teacher_on, labels_on = on_device(teacher), on_device(labels)
    weights_on = on_device(weights) if weights is not None else None

    def loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = teacher_on(logits.device)[rows]
        if cfg.distill_loss == "mse":
            soft = F.mse_loss(logits, target, reduction="none").sum(-1)  # [B]: summed over classes
        else:
            t = cfg.distill_temperature
            student, teacher_p = F.log_softmax(logits / t, -1), F.log_softmax(target / t, -1)
            soft = F.kl_div(student, teacher_p, reduction="none", log_target=True).sum(-1) * t * t
        weight = None if weights_on is None else weights_on(logits.device)
        hard = F.cross_entropy(logits, labels_on(logits.device)[rows], weight=weight, reduction="none")
        return ((1 - cfg.alpha) * soft + cfg.alpha * hard).sum()

    return loss
