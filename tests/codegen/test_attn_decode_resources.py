"""attn_decode on the mxfp6 KV cache uses no local memory / scratch, as the other KV dtypes' decode
attention does (tests/codegen/test_resources.py, whose check this reuses: its HOT list names
f32/f16/fp8/q8_0 only). mxfp6 is the one dtype whose fetch is common/attn_decode_seg.j2's segment
(three 2-byte loads and a scale byte) and, on gfx950, a 32-wide pk32_f32_fp6 decode whose result
the kernel reads 8 values of: both are where a stack frame or scratch could come in."""

import pytest

from tests.codegen.test_resources import store  # noqa: F401  (the module's store fixture)
from tests.codegen.test_resources import test_hot_kernel_uses_no_local_memory as uses_no_local_memory

MXFP6 = [("attn_decode", {"head_dim": d, "kv": "mxfp6"}) for d in (64, 128)]


@pytest.mark.parametrize("arch_name", ["sm_90", "gfx1100", "gfx950"])
@pytest.mark.parametrize("family, params", MXFP6, ids=[f"{f}-{p['head_dim']}-{p['kv']}" for f, p in MXFP6])
def test_mxfp6_attn_decode_uses_no_local_memory(store, arch_name, family, params):  # noqa: F811
    uses_no_local_memory(store, arch_name, family, params)
