"""An rnnlab text classifier for Hugging Face transformers: encoder → head → classifier, with torch and transformers only.

Written by `rnnlab export RUN --format hf` beside config.json, model.safetensors and the tokenizer; load it with
`pipeline("text-classification", model=DIR, trust_remote_code=True)`. The tokenizer reads whole texts; `forward`
keeps the tokens the run kept (`max_tokens`, cut by `truncation`), so pipeline and rnnlab read the same tokens.
Padding never changes a prediction: every step below reads the attention mask, and padding may sit on either side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
KERNEL_SIZES = (3, 4, 5)


class RnnlabConfig(PretrainedConfig):
    """What rebuilds the network: the encoder (a transformer's own config, or an embedding table), how the run cut
    texts, the head and the temperature that divides the logits."""

    model_type = "rnnlab"

    def __init__(
        self, encoder_kind: str = "embedding", encoder_config: dict | None = None, layer_mix: int = 0,
        vocab_size: int = 2, embedding_dim: int = 8, max_tokens: int = 256, truncation: str = "head_tail",
        special_prefix: int = 0, special_suffix: int = 0, pad_id: int = 0, unk_id: int = 1, head: str = "bilstm",
        head_hidden_size: int = 128, head_layers: int = 1, pooling: str = "last", pool_norm: bool = False,
        dropout: float = 0.0, calibration_temperature: float = 1.0, **kwargs,
    ) -> None:  # fmt: skip
        self.encoder_kind, self.encoder_config, self.layer_mix = encoder_kind, encoder_config, layer_mix
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.max_tokens, self.truncation = max_tokens, truncation
        self.special_prefix, self.special_suffix, self.pad_id, self.unk_id = special_prefix, special_suffix, pad_id, unk_id
        self.head, self.head_hidden_size, self.head_layers, self.pooling = head, head_hidden_size, head_layers, pooling
        self.pool_norm, self.dropout, self.calibration_temperature = pool_norm, dropout, calibration_temperature
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


def keep_tokens(ids: Tensor, mask: Tensor, config: RnnlabConfig) -> tuple[Tensor, Tensor]:
    """The tokens the run read: special tokens around at most `budget` content tokens, the first ones (`head`), the
    last ones (`tail`), or the first quarter and the last three quarters (`head_tail`); an empty text is one [UNK].
    ids, mask [B, L] (padding on any side) → ids, mask [B, T] right-padded."""
    ids, mask = F.pad(ids, (0, 1), value=config.pad_id), F.pad(mask.bool(), (0, 1))  # one column even for [B, 0]
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real tokens first, in their order
    ids = ids.gather(1, order)
    pre, suf = config.special_prefix, config.special_suffix
    budget = config.max_tokens - pre - suf
    first = {"head": budget, "tail": 0, "head_tail": budget // 4}[config.truncation]
    content = mask.sum(1, keepdim=True) - pre - suf  # [B, 1]
    kept = content.clamp(max=budget)
    length = pre + kept + suf  # [B, 1]
    j = torch.arange(max(int(length.max()), 1), device=ids.device).unsqueeze(0)  # [1, T]
    i = j - pre  # position among the kept content tokens
    source = torch.where((content <= budget) | (i < first), i, content - budget + i)  # its position in the text
    src = torch.where(j < pre, j, torch.where(i < kept, pre + source, pre + content + i - kept))
    new_mask = j < length  # [B, T]
    out = ids.gather(1, torch.where(new_mask, src, 0)).masked_fill(~new_mask, config.pad_id)
    empty = length == 0  # [B, 1]
    out[:, :1] = torch.where(empty, config.unk_id, out[:, :1])
    new_mask[:, :1] |= empty
    return out, new_mask


class Pool(nn.Module):
    """Masked pooling [B, T, H] → [B, H]: `last` (each direction's final state), `mean`, `max`, `attention`;
    `concat` is last, max and mean side by side [B, 3H]. `norm`: a BatchNorm1d over the pooled vector."""

    def __init__(self, mode: str, dim: int, directions: int = 1, norm: bool = False) -> None:
        super().__init__()
        self.mode, self.directions = mode, directions
        self.out_dim = 3 * dim if mode == "concat" else dim
        self.score = nn.Linear(dim, 1, bias=False) if mode == "attention" else None
        self.norm = nn.BatchNorm1d(self.out_dim) if norm else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        modes = ("last", "max", "mean") if self.mode == "concat" else (self.mode,)
        pooled = torch.cat([self._pool(x, mask, mode) for mode in modes], dim=1)  # [B, out_dim]
        return pooled if self.norm is None else self.norm(pooled)

    def _pool(self, x: Tensor, mask: Tensor, mode: str) -> Tensor:
        lengths = mask.sum(1)
        if mode == "last":
            last = x.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.size(2))).squeeze(1)  # [B, dirs*H]
            if self.directions == 1:
                return last
            half = x.size(2) // 2  # the backward direction ends at position 0
            return torch.cat([last[:, :half], x[:, 0, half:]], dim=1)
        if mode == "max":
            return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        if mode == "mean":
            return x.sum(1) / lengths.unsqueeze(1).to(x.dtype)
        weights = torch.softmax(self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")), dim=1)  # [B, T]
        return (weights.unsqueeze(-1) * x).sum(1)


class RecurrentHead(nn.Module):
    """torch.nn.RNN/GRU/LSTM over packed sequences, then pooling; out_dim = hidden * directions."""

    def __init__(self, config: RnnlabConfig, input_dim: int) -> None:
        super().__init__()
        cell, bidirectional = {"bilstm": ("lstm", True), "bigru": ("gru", True)}.get(config.head, (config.head, False))
        hidden = config.head_hidden_size
        self.rnn = CELLS[cell](input_dim, hidden, config.head_layers, batch_first=True, bidirectional=bidirectional)
        directions = 2 if bidirectional else 1
        self.pool = Pool(config.pooling, hidden * directions, directions, norm=config.pool_norm)
        self.out_dim = self.pool.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.size(1))
        return self.pool(out, mask)  # [B, dirs*H]


class FNNHead(nn.Module):
    def __init__(self, config: RnnlabConfig, input_dim: int) -> None:
        super().__init__()
        self.out_dim = config.head_hidden_size
        self.pool = Pool(config.pooling, input_dim, norm=config.pool_norm)
        self.mlp = nn.Sequential(nn.Linear(self.pool.out_dim, self.out_dim), nn.GELU(), nn.Dropout(config.dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.mlp(self.pool(x, mask))


class TextCNNHead(nn.Module):
    """Full convolutions (k-1 zeros each side) of widths 3, 4, 5 over zeroed padding; a row of length L keeps its
    L+k-1 windows."""

    def __init__(self, config: RnnlabConfig, input_dim: int) -> None:
        super().__init__()
        channels = config.head_hidden_size
        self.convs = nn.ModuleList(nn.Conv1d(input_dim, channels, k, padding=k - 1) for k in KERNEL_SIZES)
        self.pools = nn.ModuleList(Pool(config.pooling, channels, norm=config.pool_norm) for _ in KERNEL_SIZES)
        self.out_dim = sum(pool.out_dim for pool in self.pools)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1, keepdim=True)
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0).transpose(1, 2)  # [B, D, T]
        pooled = []
        for k, conv, pool in zip(KERNEL_SIZES, self.convs, self.pools):
            h = torch.relu(conv(x)).transpose(1, 2)  # [B, T+k-1, C]
            steps = torch.arange(h.size(1), device=h.device).unsqueeze(0)
            pooled.append(pool(h, steps < lengths + k - 1))
        return torch.cat(pooled, dim=1)  # [B, 3C]


class TransformerHead(nn.Module):
    """Projection, sinusoidal positions, pre-norm nn.TransformerEncoder with a key padding mask, final norm, pooling."""

    def __init__(self, config: RnnlabConfig, input_dim: int) -> None:
        super().__init__()
        hidden = config.head_hidden_size
        self.project = nn.Identity() if input_dim == hidden else nn.Linear(input_dim, hidden)
        heads = next(n for n in (4, 3, 2, 1) if hidden % n == 0)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=4 * hidden, dropout=config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, config.head_layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.pool = Pool(config.pooling, hidden, norm=config.pool_norm)
        self.out_dim = self.pool.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.project(x.masked_fill(~mask.unsqueeze(-1), 0.0))  # [B, T, H]
        length, dim = h.size(1), h.size(2)
        position = torch.arange(length, device=h.device, dtype=torch.float32).unsqueeze(1)  # [T, 1]
        freq = torch.exp(torch.arange(0, dim, 2, device=h.device, dtype=torch.float32) * (-math.log(10000.0) / dim))
        angles = position * freq
        h = h + torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim].to(h.dtype)
        return self.pool(self.encoder(h, src_key_padding_mask=~mask), mask)


HEADS = {"rnn": RecurrentHead, "gru": RecurrentHead, "lstm": RecurrentHead, "bilstm": RecurrentHead,
         "bigru": RecurrentHead, "fnn": FNNHead, "textcnn": TextCNNHead, "transformer": TransformerHead}  # fmt: skip


class PretrainedEncoder(nn.Module):
    """A transformers model's last hidden state, or with `layer_mix` a learned softmax-weighted mix of its last N."""

    def __init__(self, config: RnnlabConfig) -> None:
        super().__init__()
        self.model = AutoModel.from_config(AutoConfig.for_model(**config.encoder_config))
        self.dim = self.model.config.hidden_size
        self.layer_mix = config.layer_mix
        if self.layer_mix:
            self.mix = nn.Module()
            self.mix.scores, self.mix.gamma = nn.Parameter(torch.zeros(self.layer_mix)), nn.Parameter(torch.ones(()))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        out = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=bool(self.layer_mix))
        if not self.layer_mix:
            return out.last_hidden_state  # [B, T, D]
        stacked = torch.stack(out.hidden_states[-self.layer_mix :], dim=2)  # [B, T, N, D]
        weights = torch.softmax(self.mix.scores, dim=0).to(stacked.dtype)
        return self.mix.gamma.to(stacked.dtype) * torch.einsum("btnd,n->btd", stacked, weights)


class EmbeddingEncoder(nn.Module):
    """A word-vector or scratch embedding table; row 0 is padding."""

    def __init__(self, config: RnnlabConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.dim = config.embedding_dim

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.embedding(ids)  # [B, T, D]


class RnnlabForSequenceClassification(PreTrainedModel):
    config_class = RnnlabConfig
    base_model_prefix = "rnnlab"
    main_input_name = "input_ids"

    def __init__(self, config: RnnlabConfig) -> None:
        super().__init__(config)
        self.encoder = PretrainedEncoder(config) if config.encoder_kind == "transformer" else EmbeddingEncoder(config)
        self.head = HEADS[config.head](config, self.encoder.dim)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.head.out_dim, config.num_labels))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Every weight comes from model.safetensors; nothing to initialise."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kwargs) -> SequenceClassifierOutput:  # fmt: skip
        """`token_type_ids` is accepted and ignored (the run never fed it); logits are divided by `calibration_temperature`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask = keep_tokens(input_ids, attention_mask, self.config)
        logits = self.classifier(self.head(self.encoder(ids, mask), mask)) / self.config.calibration_temperature  # [B, C]
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
