"""y[n_rows] = W x for one token, W in any weight type, the decode fused into the dot product.

Memory-bound by design: a block holds ROWS waves, one row per wave; each wave streams its row
through shared memory in windows of whole blocks copied with 16-byte loads (stage.h), then its
lanes decode groups from shared memory and reduce with a wave sum."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

ROWS = 4  # rows (waves) per block
BYTES_PER_LANE = 32  # weight bytes each lane stages per window: two 16-byte loads


def window(unit_bytes: int, wave: int) -> tuple[int, int]:
    """(unit blocks per window, shared bytes per wave) for a weight type and wave size."""
    units = max(1, wave * BYTES_PER_LANE // unit_bytes)
    return units, -(-(units * unit_bytes + 30) // 16) * 16  # + 30: alignment slack at both ends


class Gemv(KernelSpec):
    family = "gemv"
    space = {"wtype": WTYPE_NAMES}
    doc = "one row per wave, ROWS rows per block; x f32 (16-byte aligned), y f32"

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int) -> Launch:
        get_wtype(p["wtype"]).check_shape(n_cols, n_rows=n_rows)
        return Launch((ceil_div(n_rows, ROWS), 1, 1), (ROWS * arch.wave_size, 1, 1))

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        units, win = window(wt.unit_bytes, arch.wave_size)
        return {"wt": wt, "rows": ROWS, "units": units, "win": win, "threads": ROWS * arch.wave_size}


register(Gemv())
