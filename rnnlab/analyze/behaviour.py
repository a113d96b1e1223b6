"""Behavioural tests for binary sentiment (after CheckList, Ribeiro et al. 2020), written for movie reviews.

Three kinds: minimum functionality (MFT: a templated case with a known answer), invariance (INV: a perturbation
that must not change the prediction) and directional (DIR: an added sentence must move the positive score the
right way). Cases are generated from a seed, so a suite is the same list of texts every time it is built with it.
A user's own suite for any label set comes from a template file (`load_templates`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlab.errors import UserError

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
    """MFT: (text, expected) with expected a label or "not <label>"; INV/DIR: (original, changed)."""
    label: str | None = None
    """DIR: the label whose probability the change must move."""
    direction: str | None = None
    """DIR: "up" or "down"."""


def build_suite(originals: list[str], seed: int = 0, per_test: int = 60, *, positive: str = "positive",
                negative: str = "negative") -> list[Test]:  # fmt: skip
    """The built-in binary-sentiment suite: templated MFTs, INVs on `originals` (real reviews) and on templates, and
    DIRs on `originals`; `positive` and `negative` are the run's names for the two classes."""
    rng = random.Random(seed)
    pick = lambda words: rng.choice(words)  # noqa: E731
    n = range(per_test)
    real = lambda: _sample(originals, rng, per_test)  # noqa: E731
    mft = lambda name, cases: Test(name, "MFT", cases)  # noqa: E731
    thing = lambda: pick(THINGS)  # noqa: E731
    flips = [(f"I used to think this {thing()} was {a}, but now I find it {b}.", positive if up else negative)
             for a, b, up in (_flip(rng) for _ in n)]  # fmt: skip
    return [
        mft("clear positive", [(f"The {thing()} was {pick(POSITIVE_ADJ)}.", positive) for _ in n]),
        mft("clear negative", [(f"The {thing()} was {pick(NEGATIVE_ADJ)}.", negative) for _ in n]),
        mft("negated positive → negative", [(f"The {thing()} was not {pick(POSITIVE_ADJ)}.", negative) for _ in n]),
        mft("negated negative → not negative", [(f"The {thing()} was not {pick(NEGATIVE_ADJ)}.", f"not {negative}") for _ in n]),
        mft("negation at the end",
            [(f"I thought the {thing()} would be {pick(NEGATIVE_ADJ)}, but it was not.", f"not {negative}") for _ in n]),
        mft("used to … but now", flips),
        Test("typos (1–2 adjacent swaps)", "INV", [(t, _typos(t, rng, rng.choice([1, 2]))) for t in real()]),
        Test("swapped names and places", "INV", _names_and_places(rng, per_test)),
        Test("added URL or punctuation", "INV", [(t, _noise(t, rng)) for t in real()]),
        Test("+ positive sentence raises positive", "DIR", [(t, f"{t} {pick(MORE_POSITIVE)}") for t in real()],
             label=positive, direction="up"),
        Test("+ negative sentence lowers positive", "DIR", [(t, f"{t} {pick(MORE_NEGATIVE)}") for t in real()],
             label=positive, direction="down"),
    ]  # fmt: skip


def run_suite(tests: list[Test], predict_proba: Callable[[list[str]], np.ndarray], label_names: list[str],
              examples: int = 3) -> list[dict]:  # fmt: skip
    """Failure rate, case count and the first failing examples of every test; all texts in one call."""
    texts = sorted({text for test in tests for case in test.cases for text in _texts(test, case)})
    probs = dict(zip(texts, predict_proba(texts)))
    out = []
    for test in tests:
        failures = [case for case in test.cases if _fails(test, case, probs, label_names)]
        out.append({"test": test.name, "kind": test.kind, "cases": len(test.cases), "failures": len(failures),
                    "failure_rate": len(failures) / max(len(test.cases), 1),
                    "examples": [_example(test, case, probs, label_names) for case in failures[:examples]]})  # fmt: skip
    return out


def _texts(test: Test, case: tuple) -> tuple[str, ...]:
    return (case[0],) if test.kind == "MFT" else case


def _fails(test: Test, case: tuple, probs: dict[str, np.ndarray], names: list[str]) -> bool:
    if test.kind == "MFT":
        text, expected = case
        predicted = names[int(probs[text].argmax())]
        return predicted == expected[4:] if expected.startswith("not ") else predicted != expected
    before, after = probs[case[0]], probs[case[1]]
    if test.kind == "INV":
        return int(before.argmax()) != int(after.argmax())
    j = names.index(test.label)
    moved = float(after[j] - before[j])
    return moved < -DIRECTION_TOLERANCE if test.direction == "up" else moved > DIRECTION_TOLERANCE


