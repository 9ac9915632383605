"""The property tests catch real bugs: each mutant below is a plausible mistake, rendered into the
real kernel source (through FORGE_OVERRIDE_DIR, into a private store), and the family's property
test must fail on it at both wave sizes. (Families keep their own mutants beside their property
tests: test_flash_attn, test_gemm, test_gemv, test_kv_append, test_rope, test_sample.)"""

import pytest

from tests.kernels.mutants import assert_property_catches
from tests.kernels.test_rmsnorm import check_rmsnorm

BARRIER = "  if (lane_id() == 0) scratch[wave_id()] = v;\n  sync_threads();\n"
MUTANTS = {
    # the barrier between writing per-wave partials and reading them, removed
    "barrier_removed": (BARRIER, "  if (lane_id() == 0) scratch[wave_id()] = v;\n"),
    # the shuffle tree starts at stride 8 instead of WAVE_SIZE/2: lanes 16 apart never meet
    "tree_starts_at_8": ("for (u32 o = WAVE_SIZE / 2; o > 0; o >>= 1) v += shfl_xor(v, o);",
                         "for (u32 o = 8; o > 0; o >>= 1) v += shfl_xor(v, o);"),
    # the sum-of-squares loop stops one element short
    "off_by_one_tail": ("for (u32 i = tid_x(); i < (u32)ncols; i += 256u) {\n    const float v",
                        "for (u32 i = tid_x(); i < (u32)ncols - 1; i += 256u) {\n    const float v"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    # The barrier site stands in block_sum and block_max alike: mutate the first (block_sum).
    assert_property_catches(emu_kctx, "rmsnorm", {"dtype": "f32", "block": 256}, MUTANTS[mutant],
                            lambda ctx, data: check_rmsnorm(ctx, "f32", data), tmp_path, monkeypatch,
                            max_examples=30, once=False)


# A race that the emulator's default wave order hides. In sample, thread 0 (wave 0) reduces the
# per-wave maxima into `top` and then every thread reads it as m; without the barrier between, a
# wave that runs after wave 0 reads the reduced max (as with the barrier) and a wave that runs
# before it reads what `top` held before (the previous block's). Ascending order always runs wave 0 first, so the
# mutant passes there (checked by hand: tests/runtime/test_emulator.py shows the same hand-off
# deterministically); descending and seeded-random orders, the latter the suite's own
# (tests/conftest.py), must catch it.
SAMPLE_MAX_BARRIER = ("  }\n  sync_threads();\n  const float m = top;", "  }\n  const float m = top;")


@pytest.mark.parametrize("order", ["descending", "random:1"])
def test_non_ascending_wave_order_catches_a_missing_barrier(emu_kctx, order, tmp_path, monkeypatch):
    from forge.runtime.emu import EmuDevice
    from tests.kernels.test_sample import PARAMS, check_sample
    dev = EmuDevice(emu_kctx.arch.wave_size, wave_order=order)
    # Only a drawn case that samples (temperature > 0) over more ids than one wave holds shows it:
    # about 7-20 % of examples, so 200 make a miss a one-in-a-million event.
    assert_property_catches(emu_kctx, "sample", PARAMS, SAMPLE_MAX_BARRIER, check_sample, tmp_path, monkeypatch,
                            max_examples=200, device=dev)
