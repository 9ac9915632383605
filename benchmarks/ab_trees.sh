#!/bin/bash
# Same-call A/B of whole source trees on the lent GPU: each tree is a `git archive` of one commit
# (or of a commit with an experiment on top) carried as .carry/ab/<label>.tar.xz; every command of
# CMDS runs in each tree in turn, ROUNDS times (A B A B ...: drift on the machine hits both), each
# tree with its own kernel store. Diagnostics for choosing between designs, not published results.
#   TESTS='tests/kernels/test_gemm.py' CMDS='python3 benchmarks/gemv.py --backend cuda --int --types q4_0 --shapes 4096x4096' \
#     bash benchmarks/ab_trees.sh
# A command line "@label,label ... cmd" runs in those trees only (e.g. a comparison made within one tree). {M} in a command is the folder of the quick models (MODELS="1b:q4_0 ...", benchmarks/quick_model.py).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/forge-out}; M=/tmp/qmodels
mkdir -p "$OUT" "$M"
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for spec in ${MODELS:-}; do  # written while the first commands run; a command naming {M} waits for them
  timeout 400 python3 benchmarks/quick_model.py "$M/${spec%%:*}-${spec##*:}.gguf" "${spec%%:*}" "${spec##*:}" \
    || echo "quick_model $spec failed"
done &
labels=()
for t in .carry/ab/*.tar.xz; do
  l=$(basename "$t" .tar.xz); labels+=("$l")
  mkdir -p "/tmp/ab/$l" && tar -xJf "$t" -C "/tmp/ab/$l"
done
if [ -n "${TESTS:-}" ]; then  # the CUDA suites of what changed, in tree TEST_TREE (default: the last)
  t=${TEST_TREE:-${labels[-1]}}
  (cd "/tmp/ab/$t" && PYTHONPATH="/tmp/site:$PWD" FORGE_CACHE_DIR="/tmp/cache-$t" timeout "${TEST_TIMEOUT:-180}" \
     python3 -m pytest -q -p no:cacheprovider --backend cuda $TESTS > "$OUT/tests-$t.log" 2>&1; echo "tests [$t] rc $?")
  grep -E "FAILED|ERROR|passed|failed" "$OUT/tests-$t.log" | tail -20
fi
IFS=$'\n' read -d '' -r -a cmds <<< "${CMDS:?CMDS: commands to run in every tree, one per line}"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for c in "${cmds[@]}"; do
    [ -n "$c" ] || continue
    [[ "$c" != *"{M}"* ]] || wait
    for l in "${labels[@]}"; do
      if [[ "$c" == @* ]]; then  # "@label[,label...] command": those trees only
        sel=${c%% *}; [[ ",${sel#@}," == *",$l,"* ]] || continue
      fi
      run=${c#@* }; run=${run//\{M\}/$M}
      echo "### round $round [$l] $c" | tee -a "$OUT/ab.txt"
      (cd "/tmp/ab/$l" && PYTHONPATH="/tmp/site:$PWD" FORGE_CACHE_DIR="/tmp/cache-$l" \
         timeout "${CMD_TIMEOUT:-150}" bash -c "$run") 2>&1 | tee -a "$OUT/ab.txt" | tail -"${LINES_SHOWN:-25}"
    done
  done
done
