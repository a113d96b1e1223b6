"""Run folders written before the house move still load and predict exactly what they predicted then."""

import json
from pathlib import Path

import numpy as np
import pytest

import rnnlab

LEGACY = Path(__file__).parent / "resources" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


@pytest.mark.parametrize("run", sorted(EXPECTED["probs"]))
def test_a_run_folder_from_before_the_move_predicts_the_same_probabilities(run):
    probs = rnnlab.load(LEGACY / run, device="cpu").predict_proba(EXPECTED["texts"])
    np.testing.assert_allclose(probs, np.asarray(EXPECTED["probs"][run]), atol=1e-5)
