"""A tiny model end to end with the mxfp6 KV cache (forge.load(kv_dtype="mxfp6")'s executor), on the
CPU targets (the host kernels, the emulator; emu-sm90 too with the backend fixture), prefill and a
decode step, against the float64 reference forward (tests/oracles/llama.py) whose K and V are
rounded through forge.quant.mx's MXFP6 (E2M3) per block of 32, as the cache stores them. What is left
is f32 arithmetic, and elements the kernels computed within f32 rounding of an E2M3 rounding
boundary, which land one step away: the allowance the 8-bit-activation path has for the same
reason (test_executor.bound's 2e-2, added to the bound of the model's matmuls)."""

import numpy as np

from forge.quant import mx
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, executor, q8_rule


def mxfp6_rows(a: np.ndarray) -> np.ndarray:
    """K or V [T, heads, head_dim] as the mxfp6 cache holds them: each row's blocks of 32 through
    forge.quant.mx (the kernels' encode is bit-exact to it: tests/kernels/test_kv_append.py)."""
    fmt = "mxfp6_e2m3"
    return mx.dequantize_mx(*mx.quantize_mx(a.astype(np.float32), fmt), fmt).astype(np.float64)


def test_mxfp6_kv_cache(tmp_path, backend):
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256, weight_type="F16")
    ex = executor(p, backend, kv="mxfp6")
    ref = Reference(p, q8=q8_rule(ex, 2), kv_round=mxfp6_rows)
    want = ref.logits(IDS)
    tol = (2e-2 + bound(ex, "f32")) * np.abs(want).max()
    got = ex.prefill(IDS, all_rows=True)
    err = np.abs(got - want).max()
    assert err <= tol, err / np.abs(want).max()
    ex.prefill(IDS[:-1])  # the last token through the decode path (attn_decode's mxfp6 segments)
    dec = ex.decode_logits(int(IDS[-1]), len(IDS) - 1)
    want_dec = ref.logits(IDS, q8_last=q8_rule(ex, 1))[-1]
    assert np.abs(dec[0] - want_dec).max() <= tol, np.abs(dec[0] - want_dec).max() / np.abs(want).max()
    ex.close()
