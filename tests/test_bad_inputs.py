"""Bad input through the CLI: exit code 2, one line on stderr naming the file, row, column or option, and no
run folder left that breaks a later run. Also: no pickle anywhere, and remote code is never trusted implicitly."""

from __future__ import annotations

import csv
import errno
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import write_data

import rnnlab
from rnnlab import cli, runs
from rnnlab.training import features

FAST = ["--head", "gru", "--hidden-size", "8", "--max-length", "16", "--epochs", "1", "--batch-size", "16",
        "--no-progress", "--no-bf16"]  # fmt: skip
ROWS = [("a fine film", "pos"), ("a dull film", "neg")] * 10


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown encoder name fails at once instead of asking the Hub


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(files, tmp_path_factory) -> Path:
    data, glove = files
    run = tmp_path_factory.mktemp("runs") / "finished"
    assert cli.main(["train", "--data", str(data), "--encoder", str(glove), *FAST, "--run-dir", str(run)]) == 0
    return run


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows] if header else rows)
    return path


def fails(capsys, args: list[str], *names: str) -> str:
    """Run the CLI; it must exit 2 with one line on stderr that contains every one of `names`."""
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rnnlab: error: "), err
    for name in names:
        assert name in err, f"{name!r} not in {err!r}"
    return err


def train(data: Path, run: Path, *extra: str, encoder: str | Path) -> list[str]:
    return ["train", "--data", str(data), "--encoder", str(encoder), *FAST, "--run-dir", str(run), *extra]


def bad_files(tmp: Path) -> dict[str, tuple[Path, list[str], tuple[str, ...]]]:
    """case -> (data file, extra options, what the message must name)."""
    (tmp / "empty.csv").write_bytes(b"")
    latin1 = tmp / "latin1.csv"
    latin1.write_bytes("text,label\nun film très beau,pos\n".encode("latin-1"))
    jsonl = tmp / "nan.jsonl"
    jsonl.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": NaN}\n')
    return {
        "empty file": (tmp / "empty.csv", [], ("empty.csv", "empty")),
        "header only": (write_csv(tmp / "header.csv", []), [], ("header.csv", "only a header")),
        "missing text column": (write_csv(tmp / "cols.csv", ROWS), ["--text-column", "review"], ("'review'", "--text-column")),
        "misspelt label column": (write_csv(tmp / "lable.csv", ROWS, ("text", "lable")), [], ("'label'", "'lable'")),
        "NaN label": (write_csv(tmp / "nan.csv", [*ROWS, ("odd", "NaN")]), [], ("nan.csv", "row 22", "missing label")),
        "empty label": (write_csv(tmp / "nolabel.csv", [("odd", ""), *ROWS]), [], ("nolabel.csv", "row 2", "'label'")),
        "NaN label in JSONL": (jsonl, [], ("nan.jsonl", "line 2", "missing label")),
        "one class": (write_csv(tmp / "one.csv", [(t, "pos") for t, _ in ROWS[::2]] + [("x y", "pos")]), [], ("2 classes",)),
        "non-UTF-8": (latin1, [], ("latin1.csv", "line 2", "UTF-8")),
        "empty text": (write_csv(tmp / "blank.csv", [*ROWS, ("", "pos")]), [], ("blank.csv", "row 22", "empty text")),
        "whitespace text": (write_csv(tmp / "space.csv", [*ROWS, (" \t ", "pos")]), [], ("space.csv", "row 22", "empty text")),
        "5 MB text": (write_csv(tmp / "huge.csv", [("word " * 1_000_000, "pos"), *ROWS]), [], ("huge.csv", "row 2", "limit")),
        "missing file": (tmp / "absent.csv", [], ("absent.csv", "not found")),
        "unknown dataset": (Path("imbd"), [], ("imbd", "did you mean 'imdb'")),
    }


@pytest.mark.parametrize(
    "case",
    ["empty file", "header only", "missing text column", "misspelt label column", "NaN label", "empty label",
     "NaN label in JSONL", "one class", "non-UTF-8", "empty text", "whitespace text", "5 MB text", "missing file",
     "unknown dataset"],
)  # fmt: skip
def test_bad_data_fails_before_the_run_folder_exists(case, files, tmp_path, capsys):
    data, options, names = bad_files(tmp_path)[case]
    run = tmp_path / "run"
    fails(capsys, train(data, run, *options, encoder=files[1]), *names)
    assert not run.exists()


def test_test_file_with_an_unseen_label(files, tmp_path, capsys):
    train_file = write_csv(tmp_path / "train.csv", ROWS * 2)
    test_file = write_csv(tmp_path / "test.csv", [("a fine film indeed", "pos"), ("so so", "meh")])
    fails(capsys, train(train_file, tmp_path / "run", "--test-file", str(test_file), encoder=files[1]), "test.csv", "'meh'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("encoder", "names"),
    [("no-such-encoder", ("no-such-encoder", "not available offline")), ("/no/such/folder", ("/no/such/folder", "not found")),
     ("vectors.txt", ("vectors.txt", "not found"))],
)  # fmt: skip
def test_wrong_encoder_name_or_path(encoder, names, files, tmp_path, capsys):
    fails(capsys, train(files[0], tmp_path / "run", encoder=encoder), *names)
    assert not (tmp_path / "run").exists()


