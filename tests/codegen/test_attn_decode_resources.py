"""The merged decode attention (attn_decode combine=True: the last block of a (KV head, row tile)
merges the splits, optionally into 8-bit blocks) uses no local memory / scratch, as the other hot
decode kernels (tests/codegen/test_resources.py, whose check this reuses: its HOT list names the
unmerged attn_decode only)."""

import pytest

from tests.codegen.test_resources import store  # noqa: F401  (the module's store fixture)
from tests.codegen.test_resources import test_hot_kernel_uses_no_local_memory as uses_no_local_memory

MERGED = [("attn_decode", {"head_dim": d, "kv": kv, "combine": True, "quant": quant})
          for d in (64, 128) for kv in ("f32", "f16", "fp8", "q8_0") for quant in ("none", "q8")]


@pytest.mark.parametrize("arch_name", ["sm_90", "gfx1100", "gfx950"])
@pytest.mark.parametrize("family, params", MERGED, ids=[f"{f}-{'-'.join(map(str, p.values()))}" for f, p in MERGED])
def test_merged_attn_decode_uses_no_local_memory(store, arch_name, family, params):  # noqa: F811
    uses_no_local_memory(store, arch_name, family, params)
