"""Export a finished run as a Hugging Face folder that `transformers` loads with `trust_remote_code=True`.

The folder holds config.json (an `RnnlabConfig`, with `auto_map`), model.safetensors, the run's tokenizer, the model
code (`hf_code/modeling_rnnlab.py`, torch + transformers only, copied as it is) and a model card (README.md) whose
metadata carries the run's test metrics. The tokenizer reads whole texts and the model cuts them as the run did, so
`pipeline("text-classification")` gives the probabilities `rnnlab predict` gives; the export checks that it does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from rnnlab import runs
from rnnlab.config import RunConfig
from rnnlab.errors import UserError

MODELING = Path(__file__).parent / "hf_code" / "modeling_rnnlab.py"
AUTO_MAP = {"AutoConfig": "modeling_rnnlab.RnnlabConfig",
            "AutoModelForSequenceClassification": "modeling_rnnlab.RnnlabForSequenceClassification"}  # fmt: skip
_DATASETS = {"imdb": ("stanfordnlp/imdb", "IMDB"),
             "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", "Rotten Tomatoes")}  # fmt: skip
WORD_PAD = "<rnnlab:pad>"
INPUTS = ["input_ids", "attention_mask"]
"""What the word-level tokenizers return (no token_type_ids: the run never had any)."""
_PROBES = ["A moving, beautifully acted film that I would watch again.", "Dull.", "",
           "The plot was thin and the ending, frankly, made no sense at all; two hours I will not get back. " * 6]  # fmt: skip


def export_hf(run: Path, out: Path | None = None) -> Path:
    """Write the Hugging Face folder of `run` (default RUN/hf) and check it against the run's own predictions."""
    from rnnlab.encoders.transformer import _no_loading_bar
    from rnnlab.serve.predict import Predictor

    predictor = Predictor.load(run, device="cpu", bf16=False)
    cfg, model = runs.read_config(run), predictor.model
    _refuse_unsupported(run, model.encoder)
    out = Path(out) if out is not None else run / "hf"
    out.mkdir(parents=True, exist_ok=True)
    modeling = _modeling()
    config = modeling.RnnlabConfig(**_config_fields(cfg, model, predictor.label_names, predictor.temperature))
    hf_model = modeling.RnnlabForSequenceClassification(config).eval()
    hf_model.load_state_dict(_hf_state(model), strict=True)  # strict: every weight maps to one, and only one, name
    with _no_loading_bar():
        hf_model.save_pretrained(out)
    shutil.copyfile(MODELING, out / MODELING.name)
    tokenizer = _tokenizer(model.encoder)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(run, cfg, out), encoding="utf-8")
    _check(predictor, out, modeling, type(tokenizer))
    return out


def _refuse_unsupported(run: Path, encoder: torch.nn.Module) -> None:
    """One line naming what the exported model cannot reproduce."""
    if encoder.chunks > 1:
        raise UserError(f"{run}: reads texts in windows (--chunks {encoder.chunks}), which the Hugging Face export "
                        "cannot take yet; export a run trained without --chunks")  # fmt: skip
    if encoder.spec()["kind"] == "lm":
        raise UserError(f"{run}: its encoder is a language model's LSTM stack (--encoder lm:), which the Hugging Face "
                        "export does not cover; use `rnnlab export RUN` (ONNX)")  # fmt: skip
    if getattr(encoder, "lowercase", True) is False:
        raise UserError(f"{run}: its word vectors are cased (looked up as written, then lowercased), which a "
                        "`tokenizers` word-level tokenizer cannot reproduce; export a run on lowercased vectors")  # fmt: skip
    if getattr(encoder, "pretrained", False) and not hasattr(encoder.model.config, "hidden_size"):
        raise UserError(f"{run}: encoder {encoder.name!r} has no `hidden_size` in its config; the export covers "
                        "BERT-style encoders (BERT, RoBERTa, MiniLM, ELECTRA, ...)")  # fmt: skip


