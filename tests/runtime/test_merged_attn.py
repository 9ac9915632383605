"""Decode attention as one launch (forge/runtime/lower.py MERGED_ATTN: attn_decode combine=True merges
its own splits) through a whole tiny model: the decode path's logits against the float64 reference
(tests/oracles/llama.py), on the emulator (scalar path, no integer matmuls) and emu-sm90 (the fused
decode kernels: the merged kernel writes o's 8-bit blocks for the integer output projection), with
`--backend cuda` on the GPU. Tolerances are test_executor.py's (bound()): merging in the decode
kernel instead of attn_combine is the same arithmetic in the same order.

The merged kernel's counters are the lowering reference ("zeroed", name, bytes): a buffer of its own
(Executor._zeroed_buffer), zeroed once when first bound and never shared, which the kernel leaves zeroed:
a second identical step must give identical logits."""

import numpy as np
import pytest

from forge.runtime import lower
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, executor, q8_rule


def model(tmp_path, backend, wtype):
    if backend == "cpu":
        pytest.skip("the host keeps attn_decode + attn_combine (no merged variant)")
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=512, n_head=8, n_head_kv=1, n_ff=256, weight_type=wtype)
    return p, executor(p, backend)  # 8 heads of 64 a KV head: two row tiles of the merged kernel


@pytest.mark.parametrize("wtype", ["F32", "Q8_0"])
def test_merged_decode_logits_match_the_reference(tmp_path, backend, wtype, monkeypatch):
    monkeypatch.setattr(lower, "MERGED_ATTN", True)
    p, ex = model(tmp_path, backend, wtype)
    calls = lower.lower(ex.graph, ex.arch, "decode", 1, 1, ex.opts).calls
    att = [c for c in calls if c.family == "attn_decode"]
    assert att and all(c.params.get("combine") for c in att) and not any(c.family == "attn_combine" for c in calls)
    # emu-sm90 multiplies Q8_0 weights by 8-bit blocks (matmul_q8): the merged kernel writes o's blocks,
    # which the output projection reads (attn_combine's q8 peephole, moved); F32 weights and the plain
    # emulator keep o in f32
    q8 = backend == "emu-sm90" and wtype == "Q8_0"
    assert all(c.params.get("quant", "none") == ("q8" if q8 else "none") for c in att), [c.params for c in att]
    readers = [c for c in calls if c.family == "matmul_q8" and any(c.args["xq"] == a.args.get("xq") for a in att)]
    assert len(readers) == (len(att) if q8 else 0)
    ref = Reference(p, q8=q8_rule(ex, 2))
    want = ref.logits(IDS, q8_last=q8_rule(ex, 1))[-1]
    tol = bound(ex, "f32") * np.abs(want).max()
    ex.prefill(IDS[:-1])
    first = ex.decode_logits(int(IDS[-1]), len(IDS) - 1)  # 13 keys in the emulator's 4 splits: 2 empty
    again = ex.decode_logits(int(IDS[-1]), len(IDS) - 1)  # the same step on the counters the first left
    assert np.abs(first[0] - want).max() <= tol, np.abs(first[0] - want).max() / np.abs(want).max()
    np.testing.assert_array_equal(first, again)
    ex.close()


def test_merged_attn_is_off_by_default_and_the_host_keeps_combine(tmp_path, monkeypatch):
    """MERGED_ATTN ships False (the H100 decides): decode is attn_decode + attn_combine per layer;
    switched on, the host (no merged variant) still lowers to the two launches."""
    assert lower.MERGED_ATTN is False
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256)
    layers = 2  # write_tiny_gguf's default n_layer
    for backend in ("emu-sm90", "cpu"):
        ex = executor(p, backend)
        families = [c.family for c in lower.lower(ex.graph, ex.arch, "decode", 1, 1, ex.opts).calls]
        assert families.count("attn_combine") == families.count("attn_decode") == layers, (backend, families)
        if backend == "cpu":
            monkeypatch.setattr(lower, "MERGED_ATTN", True)
            families = [c.family for c in lower.lower(ex.graph, ex.arch, "decode", 1, 1, ex.opts).calls]
            assert families.count("attn_combine") == layers
        ex.close()
