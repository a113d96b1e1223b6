"""Heads on tiny, oddly sized inputs (D=7, hidden=6): shapes, padding invariance, training, references, ONNX."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnlab.config import HeadConfig
from rnnlab.errors import UserError
from rnnlab.heads import HEADS, Head, build_head, reverse_padded

RECURRENT = ["rnn", "gru", "lstm", "bilstm", "bigru"]
POOLINGS = ["last", "mean", "max", "attention"]
D, H = 7, 6
EXPECTED_OUT_DIM = {"bilstm": 2 * H, "bigru": 2 * H, "textcnn": 3 * H}


def make_head(head: str, pooling: str | None = None, layers: int = 2, impl: str = "torch", **kw) -> Head:
    torch.manual_seed(0)
    cfg = HeadConfig(head=head, hidden_size=kw.pop("hidden", H), layers=layers, pooling=pooling, impl=impl, **kw)
    return build_head(cfg, D)


def padded_batch(lengths: list[int], width: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch whose padding holds large garbage, so any leak shows up in the outputs."""
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    x = torch.randn(len(lengths), width, D, generator=g)
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]  # [B, T]
    garbage = 100 * torch.randn(x.shape, generator=g)
    return torch.where(mask[..., None], x, garbage), mask


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("head", HEADS)
def test_output_shape(head, pooling):
    model = make_head(head, pooling, layers=1).eval()
    x, mask = padded_batch([3, 5, 1])
    out = model(x, mask)
    assert model.out_dim == EXPECTED_OUT_DIM.get(head, H)
    assert out.shape == (3, model.out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("head", HEADS)
def test_padding_never_changes_the_output(head, pooling):
    model = make_head(head, pooling).eval()
    lengths = [3, 11, 1, 4]
    x, mask = padded_batch(lengths)
    with torch.no_grad():
        batched = model(x, mask)
        # Each text alone, with no padding at all.
        for row, n in enumerate(lengths):
            alone = model(x[row : row + 1, :n], mask[row : row + 1, :n])
            torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=1e-5)
        # Extra padding columns (holding garbage) appended to the whole batch.
        wide, wide_mask = padded_batch(lengths, width=17)
        wide[:, :11], wide_mask[:, :11] = x, mask
        torch.testing.assert_close(model(wide, wide_mask), batched, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_transformer_padding_invariance_on_the_fast_path(pooling):
    # hidden=8 gives 4 (even) heads, so eval under no_grad may take torch's fused encoder-layer path.
    model = make_head("transformer", pooling, hidden=8).eval()
    x, mask = padded_batch([2, 9])
    with torch.no_grad():
        alone = model(x[:1, :2], mask[:1, :2])
        torch.testing.assert_close(model(x, mask)[:1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("head", HEADS)
def test_gradients_reach_every_parameter_and_skip_padding(head, pooling):
    model = make_head(head, pooling).train()
    x, mask = padded_batch([4, 2, 6])
    x.requires_grad_(True)
    model(x, mask).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert (x.grad[~mask] == 0).all()  # padding has no influence, so it gets no gradient


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("head", HEADS)
def test_head_and_linear_overfit_random_labels(head, pooling):
    model = make_head(head, pooling, layers=1, dropout=0.0)
    classifier = nn.Sequential(model, nn.Linear(model.out_dim, 2))
    x, mask = padded_batch([5, 3, 6, 1, 4, 6, 2, 5], seed=1)
    labels = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for _ in range(300):
        logits = classifier[1](model(x, mask))
        if (logits.argmax(1) == labels).all():
            break
        optimizer.zero_grad()
        nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()
    assert (logits.argmax(1) == labels).all()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("head, cls", [("bilstm", nn.LSTM), ("bigru", nn.GRU)])
def test_bidirectional_masked_path_matches_packed_sequence(head, cls, layers):
    model = make_head(head, "last", layers=layers).eval()
    reference = cls(D, H, num_layers=layers, bidirectional=True, batch_first=True).eval()
    with torch.no_grad():
        for layer in range(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(model.forward_layers[layer], f"{name}_l0"))
                getattr(reference, f"{name}_l{layer}_reverse").copy_(getattr(model.backward_layers[layer], f"{name}_l0"))
        lengths = [3, 7, 1, 5]
        x, mask = padded_batch(lengths)
        _, state = reference(pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False))
        h_n = state[0] if cls is nn.LSTM else state  # [layers*2, B, H]
        expected = torch.cat([h_n[-2], h_n[-1]], dim=1)  # [B, 2H]: top layer, forward then backward
        torch.testing.assert_close(model(x, mask), expected, atol=1e-6, rtol=1e-5)


def test_reverse_padded_reverses_only_the_real_tokens():
    x = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)
    lengths = torch.tensor([3, 5])
    assert reverse_padded(x, lengths).squeeze(-1).tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]
    torch.testing.assert_close(reverse_padded(reverse_padded(x, lengths), lengths), x)


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("head", RECURRENT)
def test_scratch_cells_match_torch_cells(head, pooling):
    fused = make_head(head, pooling, impl="torch").eval()
    scratch = make_head(head, pooling, impl="scratch").eval()
    scratch.load_state_dict(fused.state_dict())  # same parameter names, so the weights carry over
    x, mask = padded_batch([3, 6, 1])
    with torch.no_grad():
        torch.testing.assert_close(scratch(x, mask), fused(x, mask), atol=1e-5, rtol=1e-5)


