# Sourced by the device scripts (benchmarks/h100_run.sh, models_gpu.sh): what the lent GPU machine's
# image lacks — Python wheels carried in .whl (gguf, platformdirs) and NVRTC 13.5's libraries
# carried in .carry/nvrtc (the image's NVRTC is older; see docs/PERFORMANCE.md) — and the store.
export PYTHONUNBUFFERED=1 FORGE_CACHE_DIR=${FORGE_CACHE_DIR:-/tmp/forge-cache}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
if [ -f .carry/nvrtc/libnvrtc.so.13.xz ]; then
  mkdir -p /tmp/nvrtc
  [ -f /tmp/nvrtc/libnvrtc.so.13 ] || xz -dc .carry/nvrtc/libnvrtc.so.13.xz > /tmp/nvrtc/libnvrtc.so.13
  [ -f /tmp/nvrtc/libnvrtc-builtins.so.13.5 ] || \
    xz -dc .carry/nvrtc/libnvrtc-builtins.so.13.5.xz > /tmp/nvrtc/libnvrtc-builtins.so.13.5
  export LD_PRELOAD=/tmp/nvrtc/libnvrtc.so.13 LD_LIBRARY_PATH=/tmp/nvrtc:${LD_LIBRARY_PATH:-}
fi
