"""Every preset parses into a RunConfig and builds a model; user flags override a preset's."""

from __future__ import annotations

import pytest

from rnnlab import cli
from rnnlab.presets import PRESETS, expand


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_parses_and_builds(name):
    from rnnlab.heads import build_head

    args = cli._parse(cli.TrainArgs, expand(["--preset", name]), "rnnlab train")
    head = build_head(args.run.model, input_dim=12)
    assert head.out_dim > 0 and args.run.train.epochs >= 3 and args.preset == name


def test_flags_after_a_preset_override_it():
    args = cli._parse(cli.TrainArgs, expand(["--preset", "glove-bilstm", "--epochs", "2"]), "rnnlab train")
    assert args.run.train.epochs == 2 and args.run.encoder.encoder == "glove" and args.run.encoder.max_length == 400


def test_an_unknown_preset_is_one_line_naming_the_choices(capsys):
    assert cli.main(["train", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope'" in err and "finetune-bilstm" in err
