#!/bin/bash
# Whole-model decode and prefill on the lent NVIDIA GPU: llama.cpp (the peer, built from the
# llama-cpp-python 0.3.36 sdist by peer/build_llamacpp.sh) and forge (`forge bench --backend cuda`)
# on the very same random-weight GGUFs (peer/make_model.py shapes, quantized by llama-quantize), in
# the same session on the same warm machine. Two calls, back to back (the machine stays warm ~30 s):
#   STEPS="prep"  bash benchmarks/models_gpu.sh   # build llama.cpp || write F16 models || GPU work; quantize
#   STEPS="bench" bash benchmarks/models_gpu.sh   # llama-bench and forge bench on every file
# Carry: .whl (gguf, platformdirs), .carry/nvrtc (NVRTC 13.5), .carry/llama.cpp.tar.xz.
# prep's GPU work while the CPU builds and writes: AB_CMDS (if set: benchmarks/ab_trees.sh's CMDS over
# the trees in .carry/ab), then the CUDA tests GPU_TESTS (pytest arguments), then GEMM=1's gemm table.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/forge-out}; M=${MODELS:-/tmp/models}; W=${W:-/tmp/w}
mkdir -p "$OUT" "$M"
source benchmarks/gpu_env.sh
FILES=${FILES:-"smollm2-q4_1 1b-f16 1b-q8_0 1b-q4_0 1b-q4_k_m 1b-mxfp4 8b-q4_0 8b-q4_k_m"}
q() { [ -f "$M/$1-$2.gguf" ] || "$W/llama.cpp/build/bin/llama-quantize" ${4:-} "$M/$1-f16.gguf" "$M/$1-$2.gguf" "$3" \
        "$(nproc)" > "$M/q-$1-$2.log" 2>&1 || tail -3 "$M/q-$1-$2.log"; }
for step in ${STEPS:-prep bench}; do
  t0=$(date +%s)
  case $step in
    prep)
      [ -x "$W/llama.cpp/build/bin/llama-bench" ] || \
        (bash peer/build_llamacpp.sh .carry/llama.cpp.tar.xz "$W" > "$OUT/build.log" 2>&1; echo "build rc $?" >> "$OUT/build.log") &
      for s in smollm2 1b 8b; do
        [ -f "$M/$s-f16.gguf" ] || timeout 300 python3 peer/make_model.py "$M/$s-f16.gguf" "$s" || echo "make_model $s failed"
      done > "$OUT/models.log" 2>&1 &
      [ -z "${AB_CMDS:-}" ] || CMDS="$AB_CMDS" ROUNDS=${ROUNDS:-1} bash benchmarks/ab_trees.sh > "$OUT/ab.log" 2>&1
      timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider --backend cuda \
        ${GPU_TESTS:-tests/runtime/test_executor.py tests/model/test_model.py} > "$OUT/gpu_model_tests.log" 2>&1
      grep -E "FAILED|ERROR" "$OUT/gpu_model_tests.log" | head -20; tail -1 "$OUT/gpu_model_tests.log"
      [ -z "${GEMM:-}" ] || timeout 200 python3 benchmarks/gemm.py --backend cuda --json "$OUT/gemm.json" 2>&1 \
        | tee "$OUT/gemm.txt" | tail -30
      wait
      echo "== models written, llama.cpp built: $(( $(date +%s) - t0 )) s"; ls -la "$M"
      tail -3 "$OUT/build.log"
      q smollm2 q4_1 Q4_1; q 1b q8_0 Q8_0; q 1b q4_0 Q4_0; q 1b q4_k_m Q4_K_M; q 1b mxfp4 MXFP4_MOE --pure
      q 8b q4_0 Q4_0; q 8b q4_k_m Q4_K_M
      ls -la "$M" ;;
    bench)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
      for f in $FILES; do
        [ "${PEER:-1}" = 1 ] || break  # PEER=0: forge only (the peer's numbers from an earlier call on this machine)
        [ -f "$M/$f.gguf" ] || { echo "missing $f"; continue; }
        timeout 200 "$W/llama.cpp/build/bin/llama-bench" -m "$M/$f.gguf" -ngl 99 -p 512 -n 128 -fa 0,1 -r 3 -o json \
          > "$M/bench-$f.json" 2> "$M/bench-$f.err" || tail -3 "$M/bench-$f.err"
        python3 - "$M/bench-$f.json" "$f" <<'PY' | tee -a "$OUT/llamacpp.txt"
import json, sys
for r in json.load(open(sys.argv[1])):
    kind = "pp" if r["n_prompt"] else "tg"
    print(sys.argv[2], f"{kind}{r['n_prompt'] or r['n_gen']}", "fa", r["flash_attn"], round(r["avg_ts"], 1),
          "+-", round(r["stddev_ts"], 1), "t/s; best", round(max(r.get("samples_ts") or [r["avg_ts"]]), 1),
          "(forge bench reports its best of --reps)")
PY
      done
      for f in $FILES; do
        [ -f "$M/$f.gguf" ] || continue
        timeout 150 python3 -m forge bench "$M/$f.gguf" --backend cuda -p 512 -n 128 --reps 3 \
          > "$M/forge-$f.txt" 2>&1 || echo "forge bench $f failed"
        { echo "### $f"; cat "$M/forge-$f.txt"; } | tee -a "$OUT/forge.txt"
      done ;;
    tests)
      timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider --backend cuda \
        ${GPU_TESTS:-tests/runtime/test_executor.py tests/model/test_model.py} > "$OUT/gpu_tests.log" 2>&1
      grep -E "FAILED|ERROR|passed|failed" "$OUT/gpu_tests.log" | tail -30
      [ -z "${GEMM:-}" ] || timeout 200 python3 benchmarks/gemm.py --backend cuda --json "$OUT/gemm.json" 2>&1 \
        | tee "$OUT/gemm.txt" | tail -30 ;;
  esac
  echo "== step $step: $(( $(date +%s) - t0 )) s"
done
