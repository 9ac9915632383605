#!/bin/bash
# One device call of checks before the published run (benchmarks/models_gpu.sh): the CUDA suites of
# what changed, and forge bench on gguf-quantized random models (benchmarks/quick_model.py) with
# settings (ENVS, default programmatic dependent launch on and off) against each other. No peer: these numbers are diagnostics, not results.
#   TESTS="tests/..." MODELS="smollm2:q4_0 1b:q4_0" bash benchmarks/quick_gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/forge-out}; M=/tmp/qmodels
mkdir -p "$OUT" "$M"
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
for spec in ${MODELS:-smollm2:q4_0 1b:q4_0 1b:f16}; do
  size=${spec%%:*}; q=${spec##*:}
  timeout 200 python3 benchmarks/quick_model.py "$M/$size-$q.gguf" "$size" "$q" || echo "quick_model $spec failed"
done &
timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider --backend cuda ${TESTS:-tests/kernels/test_rowteams.py} \
  > "$OUT/tests.log" 2>&1; echo "tests rc $? in $(( $(date +%s) - t0 )) s"; tail -15 "$OUT/tests.log"
wait
for spec in ${MODELS:-smollm2:q4_0 1b:q4_0 1b:f16}; do
  f="$M/${spec%%:*}-${spec##*:}.gguf"
  for env in ${ENVS:-FORGE_PDL=1 FORGE_PDL=0}; do  # settings to time against each other
    echo "### $spec $env" | tee -a "$OUT/bench.txt"
    env $env timeout 120 python3 -m forge bench "$f" --backend cuda -p 512 -n 128 --reps ${REPS:-2} 2>&1 | tee -a "$OUT/bench.txt" | head -${LINES_SHOWN:-40}
  done
done
echo "== $(( $(date +%s) - t0 )) s"
