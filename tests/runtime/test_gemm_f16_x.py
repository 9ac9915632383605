"""The f16-X prefill gemm in a whole model (forge/runtime/lower.py GEMM_F16_X): with the switch on,
lowering emits one x_f16 per distinct gemm input (shared by Q/K/V and by gate/up) and the gemm
xin="f16"; a tiny model prefilled that way on emu-sm90 (or --backend cuda) matches the float64
reference within test_executor's bound (its f16-gemm term applies unchanged: the same roundings),
and gives the same logits as with the switch off on the emulator, bit for bit (every activation of a
tiny random model stays far below 2^15 or scales the same per chunk and per row, so every product
and sum is the same: tests/kernels/test_gemm.py)."""

import numpy as np
import pytest

from forge.arch import get_arch
from forge.model.config import load_config
from forge.model.gguf import load_gguf
from forge.model.llama import build_llama_graph
from forge.model.weights import weight_types
from forge.runtime import lower as lower_mod
from forge.runtime.lower import lower
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, executor, q8_rule


def tiny(tmp_path, wtype: str):
    n_embd = 256 if wtype.endswith("_K") else 128
    return write_tiny_gguf(tmp_path / "m.gguf", n_embd=n_embd, n_head=n_embd // 64, n_head_kv=1, n_ff=256,
                           weight_type=wtype, embd_type="Q8_0" if wtype.endswith("_K") else None)


def assert_one_pass_per_input(calls, gemms, passes, out: str, aux: str, gemm_in: str, done: str, noun: str) -> None:
    """Each distinct gemm input goes through its X pass (x_f16 or quantize_q8: outputs `out` and
    `aux`, read by the gemm as `gemm_in` and `aux`) once, shared by Q/K/V and by gate/up, before
    every gemm that reads it."""
    assert len({c.args["x"] for c in passes}) == len(passes), f"an input {done} twice"
    assert len(passes) < len(gemms), f"Q/K/V and gate/up should share their {noun}"
    made = {c.args[out]: c.args[aux] for c in passes}
    for c in gemms:
        assert made[c.args[gemm_in]] == c.args[aux]
        assert calls.index(next(p for p in passes if p.args[out] == c.args[gemm_in])) < calls.index(c)


def test_lowering_converts_each_input_once(tmp_path, monkeypatch):
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", False)  # the int8 gemm takes precedence where on
    monkeypatch.setattr(lower_mod, "GEMM_F16_X", True)
    p = tiny(tmp_path, "Q4_0")
    g = build_llama_graph(load_config(p), weight_types(load_gguf(p)))
    calls = lower(g, get_arch("emu-sm90"), "prefill", 7, 7).calls
    gemms = [c for c in calls if c.family == "gemm"]
    convs = [c for c in calls if c.family == "x_f16"]
    assert gemms and all(c.params.get("xin") == "f16" for c in gemms)
    assert_one_pass_per_input(calls, gemms, convs, "xh", "xe", "x", "converted", "conversion")
    monkeypatch.setattr(lower_mod, "GEMM_F16_X", False)
    off = lower(g, get_arch("emu-sm90"), "prefill", 7, 7).calls
    assert not any(c.family == "x_f16" or "xin" in c.params for c in off)


@pytest.mark.parametrize("wtype", ["Q4_0", "Q4_K", "F16"])
def test_model_prefill_with_f16_x(tmp_path, backend, wtype, monkeypatch):
    if backend not in ("emu-sm90", "cuda"):
        pytest.skip("the f16-X gemm exists on mma.sync archs: emu-sm90 here, cuda on the GPU")
    p = tiny(tmp_path, wtype)
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", False)  # the int8 gemm takes precedence where on
    monkeypatch.setattr(lower_mod, "GEMM_F16_X", False)  # the f32-X gemm's logits first
    ex = executor(p, backend)
    want_off = ex.prefill(IDS, all_rows=True)
    assert not any(name.endswith(":f16") for ph in ex._phases.values() for name in ph.slot_of)
    ex.close()
    monkeypatch.setattr(lower_mod, "GEMM_F16_X", True)
    ex = executor(p, backend)
    want = Reference(p, q8=q8_rule(ex, 2)).logits(IDS)
    got = ex.prefill(IDS, all_rows=True)  # chunks of 5, 5 and 3 tokens
    assert any(name.endswith(":f16") for ph in ex._phases.values() for name in ph.slot_of), "no x_f16 output planned"
    assert np.abs(got - want).max() <= bound(ex, "f32") * np.abs(want).max()
    if backend == "emu-sm90":
        assert np.array_equal(got, want_off)
    ex.close()


def test_lowering_gives_k_groups_to_converted_x_only(tmp_path, monkeypatch):
    """On sm_90 a tiny model's gemms fill few SMs, so gemm_params asks for two K groups: lowering keeps
    them with f16 X and drops them with f32 X (that variant does not exist), and every call it makes
    names a variant that does."""
    p = tiny(tmp_path, "Q4_0")
    g = build_llama_graph(load_config(p), weight_types(load_gguf(p)))
    sm90 = get_arch("sm_90")
    monkeypatch.setattr(lower_mod, "GEMM_Q8_X", False)
    for f16_x, groups in ((True, {2}), (False, {1})):
        monkeypatch.setattr(lower_mod, "GEMM_F16_X", f16_x)
        gemms = [c for c in lower(g, sm90, "prefill", 512, 512).calls if c.family == "gemm"]
        assert gemms and {c.params.get("kgroups", 1) for c in gemms} == groups
        assert all(lower_mod.has_variant("gemm", sm90, **c.params) for c in gemms)
