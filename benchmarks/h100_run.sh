#!/bin/bash
# One call on the lent NVIDIA machine (the `run` device tool): the CUDA test suite, then the GEMV and
# decode-attention benchmarks with their peers (../shared/peer/read_limit.py, copied into peer/:
# the single-kernel read limit and cuBLAS's f16 GEMV), all in one process tree on one warm GPU.
# Logs and JSON go to $OUT. Carry: .whl (gguf, platformdirs: not on the image) and .carry/nvrtc
# (NVRTC 13.5's libraries, xz; the image's own NVRTC is older) — see docs/PERFORMANCE.md.
#   STEPS="tests gemv attn peer" bash benchmarks/h100_run.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/forge-out}
mkdir -p "$OUT"
STEPS=${STEPS:-"tests peer gemv attn"}
source benchmarks/gpu_env.sh
{
  date -u; git log --oneline -1 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
  python3 -c "import cuda.bindings; from forge.codegen.toolchain import nvrtc_toolchain as t; print('cuda-bindings', cuda.bindings.__version__, '|', t())"
  python3 -c "from forge.runtime.cuda import CudaDevice; print(CudaDevice())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
for step in $STEPS; do
  t0=$(date +%s)
  case $step in
    tests) timeout ${T_TESTS:-200} python3 -m pytest -q -n 8 -p no:cacheprovider --backend cuda ${TESTS:-tests/kernels \
             tests/runtime tests/codegen/test_resources.py} > "$OUT/tests.log" 2>&1; tail -25 "$OUT/tests.log" ;;
    peer) timeout 120 python3 peer/read_limit.py > "$OUT/read_limit.log" 2>&1; cat "$OUT/read_limit.log" ;;
    diag) python3 benchmarks/_diag_ptxas.py 2>&1 | tee "$OUT/diag.log" ;;
    ncu) NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
         timeout 240 "$NCU" --clock-control none --launch-count 18 --section SpeedOfLight \
           --section WarpStateStats --section Occupancy --section LaunchStats python3 benchmarks/profile_kernels.py \
           > "$OUT/ncu.log" 2>&1; grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots|Theoretical Occ" "$OUT/ncu.log" | head -150 ;;
    ab) FORGE_OVERRIDE_DIR=${AB_DIR:-.carry/ab_old} timeout 120 python3 benchmarks/gemv.py --backend cuda --no-check \
          --types ${AB_TYPES:-f16,q4_0,q8_0,q4_k,q6_k} > "$OUT/ab.log" 2>&1; cat "$OUT/ab.log" ;;
    gemv) timeout ${T_GEMV:-180} python3 benchmarks/gemv.py --backend cuda --read-limit --overhead --int --json "$OUT/gemv.json" \
            ${GEMV_ARGS:-} > "$OUT/gemv.log" 2>&1; cat "$OUT/gemv.log" ;;
    rpb) timeout 150 python3 benchmarks/gemv.py --backend cuda --types ${RPB_TYPES:-f16,q8_0,q4_0,q4_k} --rpb 1,2,4 --no-check \
           > "$OUT/gemv_rpb.log" 2>&1; cat "$OUT/gemv_rpb.log" ;;
    attn) timeout 90 python3 benchmarks/attention.py --backend cuda --read-limit --splits ${SPLITS:-16,32,64,128} \
            --json "$OUT/attn.json" > "$OUT/attn.log" 2>&1; cat "$OUT/attn.log" ;;
  esac
  echo "== step $step: $(( $(date +%s) - t0 )) s"
done
