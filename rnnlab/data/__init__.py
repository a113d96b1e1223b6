"""Data: reading files and packaged datasets, deduplicated stratified splits, length-bucketed batches."""

from rnnlab.data.batching import LengthBucketSampler, collate, shard
from rnnlab.data.readers import MAX_TEXT_CHARS, PACKAGED, Examples, read_examples
from rnnlab.data.split import SPLITS, Prepared, prepare, split_hash

__all__ = [
    "MAX_TEXT_CHARS",
    "PACKAGED",
    "SPLITS",
    "Examples",
    "LengthBucketSampler",
    "Prepared",
    "collate",
    "prepare",
    "read_examples",
    "shard",
    "split_hash",
]
