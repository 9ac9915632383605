"""Split-K decode attention (flash-decoding): partial (max, sum, output) per chunk of the context.

The GPU kernel (templates/attn_decode.hip.j2) is a stream of K/V loads: each wave walks its own key
tiles with no block-wide barrier inside the key loop. A key row is cut into 8-value segments, one
per lane (16-byte loads for f16), so LPK lanes (a power of two >= HD / 8) hold a key and a wave
takes WAVE_SIZE / LPK keys per step, NSTEP steps per tile. Per lane that is NSTEP segments of K and of V in
registers (one of them in flight under the math), and BQ x 8 output accumulators: BQ = 4 heads of
a group per block keeps the registers for 4 blocks an SM on sm_90 (larger groups take more row
tiles of the grid, each reading the group's K/V again). NSTEP is 4 (2 for f32): a lane's K (or V) tile is 64 bytes for f16
and f32, 32 for the 8-bit types (8 for them put a stack frame or spills in local memory on sm_90 within 128 registers). Loads in flight an
SM: 8-16 waves of 2-4 KiB at 32-64 splits, against the ~20 KiB that
2.5 TB/s times ~1 us of latency asks of each of 132 SMs (an estimate, not a measurement).

combine=True (GPU-model targets): the same kernel also merges the splits, so decode attention is one
launch instead of two (attn_decode + attn_combine). The last block of a (KV head, row tile) to
finish, found by a u32 counter per (KV head, row tile) in `count` (counters() of them) that each
block increments after its partials are written and fenced, merges every split's partials of its
heads into o, or with quant=q8 into 8-bit blocks (xq, xd) exactly as attn_combine's quant=q8 does,
and sets its counter back to 0. So `count` must be zero before the first launch (zeroed once when
allocated) and stays zero after every launch; it must not be shared with other data."""

from ...arch import Arch
from ..spec import Arg, Launch, ceil_div, register
from .flash_attn import HEAD_DIMS, HOST_BQ, STATIC_SMEM_CAP, THREADS, PagedAttention, check_heads, kv_dtype_fits
from .kv_append import KV_DTYPES

BQ = 4
# Key steps per wave tile (NSTEP): segments of K (and of V) per lane, 8 values each.
STEPS = {"f32": 2, "f16": 4, "fp8": 4, "q8_0": 4, "mxfp6": 4}
# sm_90 launch bound: blocks an SM the registers are budgeted for (4: 128 registers a thread). The
# grid is splits x KV heads blocks, 2-4 an SM on the H100 at 32-64 splits. benchmarks/attention.py
# --variant renders other STEPS / MIN_BLOCKS choices for a same-call comparison.
MIN_BLOCKS = 4
# combine: the merge after the key loop pushed NVRTC 13.5 past 128 registers into local memory
# (head_dim 64/128 f16: a 16-byte stack frame, 28-36 bytes of spills); 3 blocks an SM (168 registers)
# leaves none (154-162 used). Whether the fourth block an SM is worth a second launch is the H100's call
# (benchmarks/attention.py --merged; --variant min_blocks=... for either).
MIN_BLOCKS_COMBINE = 3
CH = 32  # combine: splits whose weights the merge holds in shared memory at once (the template's CH)


def lanes_per_key(head_dim: int, wave: int) -> int:
    """LPK: the smallest power of two holding a row's HD / 8 segments, at most the wave."""
    lpk = 1
    while lpk < head_dim // 8:
        lpk *= 2
    return min(lpk, wave)


def smem_bytes(head_dim: int, waves: int, combine: bool = False) -> int:
    """Shared memory of the kernel's DecSmem: q and each wave's output for BQ heads, m and l (and
    with combine the merge's maxima, a chunk's weights and the last-block flag)."""
    return 4 * (BQ * head_dim * (1 + waves) + 2 * waves * BQ + (BQ + 2 * BQ * CH + 1 if combine else 0))


def counters(n_heads: int, n_kv_heads: int) -> int:
    """combine: the u32 counters `count` holds, one per (KV head, row tile) of the grid."""
    return n_kv_heads * ceil_div(n_heads // n_kv_heads, BQ)


class AttnDecode(PagedAttention):
    family = "attn_decode"
    host = True
    # combine / quant: the merged variant (module docstring); the defaults keep the old symbols
    space = {"head_dim": HEAD_DIMS, "kv": KV_DTYPES, "combine": (False, True), "quant": ("none", "q8")}
    defaults = {"combine": False, "quant": "none"}
    oracle = "attention"
    doc = ("grid (splits, kv heads, ceil(group / BQ)); kv_len[0] (device memory) keys, cut into whole "
           "16-key runs per split (splits past the context write empty partials); merge with attn_combine, "
           "or combine=True: the last block of a (kv head, row tile) merges (counters in `count`)")

    def valid(self, p, arch):
        if not kv_dtype_fits(p["kv"], p["head_dim"]):
            return False
        if p["quant"] == "q8" and (not p["combine"] or p["head_dim"] % 32):  # a head's blocks are its own
            return False
        if not arch.is_gpu_semantics:
            return not p["combine"]  # the host keeps attn_combine (its splits are its threads)
        # a segment is 8 values; a key's segments must fit in one wave
        return (p["head_dim"] % 8 == 0 and p["head_dim"] // 8 <= arch.wave_size and THREADS <= arch.max_threads
                and smem_bytes(p["head_dim"], THREADS // arch.wave_size, p["combine"]) <= min(arch.lds_bytes, STATIC_SMEM_CAP))

    def context(self, p, arch):
        if not arch.is_gpu_semantics:
            return {"bq": HOST_BQ}
        return {"bq": BQ, "nt": THREADS, "lpk": lanes_per_key(p["head_dim"], arch.wave_size), "steps": STEPS[p["kv"]],
                "min_blocks": MIN_BLOCKS_COMBINE if p["combine"] else MIN_BLOCKS}

    def args(self, p):
        return [Arg.ptr("q", "f32", const=True), Arg.ptr("k_cache", "u8", const=True),
                Arg.ptr("v_cache", "u8", const=True), Arg.ptr("block_table", "i32", const=True),
                Arg.ptr("part_o", "f32"), Arg.ptr("part_ml", "f32"), Arg.scalar("n_heads", "i32"),
                Arg.scalar("n_kv_heads", "i32"), Arg.scalar("page_size", "i32"),
                Arg.ptr("kv_len", "i32", const=True), Arg.scalar("scale", "f32"), *self.merged_args(p)]

    def merged_args(self, p) -> list[Arg]:
        """combine: the merged output (o, or its 8-bit blocks xq, xd) and the counters."""
        if not p["combine"]:
            return []
        out = [Arg.ptr("xq", "i8"), Arg.ptr("xd", "f32")] if p["quant"] == "q8" else [Arg.ptr("o", "f32")]
        return [*out, Arg.ptr("count", "u32")]

    def launch(self, p, arch: Arch, *, n_splits: int, n_heads: int, n_kv_heads: int) -> Launch:
        check_heads(self.family, n_heads, n_kv_heads)
        if not arch.is_gpu_semantics:  # a block takes every head of its KV head's group
            return Launch((n_splits, n_kv_heads, 1), (1, 1, 1))
        return Launch((n_splits, n_kv_heads, ceil_div(n_heads // n_kv_heads, BQ)), (THREADS, 1, 1))


register(AttnDecode())