def _modeling() -> ModuleType:
    """The model code that goes into the folder, imported from its file (it is package data, not an rnnlab module)."""
    spec = importlib.util.spec_from_file_location("rnnlab_hf_modeling", MODELING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config_fields(cfg: RunConfig, model: torch.nn.Module, labels: list[str], temperature: float) -> dict[str, Any]:
    """RnnlabConfig's fields: the encoder and how it cut texts, the head, the labels and the temperature."""
    from rnnlab.heads import default_pooling

    encoder, head = model.encoder, cfg.model
    fields: dict[str, Any] = {"max_tokens": encoder.max_length, "truncation": encoder.truncation, "pad_id": encoder.pad_id}
    if encoder.pretrained:
        prefix, suffix = encoder.special_tokens()
        own = encoder.model.config  # its non-default fields, without the local folder it was read from
        own = {**{k: v for k, v in own.to_diff_dict().items() if k != "_name_or_path"}, "model_type": own.model_type}
        fields.update(encoder_kind="transformer", encoder_config=own, layer_mix=encoder.layer_mix, special_prefix=prefix,
                      special_suffix=suffix)  # fmt: skip
    else:
        table = encoder.table if hasattr(encoder, "table") else encoder.embedding.weight
        fields.update(encoder_kind="embedding", vocab_size=table.shape[0], embedding_dim=table.shape[1], unk_id=1)
    fields.update(head=head.head, head_hidden_size=head.hidden_size, head_layers=head.layers, dropout=head.dropout,
                  pooling=head.pooling or default_pooling(head.head), pool_norm=head.pool_norm,
                  calibration_temperature=temperature)  # fmt: skip
    fields.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
                  problem_type="single_label_classification", auto_map=AUTO_MAP)  # fmt: skip
    return fields


def _hf_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The run's weights under the exported model's names: a recurrent head's per-layer, per-direction modules
    become one torch.nn.RNN/GRU/LSTM (`forward_layers.L.weight_ih_l0` → `rnn.weight_ih_lL`, backward → `..._reverse`),
    a word-vector table becomes the embedding's weight; everything else keeps its name."""
    # `encoder.layers` (--finetune-layers) is a second name for the transformer's own layer list.
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.layers.")}
    if hasattr(model.encoder, "table"):  # frozen word vectors are a non-persistent buffer: absent from state_dict
        state.pop("encoder.table", None)
        state["encoder.embedding.weight"] = model.encoder.table
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"head\.(forward|backward)_layers\.(\d+)\.(\w+)_l0", key)
        if match:
            direction, layer, name = match.groups()
            key = f"head.rnn.{name}_l{layer}" + ("_reverse" if direction == "backward" else "")
        renamed[key] = value.detach().float().contiguous()
    return renamed


