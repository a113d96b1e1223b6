"""Behavioural tests for binary sentiment (after CheckList, Ribeiro et al. 2020), written for movie reviews.

Three kinds: minimum functionality (MFT: a templated case with a known answer), invariance (INV: a perturbation
that must not change the prediction) and directional (DIR: an added sentence must move the positive score the
right way). Cases are generated from a seed, so a suite is the same list of texts every time it is built with it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

POSITIVE_ADJ = ["great", "wonderful", "brilliant", "excellent", "moving", "delightful", "superb", "beautiful", "fantastic"]
NEGATIVE_ADJ = ["terrible", "awful", "boring", "dreadful", "dull", "horrible", "painful", "lousy", "tedious"]
THINGS = ["movie", "film", "script", "plot", "acting", "ending", "soundtrack", "cast", "direction", "story"]
NAMES = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Chen", "Amara", "Lucas", "Ingrid"]
PLACES = ["Lagos", "Chicago", "Mumbai", "Berlin", "Lima", "Osaka", "Cairo", "Toronto", "Madrid", "Sydney"]
MORE_POSITIVE = ["Overall, I loved it.", "I would happily watch it again.", "A real gem, highly recommended."]
MORE_NEGATIVE = ["Overall, I hated it.", "I want those two hours back.", "A complete waste of time, avoid it."]
NEGATION_TESTS = ("negated positive → negative", "negated negative → not negative", "negation at the end")
DIRECTION_TOLERANCE = 0.02
"""A directional case fails when the positive score moves the wrong way by more than this."""


@dataclass
class Test:
    name: str
    kind: str  # MFT, INV or DIR
    cases: list = field(default_factory=list)
    """MFT: (text, expected) with expected 'positive', 'negative' or 'not negative'; INV/DIR: (original, changed)."""


def build_suite(originals: list[str], seed: int = 0, per_test: int = 60) -> list[Test]:
    """The suite: templated MFTs, INVs on `originals` (real reviews) and on templates, and DIRs on `originals`."""
    rng = random.Random(seed)
    pick = lambda words: rng.choice(words)  # noqa: E731
    tests = [
        Test("clear positive", "MFT", [(f"The {pick(THINGS)} was {pick(POSITIVE_ADJ)}.", "positive") for _ in range(per_test)]),
        Test("clear negative", "MFT", [(f"The {pick(THINGS)} was {pick(NEGATIVE_ADJ)}.", "negative") for _ in range(per_test)]),
        Test(
            "negated positive → negative",
            "MFT",
            [(f"The {pick(THINGS)} was not {pick(POSITIVE_ADJ)}.", "negative") for _ in range(per_test)],
        ),
        Test(
            "negated negative → not negative",
            "MFT",
            [(f"The {pick(THINGS)} was not {pick(NEGATIVE_ADJ)}.", "not negative") for _ in range(per_test)],
        ),
        Test(
            "negation at the end",
            "MFT",
            [
                (f"I thought the {pick(THINGS)} would be {pick(NEGATIVE_ADJ)}, but it was not.", "not negative")
                for _ in range(per_test)
            ],
        ),
        Test(
            "used to … but now",
            "MFT",
            [
                (f"I used to think this {pick(THINGS)} was {a}, but now I find it {b}.", label)
                for a, b, label in (_flip(rng) for _ in range(per_test))
            ],
        ),
        Test(
            "typos (1–2 adjacent swaps)",
            "INV",
            [(t, _typos(t, rng, rng.choice([1, 2]))) for t in _sample(originals, rng, per_test)],
        ),
        Test("swapped names and places", "INV", _names_and_places(rng, per_test)),
        Test("added URL or punctuation", "INV", [(t, _noise(t, rng)) for t in _sample(originals, rng, per_test)]),
        Test(
            "+ positive sentence raises positive",
            "DIR",
            [(t, f"{t} {pick(MORE_POSITIVE)}") for t in _sample(originals, rng, per_test)],
        ),
        Test(
            "+ negative sentence lowers positive",
            "DIR",
            [(t, f"{t} {pick(MORE_NEGATIVE)}") for t in _sample(originals, rng, per_test)],
        ),
    ]
    return tests


def run_suite(tests: list[Test], positive_probability: Callable[[list[str]], np.ndarray], examples: int = 3) -> list[dict]:
    """Failure rate, case count and the first failing examples of every test; all texts in one call."""
    texts = sorted({text for test in tests for case in test.cases for text in _texts(test, case)})
    score = dict(zip(texts, positive_probability(texts).tolist()))
    out = []
    for test in tests:
        failures = [case for case in test.cases if _fails(test.kind, case, score)]
        shown = [_example(test.kind, case, score) for case in failures[:examples]]
        out.append(
            {
                "test": test.name,
                "kind": test.kind,
                "cases": len(test.cases),
                "failures": len(failures),
                "failure_rate": len(failures) / max(len(test.cases), 1),
                "examples": shown,
            }
        )
    return out


def _texts(test: Test, case: tuple) -> tuple[str, ...]:
    return (case[0],) if test.kind == "MFT" else case


def _fails(kind: str, case: tuple, score: dict[str, float]) -> bool:
    if kind == "MFT":
        text, expected = case
        positive = score[text] >= 0.5
        return positive if expected == "negative" else not positive  # "not negative" is positive for two classes
    before, after = score[case[0]], score[case[1]]
    if kind == "INV":
        return (before >= 0.5) != (after >= 0.5)
    wants_up = any(case[1].endswith(s) for s in MORE_POSITIVE)
    return after < before - DIRECTION_TOLERANCE if wants_up else after > before + DIRECTION_TOLERANCE


def _example(kind: str, case: tuple, score: dict[str, float]) -> dict:
    if kind == "MFT":
        return {"text": case[0], "expected": case[1], "positive_score": round(score[case[0]], 4)}
    return {
        "original": _excerpt(case[0]),
        "changed": _excerpt(case[1]),
        "positive_score": [round(score[case[0]], 4), round(score[case[1]], 4)],
    }


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " … " + text[-limit // 2 :]


def _sample(texts: list[str], rng: random.Random, n: int) -> list[str]:
    return rng.sample(texts, min(n, len(texts)))


def _flip(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.5:
        return rng.choice(NEGATIVE_ADJ), rng.choice(POSITIVE_ADJ), "positive"
    return rng.choice(POSITIVE_ADJ), rng.choice(NEGATIVE_ADJ), "negative"


def _typos(text: str, rng: random.Random, n: int) -> str:
    """Swap `n` pairs of adjacent letters inside words (the commonest typing slip)."""
    chars = list(text)
    spots = [i for i in range(len(chars) - 1) if chars[i].isalpha() and chars[i + 1].isalpha() and chars[i] != chars[i + 1]]
    for i in rng.sample(spots, min(n, len(spots))):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _noise(text: str, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return f"{text} https://example.com/r/{rng.randrange(10**6)}"
    if choice == 1:
        return re.sub(r"[.!?]?\s*$", "!!!", text, count=1)
    return f"{text} @{rng.choice(NAMES).lower()}{rng.randrange(100)}"


def _names_and_places(rng: random.Random, n: int) -> list[tuple[str, str]]:
    cases = []
    for _ in range(n):
        template = rng.choice(
            [
                "I saw this with {name} in {place} and the {thing} was {adj}.",
                "{name} said the {thing} was {adj}, and after the screening in {place} I agreed.",
                "The {thing} follows {name}, a teacher in {place}; it is {adj}.",
            ]
        )
        adj = rng.choice(POSITIVE_ADJ + NEGATIVE_ADJ)
        thing = rng.choice(THINGS)
        first, second = rng.sample(NAMES, 2), rng.sample(PLACES, 2)
        cases.append(
            (
                template.format(name=first[0], place=second[0], thing=thing, adj=adj),
                template.format(name=first[1], place=second[1], thing=thing, adj=adj),
            )
        )
    return cases
