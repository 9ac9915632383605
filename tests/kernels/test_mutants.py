"""The property tests catch real bugs: each mutant below is a plausible mistake, rendered into the
real kernel source (through FORGE_OVERRIDE_DIR, into a private store), and the rmsnorm property
test must fail on it at both wave sizes."""

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
