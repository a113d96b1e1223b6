"""Every head on every encoder kind: forward, backward, and it overfits a handful of real sentences."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rnnlab.config import EncoderConfig, HeadConfig, RunConfig
from rnnlab.data.batching import collate
from rnnlab.encoders import build_encoder
from rnnlab.heads import HEADS
from rnnlab.model import build_model

TEXTS = ["a wonderful film", "dull and far too long", "I loved every minute", "a waste of two hours",
         "great acting, great story", "the plot makes no sense"]  # fmt: skip
LABELS = torch.tensor([1, 0, 1, 0, 1, 0])


@pytest.fixture(scope="module", params=["minilm", "glove", "scratch"])
def encoder(request):
    """Frozen pretrained encoders (the packaged MiniLM and GloVe) and a scratch embedding, each built once."""
    cfg = EncoderConfig(encoder=request.param, finetune=False, vocab_size=60, embedding_dim=16)
    return build_encoder(dataclasses.replace(cfg, max_length=16), TEXTS)


@pytest.mark.parametrize("head", HEADS)
def test_head_on_encoder_learns_a_handful_of_sentences(encoder, head):
    torch.manual_seed(0)
    cfg = RunConfig(model=HeadConfig(head=head, hidden_size=16, dropout=0.0))
    model = build_model(cfg, encoder, num_classes=2)
    ids, mask = collate(encoder.tokenize(TEXTS), encoder.pad_id)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(200):
        logits = model(ids, mask)  # [B, C]
        assert logits.shape == (len(TEXTS), 2)
        loss = torch.nn.functional.cross_entropy(logits, LABELS)
        optimizer.zero_grad()
        loss.backward()
        if (logits.argmax(1) == LABELS).all() and loss.item() < 0.1:
            break
        optimizer.step()
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)
    assert (logits.argmax(1) == LABELS).all(), f"{head} on {encoder.spec()['kind']} did not fit 6 sentences"
