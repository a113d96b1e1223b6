"""The AWD-LSTM language model (Merity et al. 2017) and the encoder that reads texts with its pretrained stack (ULMFiT,
Howard & Ruder 2018).

`LSTMStack`: embedding → stacked single-layer `nn.LSTM`s, with AWD-LSTM's regularisation: embedding dropout (whole
vocabulary rows), locked (variational) dropout on the embedding's output and between layers (one mask per sequence,
shared over time), and weight drop (DropConnect) on every hidden-to-hidden matrix. `LanguageModel` adds the output layer,
whose weight is the embedding itself (tied), after a locked output dropout. `LMEncoder` is the stack as an `Encoder`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.encoders.base import Encoder, check_fingerprint, fingerprint
from rnnlab.encoders.lm_vocab import PAD, UNK, LMVocab
from rnnlab.errors import UserError
from rnnlab.subword import truncate

State = list[tuple[Tensor, Tensor]]
"""Per layer (h, c), each `[1, B, H]`: the recurrent state carried from one window of a token stream to the next."""
LM_WEIGHTS = "model.safetensors"


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per sequence, shared by all its time steps: `[B, T, D]` → `[B, T, D]`."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)  # [B, 1, D]
    return x * mask


def _keep_weights_apart() -> None:
    """Replaces `nn.LSTM.flatten_parameters` for weight-dropped layers (see `WeightDropLSTM`)."""


class WeightDropLSTM(nn.Module):
    """One `nn.LSTM` layer whose hidden-to-hidden weights get a new DropConnect mask at every forward in training.

    The raw weights are the parameter (`weight_hh_raw`); the dropped copy is set on the LSTM just before it runs, so
    torch's fused LSTM kernel still does the work (`nn.LSTM.__setattr__` puts it into the kernel's weight list).
    """

    def __init__(self, input_size: int, hidden_size: int, weight_p: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.weight_p = weight_p
        raw = self.lstm.weight_hh_l0
        del self.lstm._parameters["weight_hh_l0"]
        self.weight_hh_raw = nn.Parameter(raw.detach().clone())
        self.lstm.weight_hh_l0 = self.weight_hh_raw.detach()
        # cuDNN's flatten_parameters would copy the dropped weights into its buffer in place, behind autograd's back.
        self.lstm.flatten_parameters = _keep_weights_apart

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, *,
                drop: bool | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:  # fmt: skip
        """`drop`: apply weight drop (default: in training mode)."""
        raw, drop = self.weight_hh_raw, self.training if drop is None else drop
        # A plain tensor, never the Parameter itself: assigning a Parameter would register it on the LSTM a second time.
        self.lstm.weight_hh_l0 = F.dropout(raw, self.weight_p) if drop and self.weight_p else raw.view_as(raw)
        with warnings.catch_warnings():  # on CUDA the dropped copy is not in cuDNN's single weight buffer
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            return self.lstm(x, state)  # [B, T, H], ([1, B, H], [1, B, H])


class LSTMStack(nn.Module):
    """Token ids `[B, T]` → each layer's outputs `[B, T, H_l]` and the final state; the last layer is `emb_dim` wide."""

    def __init__(self, vocab_size: int, *, emb_dim: int, hidden_size: int, layers: int, embed_p: float, input_p: float,
                 weight_p: float, hidden_p: float, output_p: float) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # small logits at the start: a first loss near ln(V)
        sizes = [emb_dim] + [hidden_size] * (layers - 1) + [emb_dim]
        self.layers = nn.ModuleList(WeightDropLSTM(sizes[i], sizes[i + 1], weight_p) for i in range(layers))
        self.embed_p, self.input_p, self.hidden_p, self.output_p = embed_p, input_p, hidden_p, output_p
        self.out_dim = emb_dim

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[list[Tensor], State]:
        # Dropout regularises what trains: a layer frozen by gradual unfreezing runs without it (it would only add noise
        # to the features the head learns from). Everything trains in a language model, so there all of it applies.
        trains = [self.training and layer.weight_hh_raw.requires_grad for layer in self.layers]
        weight = self.embedding.weight
        if self.training and weight.requires_grad and self.embed_p:  # drop whole words: the same rows everywhere
            weight = weight * weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
        x = locked_dropout(F.embedding(ids, weight, PAD), self.input_p, trains[0])  # [B, T, E]
        outputs, new_state = [], []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if state is None else state[i], drop=trains[i])  # [B, T, H_i]
            outputs.append(x)
            new_state.append(layer_state)
            if i < len(self.layers) - 1:
                x = locked_dropout(x, self.hidden_p, trains[i + 1])
        return outputs, new_state

    def groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the top down, for gradual unfreezing: each LSTM layer from the last, then the embedding."""
        return [list(layer.parameters()) for layer in reversed(self.layers)] + [[self.embedding.weight]]


class LanguageModel(nn.Module):
    """`LSTMStack` + locked output dropout + an output layer tied to the embedding: ids `[B, T]` → logits `[B, T, V]`."""

    def __init__(self, vocab_size: int, **net: Any) -> None:
        super().__init__()
        self.stack = LSTMStack(vocab_size, **net)
        self.decoder = nn.Linear(self.stack.out_dim, vocab_size)
        self.decoder.weight = self.stack.embedding.weight  # tied (Press & Wolf 2017): one matrix reads and writes words
        nn.init.zeros_(self.decoder.bias)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        outputs, state = self.stack(ids, state)
        return self.decoder(locked_dropout(outputs[-1], self.stack.output_p, self.training)), state  # [B, T, V]

    def saved_state(self) -> dict[str, Tensor]:
        """The weights to save: the tied output weight is the embedding's, stored once (safetensors refuses aliases)."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k != "decoder.weight"}

    def load_saved(self, weights: dict[str, Tensor], source: object) -> None:
        expected = set(self.saved_state())
        if set(weights) != expected:
            raise UserError(f"{source}: weights do not match this language model ({len(expected ^ set(weights))} keys differ)")
        rows = weights["stack.embedding.weight"].shape[0]
        if rows != self.decoder.bias.shape[0]:
            raise UserError(f"{source}: {rows} embedding rows, but the run's vocabulary has {self.decoder.bias.shape[0]} "
                            "tokens; the vocabulary does not belong to these weights")  # fmt: skip
        self.load_state_dict(weights, strict=False)


