"""The teaching demos: char (happy -> phayp), memory (2, 8, 18) and the gradient study."""

import math

import pytest

from rnnlab.demos import char, gradients, memory
from rnnlab.demos.config import CharConfig, GradientsConfig, MemoryConfig
from rnnlab.errors import UserError


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("seed", range(5))
def test_char_learns_phayp_within_20_epochs(impl, seed, capsys):
    result = char.run(CharConfig(cell="rnn", impl=impl, seed=seed))
    assert result["first_correct_epoch"] is not None and result["first_correct_epoch"] <= 20
    assert result["predictions"][-1] == "phayp"
    assert len(result["losses"]) == 20
    assert "predicted phayp" in capsys.readouterr().out


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_char_scratch_cells_give_torchs_numbers(cell, capsys):
    """Same seed -> same initial weights -> the same training curve, up to float32 rounding."""
    ours = char.run(CharConfig(cell=cell, impl="scratch", epochs=8))
    ref = char.run(CharConfig(cell=cell, impl="torch", epochs=8))
    assert ours["losses"] == pytest.approx(ref["losses"], rel=1e-4, abs=1e-5)


def test_char_faithful_loss_has_a_floor(capsys):
    """Without an output layer the logits are tanh outputs in [-1, 1]; 4 classes give a floor of ~0.341."""
    floor = -math.log(math.e / (math.e + 3 / math.e))
    result = char.run(CharConfig(faithful=True, epochs=200))
    assert min(result["losses"]) >= 0.33
    assert min(result["losses"]) == pytest.approx(floor, abs=0.05)


def test_char_rejects_strings_of_different_length():
    with pytest.raises(UserError, match="equally long"):
        char.run(CharConfig(source="happy", target="pha"))


def test_memory_worked_example(capsys):
    assert memory.run(MemoryConfig())["hidden_states"] == [[2.0, 2.0], [8.0, 8.0], [18.0, 18.0]]
    out = capsys.readouterr().out
    assert "1+1 + 0+0 = 2" in out and "2+2 + 2+2 = 8" in out and "1+1 + 8+8 = 18" in out


def test_memory_with_tanh_squashes_the_sums(capsys):
    states = memory.run(MemoryConfig(activation="tanh"))["hidden_states"]
    assert states[0][0] == pytest.approx(math.tanh(2.0))
    assert all(0 < h[0] < 1 for h in states)


def test_gradient_study_small(tmp_path, capsys):
    cfg = GradientsConfig(out_dir=str(tmp_path), length=20, hidden_size=8, steps=20, explode_steps=5)
    result = gradients.run(cfg)
    ratios = result["ratios"]
    assert ratios["rnn_tanh"]["init"] < 1e-2 * ratios["lstm"]["init"]
    assert ratios["rnn_sigmoid"]["init"] < ratios["rnn_tanh"]["init"]
    assert result["growth"]["1.01"] == pytest.approx(20959, rel=1e-3)
    for name in ("gradient_profile.png", "growth.png", "clipping.png", "gradients.md"):
        assert (tmp_path / name).stat().st_size > 0
    note = (tmp_path / "gradients.md").read_text()
    assert f"{ratios['rnn_tanh']['init']:.1e}" in note
