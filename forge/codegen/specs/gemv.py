"""y[n_rows] = W x for one token, W in any weight type, the decode fused into the dot product.

Memory-bound by design: a block holds ROWS waves of RPW rows each; each wave streams its rows
through shared memory in windows of whole blocks copied with coalesced 16-byte loads (stage.h;
GGML blocks are not 16-byte aligned, so they cannot be loaded wide in place), then its lanes
decode groups from shared memory, each lane reading a group's x values once for all RPW rows
(x traffic is 4 bytes per weight per row otherwise, several times the weight bytes of a 4-bit
type), and a wave sum per row finishes it."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

ROWS = 4  # waves per block
RPW = 2  # rows per wave: ROWS * RPW rows per block
BYTES_PER_LANE = 32  # weight bytes each lane stages per row and window: two 16-byte loads


def window(unit_bytes: int, wave: int) -> tuple[int, int]:
    """(unit blocks per window, shared bytes of one row's window) for a weight type and wave size."""
    units = max(1, wave * BYTES_PER_LANE // unit_bytes)
    return units, -(-(units * unit_bytes + 30) // 16) * 16  # + 30: alignment slack at both ends


class Gemv(KernelSpec):
    family = "gemv"
    space = {"wtype": WTYPE_NAMES}
    doc = "RPW rows per wave, ROWS waves per block; w and x (f32) 16-byte aligned, y f32"

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int) -> Launch:
        get_wtype(p["wtype"]).check_shape(n_cols, n_rows=n_rows)
        return Launch((ceil_div(n_rows, ROWS * RPW), 1, 1), (ROWS * arch.wave_size, 1, 1))

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        units, win = window(wt.unit_bytes, arch.wave_size)
        return {"wt": wt, "rows": ROWS, "rpw": RPW, "units": units, "win": win, "threads": ROWS * arch.wave_size}


register(Gemv())
