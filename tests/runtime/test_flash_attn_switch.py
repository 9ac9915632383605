"""lower.FLASH_ATTN_V, prefill attention's version on the mma.sync path: with either version,
lowering emits it where the arch has it (emu-sm90, cuda; v1 is every matrix path's plain variant)
and the plain variant elsewhere, and a whole tiny model's prefill logits stay within
test_executor's bound of the float64 reference (v2 rounds Q, K, P and V to f16 exactly as v1 does,
so the same allowance holds)."""

import numpy as np
import pytest

from forge.runtime import lower
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, executor, q8_rule


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kv", ["f32", "f16"])
def test_prefill_logits_match_the_reference(tmp_path, backend, kv, version, monkeypatch):
    monkeypatch.setattr(lower, "FLASH_ATTN_V", version)
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=256, n_head=4, n_head_kv=2, n_ff=256, weight_type="F16")
    ex = executor(p, backend, kv=kv)
    fa = [c for c in lower.lower(ex.graph, ex.arch, "prefill", 5, 5, ex.opts).calls if c.family == "flash_attn"]
    has = lower.has_variant("flash_attn", ex.arch, head_dim=64, kv=kv, v=version)
    assert fa and all(c.params.get("v", 1) == (version if has else 1) for c in fa), [c.params for c in fa]
    want = Reference(p, q8=q8_rule(ex, 2)).logits(IDS)
    got = ex.prefill(IDS, all_rows=True)  # chunks of 5: keys from earlier chunks in the cache
    assert np.abs(got - want).max() <= bound(ex, kv) * np.abs(want).max(), np.abs(got - want).max()
    ex.close()
