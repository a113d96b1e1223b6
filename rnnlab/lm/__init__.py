"""`rnnlab lm`: train an AWD-LSTM language model on a dataset's training split, measure its perplexity, generate text
with it, and classify with its pretrained LSTM stack (`rnnlab train --encoder lm:RUN`, ULMFiT).

The network lives in `rnnlab.encoders.lm`, so that classification imports it without this package.
"""

from __future__ import annotations


def generate(run, prompt: str = "", **options) -> str:
    """`rnnlab.lm.generate("runs/lm", "This movie", length=50, temperature=0.8, top_k=40, seed=0)`: the prompt's
    continuation (see `rnnlab.lm.sampling.generate` for the options)."""
    from rnnlab.lm.sampling import generate as generate_text

    return generate_text(run, prompt, **options)
