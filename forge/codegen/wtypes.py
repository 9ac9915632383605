"""Weight types the quantized-matrix families (dequant, gemv, gemm, embed) are templated over.

A weight matrix stays in its storage encoding on the device: row r of an [n_rows, n_cols] matrix
is `row_bytes(wtype, n_cols)` bytes of raw blocks, and the matrix starts 16-byte aligned (device
allocations and GGUF's 32-byte tensor alignment both give that): kernels load block fields with
aligned 16/32-bit loads where the block size allows (`align`). Device code decodes a row in *groups*: group g
yields `r * 4` values, `r` runs of 4 consecutive columns, run k starting at column
`col(g) + k * d` (the helpers in templates/common/quant_*.h define col(g) per type). The runs
follow the encoding's own packing — a Q4_0 byte holds columns j and j+16, so its groups are
"4 bytes → columns j..j+3 and j+16..j+19" — so a group costs no wasted decode work.

Float types (f32/f16/bf16) have GGML block size 1; device code treats 8 elements as a *unit*
block and guards the columns of the last, partial one. `span` is the smallest column range that
holds whole groups (the K-chunk a tiled kernel must step by).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError


@dataclass(frozen=True)
class WType:
    """Layout facts of one weight type, as device code sees it."""

    name: str  # the spec parameter value, a valid C identifier piece
    codec: str  # forge.quant name: a GGML type (forge.quant.ggml) or an MX format (forge.quant.mx)
    qk: int  # columns per block of the encoding
    block_bytes: int  # bytes per block of the encoding
    runs: int  # runs of 4 columns per decoded group
    dist: int  # column distance between runs of a group
    helper: str  # templates/common file that defines the decode

    @property
    def is_float(self) -> bool:
        return self.qk == 1

    @property
    def unit_qk(self) -> int:
        """Columns per device block: the encoding's block, or 8 elements for float types."""
        return 8 if self.is_float else self.qk

    @property
    def unit_bytes(self) -> int:
        return self.block_bytes * (8 if self.is_float else 1)

    @property
    def align(self) -> int:
        """Alignment (bytes, at most 16) of every block start and of every row, given a 16-byte
        aligned matrix: a float row starts at a multiple of its element size only. Device code
        loads fields with the widest loads this allows (a staged copy in shared memory keeps each
        byte's address mod 16, so the same holds there)."""
        return min(16, self.block_bytes & -self.block_bytes)

    @property
    def group_values(self) -> int:
        return self.runs * 4

    @property
    def groups_per_unit(self) -> int:
        return self.unit_qk // self.group_values

    @property
    def span(self) -> int:
        """Columns covered by one set of groups that fill a contiguous range (runs interleave)."""
        return max(self.runs * self.dist, self.group_values)

    def row_bytes(self, n_cols: int) -> int:
        """Bytes of one row of n_cols columns; SpecError when n_cols is not a whole number of blocks."""
        if n_cols <= 0 or n_cols % self.qk:
            raise SpecError(f"{self.name}: n_cols={n_cols} is not a positive multiple of {self.qk}")
        return n_cols // self.qk * self.block_bytes

    def check_shape(self, n_cols: int, **counts: int) -> None:
        """SpecError unless n_cols is a positive whole number of blocks and every count (rows,
        tokens, ...) is positive: what a launch of a quantized-matrix kernel must refuse."""
        self.row_bytes(n_cols)
        for name, v in counts.items():
            if v < 1:
                raise SpecError(f"{self.name}: {name}={v} must be at least 1")

    def groups(self, n_cols: int) -> int:
        """Decoded groups in a row (the last unit of a float row may be partial)."""
        return -(-n_cols // self.unit_qk) * self.groups_per_unit


_G = "common/quant_ggml.h.j2"
_M = "common/quant_mx.h.j2"
_TYPES = [
    WType("f32", "F32", 1, 4, 2, 4, _G),
    WType("f16", "F16", 1, 2, 2, 4, _G),
    WType("bf16", "BF16", 1, 2, 2, 4, _G),
    WType("q8_0", "Q8_0", 32, 34, 2, 4, _G),
    WType("q4_0", "Q4_0", 32, 18, 2, 16, _G),
    WType("q4_1", "Q4_1", 32, 20, 2, 16, _G),
    WType("q5_0", "Q5_0", 32, 22, 2, 16, _G),
    WType("q5_1", "Q5_1", 32, 24, 2, 16, _G),
    WType("q4_k", "Q4_K", 256, 144, 2, 32, _G),
    WType("q5_k", "Q5_K", 256, 176, 2, 32, _G),
    WType("q6_k", "Q6_K", 256, 210, 4, 32, _G),
    WType("mxfp4", "MXFP4", 32, 17, 2, 16, _M),
    # forge's layouts (forge.quant.mx): an FP6 group is a whole block, as gfx950 converts 32 at once.
    WType("mxfp6_e2m3", "mxfp6_e2m3", 32, 25, 8, 4, _M),
    WType("mxfp6_e3m2", "mxfp6_e3m2", 32, 25, 8, 4, _M),
    WType("mxfp8_e4m3", "mxfp8_e4m3", 32, 33, 2, 4, _M),
    WType("mxfp8_e5m2", "mxfp8_e5m2", 32, 33, 2, 4, _M),
]
WTYPES: dict[str, WType] = {t.name: t for t in _TYPES}
WTYPE_NAMES: tuple[str, ...] = tuple(WTYPES)


def get_wtype(name: str) -> WType:
    """The WType called `name`; SpecError listing the known names otherwise."""
    try:
        return WTYPES[name]
    except KeyError:
        raise SpecError(f"unknown weight type {name!r}; known: {', '.join(WTYPES)}") from None
