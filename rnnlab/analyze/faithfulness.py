"""Are the token attributions faithful? Deleting the tokens they rank highest must hurt the prediction more than
deleting as many tokens at random (the deletion test of Samek et al. 2017, in its simplest form)."""

from __future__ import annotations

import numpy as np

from rnnlab.serve.explain import gradient_x_input
from rnnlab.serve.predict import Predictor


def deletion_check(predictor: Predictor, token_ids: list[list[int]], *, fraction: float = 0.1, seed: int = 0) -> dict:
    """Mean drop of the predicted class's probability after deleting the top-attributed `fraction` of each text's
    tokens, against deleting a random `fraction`; special tokens always stay."""
    rng = np.random.default_rng(seed)
    attributions = gradient_x_input(predictor.model, token_ids)
    head, tail = predictor.encoder.special_tokens()
    top, random = [], []
    for ids, attribution in zip(token_ids, attributions):
        content = np.arange(head, len(ids) - tail)
        k = max(1, round(fraction * len(content)))
        if len(content) <= k:  # too short to delete from
            top.append(ids)
            random.append(ids)
            continue
        ranked = content[np.argsort(-np.asarray(attribution.scores)[content], kind="stable")]
        top.append(_without(ids, ranked[:k]))
        random.append(_without(ids, rng.choice(content, size=k, replace=False)))
    predicted = np.array([a.predicted for a in attributions])
    rows = np.arange(len(token_ids))
    before = predictor.raw_probs_of_ids(token_ids)[rows, predicted]
    drop_top = before - predictor.raw_probs_of_ids(top)[rows, predicted]
    drop_random = before - predictor.raw_probs_of_ids(random)[rows, predicted]
    return {
        "texts": len(token_ids),
        "fraction": fraction,
        "mean_drop_top": float(drop_top.mean()),
        "mean_drop_random": float(drop_random.mean()),
        "top_beats_random_share": float((drop_top > drop_random).mean()),
        "passes": bool(drop_top.mean() > drop_random.mean()),
    }


def _without(ids: list[int], positions: np.ndarray) -> list[int]:
    gone = set(positions.tolist())
    return [t for i, t in enumerate(ids) if i not in gone]
