"""gemv_mx: Y[m, n_rows] = X W^T for a few tokens (decode: m = 1..16) with MX weights, on gfx950's
scaled MFMA (v_mfma_scale_f32_16x16x128_f8f6f4), the E8M0 scales and the weight elements passed to
the unit natively (no re-encoding: FP4 E2M1 as FP4, FP6 E2M3 / E3M2 as FP6, FP8 as FP8 / BF8).

The instruction is D (16 x 16) += (A x sa)(B x sb) over K = 128 in four blocks of 32. Here A is
16 weight rows (the instruction's M) and B the tokens (its N): a wave is a row team of 16 rows and
walks the whole row, one instruction per 128 columns; with m tokens only m of B's 16 columns are
live (m = 1: one), which is the layout that wastes least — the 32x32x64 variant would waste 31 of 32
columns and halve K per instruction. A block of 4 waves owns 64 rows; per K step its threads first
quantize the step's X (m x 128, the 16 token rows padded with zeros) into shared memory with the
activation format `acts` (common/mx_acts.h.j2: MXFP8 E4M3 or MXFP6 E2M3, OCP MX rounding), then each
wave loads its A fragment straight from global memory by the lane-layout table
(forge/codegen/matrix_layouts.py: "..._f6f4" for FP4/FP6 weights, "..._f8" for FP8) and its B
fragment and scales from shared memory.

Weight formats (cbsz): mxfp4 4 (GGML's nibble order — element j low nibble of byte j, j + 16 the high
one — regrouped into the unit's low-nibble-first stream; GGML's doubled E2M1 values with half the
scale are the plain E2M1 values with the scale byte as it is, so the byte goes to the unit unchanged;
only e = 0xFF differs: GGML's number 2^128, the unit's NaN), mxfp6_e2m3 2, mxfp6_e3m2 3 (forge's
MXFP6 bit stream is the unit's), mxfp8_e4m3 0, mxfp8_e5m2 1.

Valid only where the arch has the scaled MFMA (gfx950, emu-gfx950); lowering's choice of it for a
decode matmul is forge/runtime/lower.py's (docs/ARCH.md)."""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import get_wtype
from .gemm import ACTS

MX_FORMATS = {"mxfp4": 4, "mxfp6_e2m3": 2, "mxfp6_e3m2": 3, "mxfp8_e4m3": 0, "mxfp8_e5m2": 1}  # wtype -> cbsz
TOKENS = 16  # B's columns: the most tokens one launch takes
ROWS = 64  # weight rows per block: 4 waves of 16
THREADS = 256
BK = 128  # K per step: one instruction


class GemvMX(KernelSpec):
    family = "gemv_mx"
    space = {"wtype": tuple(MX_FORMATS), "acts": ACTS}
    doc = "grid (n_rows/64); W MX rows, X f32 [m, n_cols] (m <= 16), Y f32 [m, n_rows]"
    oracle = "gemv"  # tests/oracles/gemv.py (check) and the MX rounding of tests/kernels/test_gemm_mx_acts.py

    def valid(self, p, arch):
        return arch.has("mx_scaled_mfma") and arch.wave_size == 64 and THREADS <= arch.max_threads

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("m", "i32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, m: int, n_rows: int, n_cols: int) -> Launch:
        get_wtype(p["wtype"]).check_shape(n_cols, m=m, n_rows=n_rows)
        if m > TOKENS:
            raise SpecError(f"gemv_mx: m={m} tokens; a launch takes at most {TOKENS} (use gemm)")
        return Launch((ceil_div(n_rows, ROWS), 1, 1), (THREADS, 1, 1))

    def context(self, p, arch):
        return {"wt": get_wtype(p["wtype"]), "acts": p["acts"], "cbsz": MX_FORMATS[p["wtype"]], "tokens": TOKENS,
                "rows": ROWS, "threads": THREADS, "bk": BK}


register(GemvMX())
