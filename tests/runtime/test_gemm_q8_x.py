"""The int8 prefill gemm in a whole model (forge/runtime/lower.py GEMM_Q8_X, on by default since the
H100 measured it faster than the f16-X gemm): with the switch on, lowering emits one quantize_q8 per distinct gemm input (shared by
Q/K/V and by gate/up) and the gemm xin="q8" for matmul_q8's types but q6_k; a tiny model prefilled
that way on emu-sm90 (or --backend cuda) matches the float64 reference that quantizes those
matmuls' activations too (tests/oracles/llama.py's q8 rule) within test_executor's bound, and the
logits of the f16-X lowering within the same bound."""

import numpy as np
import pytest

from forge.arch import get_arch
from forge.model.config import load_config
from forge.model.gguf import load_gguf
from forge.model.llama import build_llama_graph
from forge.model.weights import weight_types
from forge.runtime import lower as lower_mod
from forge.runtime.lower import lower
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, executor, q8_rule
from tests.runtime.test_gemm_f16_x import assert_one_pass_per_input, tiny


def test_lowering_quantizes_each_input_once(tmp_path, monkeypatch):
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", True)
    p = tiny(tmp_path, "Q4_0")
    g = build_llama_graph(load_config(p), weight_types(load_gguf(p)))
    calls = lower(g, get_arch("emu-sm90"), "prefill", 7, 7).calls
    gemms = [c for c in calls if c.family == "gemm"]
    quants = [c for c in calls if c.family == "quantize_q8"]
    assert gemms and all(c.params.get("xin") == "q8" and c.params.get("ldmatrix") is False for c in gemms)
    assert not any(c.family == "x_f16" for c in calls), "q8 X takes precedence over f16 X"
    assert_one_pass_per_input(calls, gemms, quants, "xq", "xd", "xq", "quantized", "quantization")
    assert all("x" not in c.args for c in gemms)
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", False)  # switched off: no int8 gemm
    off = lower(g, get_arch("emu-sm90"), "prefill", 7, 7).calls
    assert not any(c.family == "quantize_q8" or c.params.get("xin") == "q8" for c in off)


def test_lowering_keeps_q6_k_on_the_f16_gemm(tmp_path, monkeypatch):
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", True)
    p = tiny(tmp_path, "Q6_K")
    g = build_llama_graph(load_config(p), weight_types(load_gguf(p)))
    gemms = [c for c in lower(g, get_arch("emu-sm90"), "prefill", 7, 7).calls if c.family == "gemm"]
    q6 = [c for c in gemms if c.params["wtype"] == "q6_k"]
    assert q6 and all(c.params.get("xin") != "q8" for c in q6)


@pytest.mark.parametrize("wtype", ["Q4_0", "Q4_K", "Q8_0"])
def test_model_prefill_with_q8_x(tmp_path, backend, wtype, monkeypatch):
    if backend not in ("emu-sm90", "cuda"):
        pytest.skip("the int8 gemm exists on mma.sync archs: emu-sm90 here, cuda on the GPU")
    p = tiny(tmp_path, wtype)
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", False)  # the f16-X lowering's logits first
    ex = executor(p, backend)
    want_off = ex.prefill(IDS, all_rows=True)
    ex.close()
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", True)
    ex = executor(p, backend)
    want = Reference(p, q8=q8_rule(ex, 2)).logits(IDS)
    got = ex.prefill(IDS, all_rows=True)  # chunks of 5, 5 and 3 tokens
    assert any(name.endswith(":q8") for ph in ex._phases.values() for name in ph.slot_of), "no xq planned"
    tol = bound(ex, "f32") * np.abs(want).max()
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max() / np.abs(want).max()
    assert np.abs(got - want_off).max() <= tol, np.abs(got - want_off).max() / np.abs(want).max()
    ex.close()
