"""Every command the README and the docs show parses, with the options they give, and passes the combination checks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rnnlab.cli import CompareArgs, TrainArgs, _command, _parse
from rnnlab.presets import expand

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) for each `rnnlab …` line of a bash block; torchrun lines from their `-m rnnlab` on."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                line = line.split("-m rnnlab ", 1)[-1] if "-m rnnlab " in line else line
                line = re.sub(r"^(\w+=\S+\s+)+", "", line)  # RNNLAB_API_KEY=… rnnlab serve …
                if line.startswith("rnnlab ") and " | " not in line:  # "a | b | c" lists alternatives
                    found.append((f"{doc.name}: {line}", shlex.split(line)[1:]))
                elif line.startswith("train ") or line.startswith("compare "):
                    found.append((f"{doc.name}: {line}", shlex.split(line)))
    return found


COMMANDS = shown_commands()


def test_the_docs_show_the_main_commands():
    verbs = {argv[0] for _, argv in COMMANDS}
    assert {"train", "evaluate", "predict", "export", "serve", "analyze", "compare", "report"} <= verbs, verbs


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_a_shown_command_parses(argv):
    name, (kind, _), rest = _command(argv)
    rest = expand(rest) if kind is TrainArgs else rest
    if "--config" in rest:
        pytest.skip("names a config file of the reader's")
    args = _parse(kind, rest, f"rnnlab {name}")
    if kind in (TrainArgs, CompareArgs) and not getattr(args, "resume", None):
        args.run.check_combinations()