def test_bad_options_name_the_option(files, tmp_path, capsys):
    fails(capsys, train(files[0], tmp_path / "run", "--max-length", "3", encoder=files[1]), "--max-length")
    fails(capsys, train(files[0], tmp_path / "run", "--epochz", "3", encoder=files[1]), "--epochz")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("content", "names"),
    [('{"train": {"epochs": 1}, "colour": "red"}', ("colour", "unknown key")),
     ('{"train": {"epochs": "three"}}', ("config.json.train.epochs", "'three'")),
     ('{"model": {"head": "lstmm"}}', ("model.head", "'lstmm'")),
     ("epochs = 3", ("config.json", "not a JSON config"))],
)  # fmt: skip
def test_bad_config_file(content, names, files, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(content)
    fails(capsys, ["train", "--config", str(config), "--data", str(files[0]), "--run-dir", str(tmp_path / "run")], *names)
    fails(capsys, ["train", "--config", str(tmp_path / "absent.json")], "absent.json", "not found")
    assert not (tmp_path / "run").exists()


def test_quoted_newlines_and_commas_parse_and_train(files, tmp_path, capsys):
    rows = [(f'a "fine", fine\nfilm, part {i}', "pos") if i % 2 else (f"a dull,\n\ndull film {i}", "neg") for i in range(40)]
    data = write_csv(tmp_path / "quoted.csv", rows)
    run = tmp_path / "run"
    assert cli.main(train(data, run, encoder=files[1])) == 0, capsys.readouterr().err
    split = json.loads((run / runs.SPLIT).read_text())
    assert sum(split["sizes"].values()) == 40  # every multi-line row read as one text


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "other tensors"])
def test_damaged_weights_of_a_finished_run(damage, finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    weights = run / runs.WEIGHTS
    raw = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage header":
        weights.write_bytes(b"\xff" * 8 + raw[8:])
    else:
        import torch
        from safetensors.torch import save_file

        save_file({"encoder.table": torch.zeros(2, 2)}, weights)
    fails(capsys, ["predict", str(run), "a fine film"], "model.safetensors")


def test_predict_on_an_unfinished_or_missing_run(finished, tmp_path, capsys):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    (run / runs.RESULTS).unlink()
    fails(capsys, ["predict", str(run), "a fine film"], str(run), "not finished", "--resume")
    fails(capsys, ["predict", str(tmp_path / "absent"), "a fine film"], "absent", "not found")
    assert cli.main(["predict", str(finished), "a fine film"]) == 0  # the original still works


def test_full_disk_while_caching_features_leaves_a_reusable_run_folder(tiny_bert, files, tmp_path, capsys, monkeypatch):
    def disk_full(path, shape):
        raise OSError(errno.ENOSPC, "No space left on device")

    args = train(files[0], tmp_path / "run", "--cache-dir", str(tmp_path / "cache"), "--no-finetune", encoder=tiny_bert)
    monkeypatch.setattr(features, "_create_array", disk_full)
    fails(capsys, args, str(tmp_path / "cache"), "No space left", "--cache-dir")
    # no half-written feature store; the token ids, finished before the features, stay cached
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["token-ids"]
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(args) == 0, capsys.readouterr().err  # the same --run-dir, now with room on the disk
    assert runs.is_finished(tmp_path / "run")


def test_failed_training_leaves_a_reusable_run_folder(files, tmp_path, capsys, monkeypatch):
    """An error after the folder was claimed (here: once setup is done) must not block the next run."""
    import rnnlab.training.fit

    def broken(*args, **kwargs):
        raise rnnlab.errors.UserError("simulated failure after the run folder was claimed")

    run = tmp_path / "run"
    monkeypatch.setattr(rnnlab.training.fit, "_train", broken)
    fails(capsys, train(files[0], run, encoder=files[1]), "simulated")
    assert (run / runs.CONFIG).is_file() and not (run / runs.CHECKPOINT).exists()
    monkeypatch.undo()
    assert cli.main(train(files[0], run, encoder=files[1])) == 0
    assert runs.is_finished(run) and (run / runs.LOG).read_text().count(" run ") == 1  # a fresh log, not appended


PACKAGE = Path(rnnlab.__file__).parent


def test_no_pickle_or_torch_load_in_the_package():
    """Weights come from safetensors only: nothing from a run folder or a user path is ever unpickled."""
    pattern = re.compile(r"\btorch\.load\b|\bimport pickle\b|\bpickle\.loads?\b|\bnp\.load\([^)]*allow_pickle=True")
    offenders = [f"{p.relative_to(PACKAGE)}:{n}" for p in PACKAGE.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]  # fmt: skip
    assert offenders == []


def test_remote_code_is_never_trusted_implicitly():
    # Every call that passes trust_remote_code passes False; the Hugging Face export only tells its users (in its
    # docstrings and model card) that loading its own model file needs True.
    import ast

    calls = [(p, node) for p in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.keyword) and node.arg == "trust_remote_code"]  # fmt: skip
    lines = [(p, line) for p in PACKAGE.rglob("*.py") for line in p.read_text().splitlines()]
    dict_uses = [(p, line) for p, line in lines if '"trust_remote_code":' in line]
    assert calls or dict_uses
    assert all(isinstance(k.value, ast.Constant) and k.value.value is False for _, k in calls), calls
    assert all(re.search(r'"trust_remote_code":\s*False', line) for _, line in dict_uses), dict_uses
