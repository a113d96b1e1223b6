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
    # fp32: bf16 kernels round differently on CPUs with and without AMX (4.9e-4 apart on MiniLM), fp32 ones agree.
    probs = rnnlab.load(LEGACY / run, device="cpu", bf16=False).predict_proba(EXPECTED["texts"])
    np.testing.assert_allclose(probs, np.asarray(EXPECTED["probs"][run]), atol=1e-5)


@pytest.mark.parametrize("run", sorted(EXPECTED["probs"]))
def test_bf16_predictions_stay_within_bf16_rounding_of_fp32(run):
    probs = rnnlab.load(LEGACY / run, device="cpu").predict_proba(EXPECTED["texts"])
    np.testing.assert_allclose(probs, np.asarray(EXPECTED["probs"][run]), atol=1e-2)


def test_configs_with_max_length_under_dataset_load_into_the_encoder():
    from rnnlab.config import RunConfig

    raw = {"dataset": {"data": "x.csv", "max_length": 64, "truncation": "head"}, "encoder": {"encoder": "glove"}}
    old = RunConfig.from_dict(raw)
    assert old.encoder.max_length == 64 and old.encoder.truncation == "head" and old.dataset.data == "x.csv"
    for folder in (p.parent for p in LEGACY.glob("*/config.json")):
        saved = json.loads((folder / "config.json").read_text())
        assert RunConfig.load(folder / "config.json").encoder.max_length == saved["dataset"]["max_length"]