def read_lm_run(run: Path) -> tuple[dict[str, Any], LMVocab, dict[str, Tensor]]:
    """An LM run's network description (its config's `net`), vocabulary and weights, checked against each other."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run = Path(run)
    if not (run / "config.json").is_file() or not (run / LM_WEIGHTS).is_file():
        raise UserError(f"{run}: not a finished `rnnlab lm train` run (no config.json or {LM_WEIGHTS})")
    net = json.loads((run / "config.json").read_text(encoding="utf-8")).get("net")
    if not isinstance(net, dict):
        raise UserError(f"{run / 'config.json'}: no `net` section; not an `rnnlab lm train` run")
    vocab = LMVocab.load(run)
    try:
        weights = load_file(str(run / LM_WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{run / LM_WEIGHTS}: corrupt or truncated safetensors file ({str(e).splitlines()[0]})") from None
    rows = weights.get("stack.embedding.weight", torch.empty(0)).shape[0]
    if rows != vocab.size:
        raise UserError(f"{run}: its vocabulary has {vocab.size} tokens but its weights {rows} embedding rows; "
                        "the vocabulary does not match the model")  # fmt: skip
    return net, vocab, weights


class LMEncoder(Encoder):
    """A pretrained language model's LSTM stack as the encoder: token vectors are its last layer's outputs `[B, T, E]`.

    The stack runs forward only, so a right-padded row's real positions never see its padding. Fine-tuned by default,
    by gradual unfreezing (`groups`, used by `rnnlab.training.optim`).
    """

    def __init__(self, vocab: LMVocab, net: dict[str, Any], *, source: str, finetune: bool, max_length: int,
                 truncation: str, fingerprint: str) -> None:  # fmt: skip
        super().__init__()
        self.vocab, self.net, self.source, self.fingerprint = vocab, dict(net), source, fingerprint
        self.stack = LSTMStack(vocab.size, **net)
        self.dim, self.pad_id, self.trainable = self.stack.out_dim, PAD, finetune
        self.max_length, self.truncation = max_length, truncation
        self.stack.requires_grad_(finetune)
        self.train(False)

    @classmethod
    def pretrained(cls, run: Path, *, finetune: bool, max_length: int, truncation: str) -> LMEncoder:
        """The stack of the LM trained in `run` (`rnnlab lm train`), with its weights."""
        net, vocab, weights = read_lm_run(run)
        source = str(Path(run).resolve())
        encoder = cls(vocab, net, source=source, finetune=finetune, max_length=max_length, truncation=truncation,
                      fingerprint=fingerprint([Path(run, LM_WEIGHTS)]))  # fmt: skip
        encoder.stack.load_state_dict({k.removeprefix("stack."): v for k, v in weights.items() if k.startswith("stack.")})
        return encoder

    def check_unseen(self, dataset: str, held_out: set[int]) -> None:
        """Refuse a classifier whose validation or test texts (`held_out`, dataset ids) the language model trained on:
        same dataset, but a split the LM run did not use."""
        path = Path(self.source, "split.json")
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if saved.get("dataset") != dataset:
            return  # another corpus (or an unknown one): its ids name other texts
        seen = held_out & set(saved.get("train", []))
        if seen:
            raise UserError(f"--encoder lm:{self.source}: its language model trained on {len(seen)} of this run's "
                            "validation and test texts; use the LM run's --split-seed, --test-size and --val-size")  # fmt: skip

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        ids = self.vocab.encode(texts)
        return [truncate(t, self.max_length, self.truncation) or [UNK] for t in ids], [max(len(t), 1) for t in ids]

    def token_strings(self, ids: list[int]) -> list[str]:
        return self.vocab.token_strings(ids)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.stack(ids)[0][-1]  # [B, T, E]

    def groups(self) -> list[list[nn.Parameter]]:
        return self.stack.groups()

    def spec(self) -> dict[str, Any]:
        return {"kind": "lm", "source": self.source, "net": self.net, "finetune": self.trainable,
                "max_length": self.max_length, "truncation": self.truncation, "dim": self.dim,
                "vocab_size": self.vocab.size, "fingerprint": self.fingerprint}  # fmt: skip

    def cache_key(self) -> str:
        return super().cache_key() + (self.vocab.tokenizer.to_str() if self.vocab.tokenizer else "".join(self.vocab.chars))

    def save(self, run_dir: Path) -> None:
        super().save(run_dir)
        self.vocab.save(run_dir)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], run_dir: Path) -> LMEncoder:
        """A classification run's encoder: the vocabulary from the run folder; weights from the run's state_dict when
        fine-tuned, else from the LM run they came from (checked unchanged)."""
        cut = {"max_length": spec["max_length"], "truncation": spec["truncation"]}
        if spec["finetune"]:
            return cls(LMVocab.load(run_dir), spec["net"], source=spec["source"], finetune=True,
                       fingerprint=spec["fingerprint"], **cut)  # fmt: skip
        encoder = cls.pretrained(Path(spec["source"]), finetune=False, **cut)
        check_fingerprint(spec, encoder.fingerprint, f"language model {spec['source']}")
        return encoder