def _tokenizer(encoder: torch.nn.Module) -> Any:
    """A transformer's own tokenizer; for word vectors a word-level tokenizer over the run's vocabulary and regex;
    for a scratch encoder the run's WordPiece tokenizer. None pads or truncates: the model cuts as the run did."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

    if encoder.pretrained:
        tokenizer = AutoTokenizer.from_pretrained(str(encoder.folder), local_files_only=True)
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
    elif hasattr(encoder, "tokenizer"):  # scratch: the run's WordPiece tokenizer already holds its [PAD] and [UNK]
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(encoder.tokenizer.to_str()),
                                            pad_token="[PAD]", unk_token="[UNK]", model_input_names=INPUTS)  # fmt: skip
    else:
        # The pad token is an added token, which is matched in the raw text: "[PAD]" there would become padding, where
        # the run read "[", "pad", "]"; this one no review contains.
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=_word_level(encoder), pad_token=WORD_PAD, model_input_names=INPUTS)
    tokenizer.model_max_length = VERY_LARGE_INTEGER  # no length warning: long texts are cut by the model
    return tokenizer


def _word_level(encoder: torch.nn.Module) -> Any:
    """The word-vector encoder's tokenization (lowercase, its regex's matches, a vocabulary lookup) as `tokenizers`."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    from rnnlab.encoders.words import _WORD

    tokenizer = Tokenizer(models.WordLevel({WORD_PAD: 0, "[UNK]": 1, **encoder.vocab}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    # invert=True keeps the pattern's matches and drops what lies between them: re.findall.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_WORD.pattern), behavior="removed", invert=True)
    return tokenizer


def _check(predictor: Any, out: Path, modeling: ModuleType, tokenizer_class: type) -> None:
    """The folder, loaded as transformers loads it, must give the run's probabilities on texts padded in one batch."""
    from rnnlab.encoders.transformer import _no_loading_bar

    tokenizer = tokenizer_class.from_pretrained(str(out))
    with _no_loading_bar():
        model = modeling.RnnlabForSequenceClassification.from_pretrained(str(out)).eval()
    with torch.no_grad():
        logits = model(**tokenizer(_PROBES, padding=True, return_tensors="pt")).logits
    gap = float(np.abs(torch.softmax(logits, -1).numpy() - predictor.predict_proba(_PROBES)).max())
    if gap > 1e-4:
        raise UserError(f"{out}: the exported model's probabilities differ from the run's by {gap:.2e}; report it")


def train_command(cfg: RunConfig) -> str:
    """The `rnnlab train` flags that differ from the defaults (machine-specific ones left out)."""
    parts = ["rnnlab train"]
    skip = {"run_dir", "overwrite", "device", "progress", "workers", "cache_dir", "checkpoint_every"}
    for section in (cfg.dataset, cfg.encoder, cfg.model, cfg.train, cfg.train.distill):
        default = type(section)()
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if field.name in skip or dataclasses.is_dataclass(value) or value == getattr(default, field.name):
                continue
            name = field.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(f"--{name}" if value else f"--no-{name}")
            else:
                parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def card_metadata(run: Path, cfg: RunConfig, results: dict[str, Any]) -> str:
    """The card's YAML: Hub `model-index` with the test accuracy and macro-F1 of results.json."""
    from huggingface_hub import EvalResult, ModelCardData

    data = cfg.dataset.test_file or cfg.dataset.data
    hub_id, title = _DATASETS.get(data, (Path(data).name, Path(data).name))
    where = dict(task_type="text-classification", task_name="Text Classification", dataset_type=hub_id,
                 dataset_name=title, dataset_split="test")  # fmt: skip
    metrics = [EvalResult(**where, metric_type="accuracy", metric_name="Accuracy", metric_value=results["test_accuracy"]),
               EvalResult(**where, metric_type="f1", metric_name="Macro-F1", metric_args={"average": "macro"},
                          metric_value=results["test_macro_f1"])]  # fmt: skip
    card = ModelCardData(model_name=run.name, library_name="transformers", pipeline_tag="text-classification",
                         tags=["rnnlab", "text-classification", cfg.model.head], eval_results=metrics,
                         datasets=[hub_id] if data in _DATASETS else None)  # fmt: skip
    return card.to_yaml()


def model_card(run: Path, cfg: RunConfig, out: Path) -> str:
    """README.md: the metadata, the test figures, how to use it, the training command, intended use and limits."""
    results = json.loads((run / runs.RESULTS).read_text())
    data = cfg.dataset.test_file or cfg.dataset.data
    config = json.loads((out / "config.json").read_text())
    labels, temperature = ", ".join(config["id2label"].values()), config["calibration_temperature"]
    scaled = (f"The logits are divided by the temperature {temperature:.4g} that `rnnlab analyze` fitted on the validation "
              "split (config.json `calibration_temperature`; set it to 1.0 for raw logits)." if temperature != 1.0 else
              "No temperature was fitted (`rnnlab analyze` fits one); the probabilities are the model's own.")  # fmt: skip
    cut = {"head": "the first", "tail": "the last", "head_tail": "the first quarter and the last three quarters of the"}
    return f"""---
{card_metadata(run, cfg, results)}
---

# {run.name}

A text classifier trained with rnnlab and exported by `rnnlab export {run} --format hf`:
encoder `{cfg.encoder.encoder}` ({"trained" if results.get("finetune") else "frozen"}) → `{cfg.model.head}` head →
{len(config["id2label"])} classes ({labels}).

| split | accuracy | macro-F1 |
|---|---|---|
| test of `{data}` | {results["test_accuracy"]:.4f} | {results["test_macro_f1"]:.4f} |

## Use

```python
from transformers import pipeline

classify = pipeline("text-classification", model="{out}", trust_remote_code=True)
classify("A moving, beautifully acted film.", top_k=None)
```

The model code is `modeling_rnnlab.py` (torch and transformers only), hence `trust_remote_code=True`.
{scaled}

## Training

```bash
{train_command(cfg)}
```

## Intended use and limits

- Labels texts like those of its training data (`{data}`); other domains, languages or label meanings are out of
  its scope, and its errors there are not measured.
- Reads at most {config["max_tokens"]} tokens of a text: {cut[config["truncation"]]} tokens; the rest is not seen.
- The figures above come from one test split; they say nothing about fairness across groups of writers or topics.
"""