def export_and_run(model: Head, path, dynamo: bool) -> tuple[np.ndarray, np.ndarray]:
    """Export on a [2, 5] example, then compare onnxruntime and PyTorch on a [4, 9] batch."""
    import onnxruntime as ort

    model.eval()
    example = padded_batch([5, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation and tracer notes
        if dynamo:
            batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
            shapes = {"x": {0: batch, 1: time}, "mask": {0: batch, 1: time}}
            torch.onnx.export(model, example, path, dynamo=True, dynamic_shapes=shapes, verbose=False)
        else:
            axes = {"x": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"}, "out": {0: "batch"}}
            torch.onnx.export(
                model, example, path, dynamo=False, input_names=["x", "mask"], output_names=["out"], dynamic_axes=axes
            )
    x, mask = padded_batch([9, 4, 1, 7], seed=3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "mask": mask.numpy()})[0]
    with torch.no_grad():
        return got, model(x, mask).numpy()


@pytest.mark.parametrize("pooling", ["last", "attention"])
@pytest.mark.parametrize("head", ["lstm", "bilstm", "gru"])
def test_recurrent_heads_export_to_onnx_with_dynamic_batch_and_time(head, pooling, tmp_path):
    # The TorchScript exporter: torch.export specialises the time axis of nn.LSTM/GRU outputs (torch 2.13).
    got, expected = export_and_run(make_head(head, pooling), tmp_path / "head.onnx", dynamo=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_transformer_head_exports_to_onnx_with_dynamo(tmp_path):
    # The TorchScript exporter bakes the example's batch size into attention's reshapes; torch.export does not.
    got, expected = export_and_run(make_head("transformer", "attention"), tmp_path / "head.onnx", dynamo=True)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_unknown_names_raise_user_error():
    with pytest.raises(UserError, match="unknown head"):
        build_head(HeadConfig(head="cnn"), D)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown pooling"):
        build_head(HeadConfig(head="lstm", pooling="sum"), D)  # type: ignore[arg-type]


def test_pool_norm_standardises_each_feature_in_training_and_uses_running_statistics_in_eval():
    from rnnlab.heads import Pool

    pool = Pool("concat", D, norm=True).train()
    x, mask = padded_batch([3, 11, 1, 4, 6, 2, 9, 5])
    out = pool(x, mask)  # [8, 3D]
    torch.testing.assert_close(out.mean(0), torch.zeros(3 * D), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(3 * D), atol=1e-3, rtol=0)
    raw = Pool("concat", D)(x, mask)
    torch.testing.assert_close(pool.norm.running_mean, 0.1 * raw.mean(0))  # momentum 0.1 from zeros
    pool.eval()
    expected = (raw - pool.norm.running_mean) / torch.sqrt(pool.norm.running_var + pool.norm.eps)
    torch.testing.assert_close(pool(x, mask), expected)


@pytest.mark.parametrize("head", HEADS)
def test_pool_norm_takes_a_training_batch_of_one_and_keeps_padding_out(head):
    """BatchNorm1d raises on one row in training; such a batch is normalised by the running statistics instead, and
    leaves them as they were. In eval, padding still never reaches the output."""
    model = make_head(head, "concat" if head == "fnn" else "mean", layers=1, dropout=0.0, pool_norm=True)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms
    model.train()(*padded_batch([3, 5, 2, 4]))  # moves the running statistics away from their start
    before = [(n.running_mean.clone(), n.running_var.clone()) for n in norms]
    x, mask = padded_batch([4], width=9)
    alone = model(x, mask)
    for n, (mean, var) in zip(norms, before):
        assert torch.equal(n.running_mean, mean) and torch.equal(n.running_var, var)
    with torch.no_grad():
        torch.testing.assert_close(alone, model.eval()(x, mask))
        torch.testing.assert_close(model(x, mask), model(x[:, :4], mask[:, :4]))
