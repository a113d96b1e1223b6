"""Distillation: augmentations, the two losses, the teacher's stored logits, split checks, and unsegmented text."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from conftest import rnnlab

from rnnlab import runs
from rnnlab.config import DistillConfig
from rnnlab.training.distill import MASK, TEACHER_FILE, augment, distill_loss, glove_neighbours


def test_augmentations_are_deterministic_keep_labels_and_change_texts():
    texts = [f"the plot was good and the acting was fine number {i}" for i in range(20)] + ["a dull boring film"] * 5
    labels = np.array([1] * 20 + [0] * 5)
    cfg = DistillConfig(teacher="t", augment=3)
    first, first_labels = augment(texts, labels, cfg, seed=0)
    again, _ = augment(texts, labels, cfg, seed=0)
    other, _ = augment(texts, labels, cfg, seed=1)
    assert first == again and first != other
    assert len(first) == 3 * len(texts) and first_labels.tolist() == labels.tolist() * 3
    assert sum(a != t for a, t in zip(first, texts * 3)) > len(first) // 2
    assert any(MASK in a for a in first)
    # Swapped words come from texts of the same label only.
    negative_words = set(" ".join(texts[20:]).split()) | {MASK}
    assert all(set(a.split()) <= negative_words for a, y in zip(first, first_labels) if y == 0)


def test_chinese_text_is_augmented_character_by_character():
    # Without spaces a review used to be one "word": masked whole or not at all, never cropped to a passage.
    texts, labels = ["这本书很好看，推荐", "质量太差了，很失望"] * 10, np.array([1, 0] * 10)
    cfg = DistillConfig(teacher="t", augment=4, mask_p=0.3, swap_p=0.0, ngram_p=0.0)
    copies, _ = augment(texts, labels, cfg, seed=0)
    for copy, text in zip(copies, texts * 4):
        pieces = copy.split(" ")
        assert len(pieces) == 9 and all(p in (c, MASK) for p, c in zip(pieces, text))  # 8 ideographs and "，"
    masked = sum(copy.count(MASK) for copy in copies)
    assert 0.2 < masked / (9 * len(copies)) < 0.4


def test_glove_swaps_draw_from_each_word_s_neighbours():
    texts = ["The acting was good, the plot boring.", "A terrible film"] * 10
    cfg = DistillConfig(teacher="t", augment=2, mask_p=0.0, swap_p=0.5, ngram_p=0.0, swap_with="glove")
    swapped, labels = augment(texts, np.array([1, 0] * 10), cfg, seed=0)
    assert swapped == augment(texts, np.array([1, 0] * 10), cfg, seed=0)[0] and labels.tolist() == [1, 0] * 20
    neighbours = glove_neighbours({"acting", "good", "plot", "boring", "terrible", "film", "the", "was", "a"})
    assert "better" in neighbours["good"] and "good" not in neighbours["good"]
    changed = 0
    for new, old in zip(swapped, texts * 2):
        for a, b in zip(new.split(), old.split()):  # no masking or cropping: the words stay aligned
            core = b.strip(",.").lower()
            assert a == b or a.strip(",.").lower() in neighbours[core], (a, b)
            assert a[-1:] in ",." if b[-1:] in ",." else True  # punctuation kept
            changed += a != b
    assert changed > 20


def test_mse_and_kl_losses_on_a_hand_computed_case():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0])
    mse = distill_loss(DistillConfig(teacher="t", distill_loss="mse"), teacher, labels)(logits, [0, 1])
    assert mse.item() == pytest.approx((1.0 + 0.0) + (0.0 + 4.0))
    t = 2.0
    kl = distill_loss(DistillConfig(teacher="t", distill_loss="kl", distill_temperature=t), teacher, labels)(logits, [0, 1])
    p = torch.softmax(teacher / t, -1)
    q = torch.log_softmax(logits / t, -1)
    expected = (p * (p.log() - q)).sum() * t * t
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)
    mixed = distill_loss(DistillConfig(teacher="t", alpha=0.25), teacher, labels)(logits, [0, 1])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    assert mixed.item() == pytest.approx(0.75 * 5.0 + 0.25 * ce.item(), rel=1e-5)


def student_args(accurate_run, run, *extra: str) -> list[str]:
    data = json.loads((accurate_run / runs.CONFIG).read_text())["dataset"]["data"]
    return ["train", "--data", data, "--encoder", "scratch", "--embedding-dim", "16", "--vocab-size", "200", "--head",
            "gru", "--hidden-size", "16", "--max-length", "16", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
            "--checkpoint-every", "5", "--no-progress", "--no-bf16", "--teacher", str(accurate_run), "--run-dir", str(run),
            *extra]  # fmt: skip


def test_the_teacher_labels_the_transfer_set_once_and_a_resume_reuses_it(accurate_run, tmp_path):
    run = tmp_path / "student"
    killed = rnnlab(student_args(accurate_run, run, "--augment", "1"), kill_at=7)
    assert killed.returncode != 0 and (run / TEACHER_FILE).is_file() and not runs.is_finished(run)
    stamp = (run / TEACHER_FILE).stat().st_mtime_ns
    resumed = rnnlab(["train", "--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    assert (run / TEACHER_FILE).stat().st_mtime_ns == stamp
    results = json.loads((run / runs.RESULTS).read_text())
    assert results["teacher"] == [str(accurate_run)] and results["test_accuracy"] >= 0.8


def test_a_teacher_of_another_split_is_refused_before_any_work(accurate_run, tmp_path):
    run = tmp_path / "student"
    done = rnnlab(student_args(accurate_run, run, "--split-seed", "3"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "split hash differs" in done.stderr
    assert not run.exists()


def _chinese(n: int, seed: int) -> list[tuple[str, str]]:
    """Short unsegmented reviews: filler characters around one clear cue word."""
    rng = random.Random(seed)
    cues = {"pos": ["很好", "精彩", "喜欢", "感人"], "neg": ["很差", "无聊", "失望", "难看"]}
    filler = list("这部电影的故事演员导演音乐画面剧情我们觉得一个")
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        chars = [rng.choice(filler) for _ in range(rng.randint(4, 12))]
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(cues[label]))
        rows.append(("".join(chars) + "。", label))
    return rows


def test_unsegmented_chinese_trains_a_scratch_student_and_the_baseline_switches_to_characters(tmp_path):
    from rnnlab.compare.baseline import build_baseline, run_baseline, unsegmented

    rows = _chinese(400, seed=0)
    data = tmp_path / "zh.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    texts, labels = [t for t, _ in rows], [int(y == "pos") for _, y in rows]
    assert unsegmented(texts) and not unsegmented(["a review in English, with spaces"])
    assert build_baseline(chars=True)[0].analyzer == "char"
    baseline = run_baseline(texts[:300], labels[:300], texts[300:], labels[300:], ["neg", "pos"], tmp_path / "tfidf")
    assert baseline["test_accuracy"] >= 0.9
    run = tmp_path / "zh-run"
    done = rnnlab(["train", "--data", str(data), "--encoder", "scratch", "--embedding-dim", "16", "--vocab-size", "300",
                   "--head", "bilstm", "--hidden-size", "16", "--max-length", "32", "--epochs", "6", "--batch-size", "16",
                   "--lr", "0.01", "--no-progress", "--no-bf16", "--run-dir", str(run)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((run / runs.RESULTS).read_text())["test_accuracy"] >= 0.85
    from rnnlab.encoders import load_encoder

    ids = load_encoder(run).tokenize(["这部电影很好。"])[0]
    assert len(ids) >= 6  # one token per character or so, never the whole sentence as one word