def _example(test: Test, case: tuple, probs: dict[str, np.ndarray], names: list[str]) -> dict:
    if test.kind == "MFT":
        p = probs[case[0]]
        predicted = names[int(p.argmax())]
        return {"text": case[0], "expected": case[1], "predicted": predicted, "probability": round(float(p.max()), 4)}
    j = names.index(test.label) if test.label else int(probs[case[0]].argmax())
    return {"original": _excerpt(case[0]), "changed": _excerpt(case[1]), "label": names[j],
            "probability": [round(float(probs[case[0]][j]), 4), round(float(probs[case[1]][j]), 4)]}  # fmt: skip


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " … " + text[-limit // 2 :]


def _sample(texts: list[str], rng: random.Random, n: int) -> list[str]:
    return rng.sample(texts, min(n, len(texts)))


def _flip(rng: random.Random) -> tuple[str, str, bool]:
    """(what it was, what it is now, whether that is an improvement)."""
    if rng.random() < 0.5:
        return rng.choice(NEGATIVE_ADJ), rng.choice(POSITIVE_ADJ), True
    return rng.choice(POSITIVE_ADJ), rng.choice(NEGATIVE_ADJ), False


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


def load_templates(path: Path, originals: list[str], label_names: list[str], *, seed: int = 0) -> list[Test]:
    """A user's suite from a JSON-lines file, one test a line:

        {"test": "negated praise", "kind": "MFT", "template": "The {x} was not {adj}.",
         "fill": {"x": ["plot", "cast"], "adj": ["good", "great"]}, "expected": "negative", "cases": 40}
        {"test": "names", "kind": "INV", "template": "{name} loved it.", "fill": {"name": ["Ana", "Bo"]}, "vary": "name"}
        {"test": "+ praise", "kind": "DIR", "suffix": "I loved it.", "label": "positive", "direction": "up"}

    MFT expects a label (or "not <label>"); INV varies one slot and wants the prediction kept; DIR appends `suffix`
    to the analysed texts and wants `label`'s probability to move in `direction`.
    """
    rng = random.Random(seed)
    if not path.is_file():
        raise UserError(f"{path}: template file not found")
    tests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            tests.append(_template_test(_json_line(line, path, number), f"{path}: line {number}", originals, label_names, rng))
    if not tests:
        raise UserError(f"{path}: no tests in the template file")
    return tests


def _json_line(line: str, path: Path, number: int) -> dict:
    try:
        spec = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {number}: not JSON ({e.msg})") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: line {number}: expected a JSON object")
    return spec


def _template_test(spec: dict, where: str, originals: list[str], names: list[str], rng: random.Random) -> Test:
    kind, n = spec.get("kind"), spec.get("cases", 40)
    name = spec.get("test") or f"{kind} test"
    if kind not in ("MFT", "INV", "DIR"):
        raise UserError(f"{where}: kind must be MFT, INV or DIR, got {kind!r}")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"{where}: cases must be a positive integer, got {n!r}")
    if kind == "DIR":
        label, direction, suffix = spec.get("label"), spec.get("direction"), spec.get("suffix")
        if label not in names or direction not in ("up", "down") or not isinstance(suffix, str):
            raise UserError(f"{where}: DIR needs suffix (text), label (one of {', '.join(names)}) and direction (up or down)")
        return Test(name, "DIR", [(t, f"{t} {suffix}") for t in _sample(originals, rng, n)], label=label, direction=direction)
    template, fill = spec.get("template"), spec.get("fill", {})
    slots = set(re.findall(r"{(\w+)}", template)) if isinstance(template, str) else set()
    if not slots or not isinstance(fill, dict) or slots - set(fill) or not all(isinstance(v, list) and v for v in fill.values()):
        raise UserError(f"{where}: needs a template with {{slots}} and fill giving a non-empty list for each slot")
    if kind == "MFT":
        expected = spec.get("expected", "")
        if str(expected).removeprefix("not ") not in names:
            raise UserError(f"{where}: expected must be a label or 'not <label>' (labels: {', '.join(names)})")
        return Test(name, "MFT", [(_fill(template, fill, rng), expected) for _ in range(n)])
    vary = spec.get("vary")
    if vary not in slots or len(fill[vary]) < 2:
        raise UserError(f"{where}: INV needs vary naming a slot with at least two values")
    cases = []
    for _ in range(n):
        values = {slot: rng.choice(fill[slot]) for slot in slots}
        first, second = rng.sample(fill[vary], 2)
        cases.append((template.format(**{**values, vary: first}), template.format(**{**values, vary: second})))
    return Test(name, "INV", cases)


def _fill(template: str, fill: dict, rng: random.Random) -> str:
    return template.format(**{slot: rng.choice(values) for slot, values in fill.items()})
