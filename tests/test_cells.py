"""rnnlab.cells against torch.nn: outputs, final states and gradients agree to 1e-10 in float64."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab import cells

B, T, D, H = 3, 5, 7, 11
TOL = dict(atol=1e-10, rtol=1e-10)
KINDS = ["rnn_tanh", "rnn_relu", "gru", "lstm"]


def make_pair(kind: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A float64 torch.nn module and a rnnlab.cells module holding the same parameters."""
    name, _, act = kind.partition("_")
    extra = {"nonlinearity": act} if act else {}
    torch.manual_seed(0)
    ref = getattr(nn, name.upper())(D, H, **extra, **kwargs).double()
    ours = getattr(cells, name.upper())(D, H, **extra, **kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def initial_state(kind: str, layers: int, dirs: int) -> tuple[torch.Tensor, ...]:
    n = 2 if kind == "lstm" else 1
    return tuple(torch.randn(layers * dirs, B, H, dtype=torch.float64, requires_grad=True) for _ in range(n))


def as_hx(state: tuple[torch.Tensor, ...]):
    return state if len(state) == 2 else state[0]


def flat(out) -> list[torch.Tensor]:
    """[output, h_n] or [output, h_n, c_n]."""
    output, h = out
    return [output, *(h if isinstance(h, tuple) else (h,))]


def assert_same(ref: nn.Module, ours: nn.Module, run_ref, run_ours, leaves: list[torch.Tensor]) -> None:
    """Forward both, compare every tensor, then compare gradients of a random projection of all of them."""
    got_ref, got_ours = flat(run_ref()), flat(run_ours())
    assert [t.shape for t in got_ref] == [t.shape for t in got_ours]
    for a, b in zip(got_ref, got_ours, strict=True):
        torch.testing.assert_close(b, a, **TOL)
    weights = [torch.randn_like(t) for t in got_ref]
    grads = []
    for module, got in ((ref, got_ref), (ours, got_ours)):
        loss = sum((w * t).sum() for w, t in zip(weights, got, strict=True))
        inputs = leaves + list(module.parameters())
        grads.append(torch.autograd.grad(loss, inputs))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("given_hx", [False, True])
def test_matches_torch(kind, layers, bidirectional, batch_first, given_hx):
    ref, ours = make_pair(kind, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn((B, T, D) if batch_first else (T, B, D), dtype=torch.float64, requires_grad=True)
    state = initial_state(kind, layers, 1 + bidirectional) if given_hx else ()
    hx = as_hx(state) if given_hx else None
    assert_same(ref, ours, lambda: ref(x, hx), lambda: ours(x, hx), [x, *state])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [[5, 3, 1], [2, 5, 4]], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_mask_matches_packed(kind, layers, bidirectional, lengths, batch_first):
    ref, ours = make_pair(kind, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn((B, T, D) if batch_first else (T, B, D), dtype=torch.float64, requires_grad=True)
    state = initial_state(kind, layers, 1 + bidirectional)
    mask = torch.arange(T) < torch.tensor(lengths).unsqueeze(1)  # [B, T]

    def run_ref():
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out, h = ref(packed, as_hx(state))
        return pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0], h

    assert_same(ref, ours, run_ref, lambda: ours(x, as_hx(state), mask=mask), [x, *state])


def test_padded_outputs_are_zero_and_extra_padding_changes_nothing():
    _, ours = make_pair("lstm", bidirectional=True, batch_first=True)
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = torch.arange(T) < torch.tensor([5, 3, 1]).unsqueeze(1)
    out, (h, c) = ours(x, mask=mask)
    assert (out[~mask] == 0).all()
    longer = torch.cat([x, torch.randn(B, 4, D, dtype=torch.float64)], dim=1)
    out2, (h2, c2) = ours(longer, mask=torch.cat([mask, torch.zeros(B, 4, dtype=torch.bool)], dim=1))
    torch.testing.assert_close(out2[:, :T], out, **TOL)
    torch.testing.assert_close(h2, h, **TOL)
    torch.testing.assert_close(c2, c, **TOL)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_same_seed_same_init_and_state_dict_both_ways(kind):
    torch.manual_seed(1)
    ref = getattr(nn, kind.upper())(D, H, num_layers=2, bidirectional=True)
    torch.manual_seed(1)
    ours = getattr(cells, kind.upper())(D, H, num_layers=2, bidirectional=True)
    assert list(ref.state_dict()) == list(ours.state_dict())
    for a, b in zip(ref.state_dict().values(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ref.load_state_dict(ours.state_dict())  # and back


def test_no_bias_and_unbatched_input():
    ref, ours = make_pair("gru", bias=False, num_layers=2)
    assert not any("bias" in name for name in ours.state_dict())
    x = torch.randn(T, D, dtype=torch.float64, requires_grad=True)
    assert_same(ref, ours, lambda: ref(x), lambda: ours(x), [x])


def test_dropout_between_layers_only_in_training():
    _, ours = make_pair("lstm", num_layers=2, dropout=0.5, batch_first=True)
    ref, _ = make_pair("lstm", num_layers=2, dropout=0.5, batch_first=True)
    x = torch.randn(B, T, D, dtype=torch.float64)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL)
    ours.train()
    torch.manual_seed(0)
    a = ours(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, ours(x)[0])


def test_reverse_padded():
    x = torch.arange(12).view(2, 6)
    got = cells.reverse_padded(x.unsqueeze(-1), torch.tensor([6, 3])).squeeze(-1)
    assert got.tolist() == [[5, 4, 3, 2, 1, 0], [8, 7, 6, 9, 10, 11]]
    assert torch.equal(cells.reverse_padded(got.unsqueeze(-1), torch.tensor([6, 3])).squeeze(-1), x)


def test_teaching_activations():
    rnn = cells.RNN(2, 2, nonlinearity="identity")
    with pytest.raises(ValueError):
        cells.RNN(2, 2, nonlinearity="softsign")
    for p in rnn.parameters():
        nn.init.ones_(p) if p.dim() == 2 else nn.init.zeros_(p)
    out, h = rnn(torch.tensor([[[1.0, 1.0]], [[2.0, 2.0]], [[1.0, 1.0]]]))  # [T=3, B=1, 2]
    assert out[:, 0, 0].tolist() == [2.0, 8.0, 18.0]
