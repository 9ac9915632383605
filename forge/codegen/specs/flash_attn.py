"""Prefill attention over the paged KV cache: online softmax, K/V tiles in shared memory, GQA.

A block owns BQ rows, (token, head) pairs of one KV head's group, so the group's heads share every
K/V tile it decodes, and walks the keys in tiles of BK. How it multiplies depends on the arch's
matrix unit (`path()`, templates/flash_attn/<path>.j2), as for the gemm (specs/gemm.py):

- "mma_sync" (arch.has("mma_sync"): sm_80, sm_90, emu-sm90) and "wmma" (arch.has("wmma_f16"):
  gfx1100-1102, emu-gfx1100): S = Q K^T and O += P V on the matrix unit (mma.sync m16n8k16 /
  v_wmma_f32_16x16x16_f16, f16 inputs, f32 accumulators), the online softmax between them in f32
  (templates/flash_attn/matrix.j2). Each of the 4 waves owns 16 of the block's MMA_BQ = 64 rows: its
  Q fragments stay in registers for the whole walk (each row scaled by a power of two 2^-e into
  [2^14, 2^15) before rounding to f16, undone exactly on the scores), its O accumulators too. Per
  key tile the K tile (row-major) and V tile (transposed) are decoded to f16 in shared memory, the
  scores go through shared memory in f32 and the probabilities come back as f16 (P's rounding is
  the one the row sum l sees too). Head dims up to 128; 256 would need 128 accumulator registers a
  lane and stays scalar.
  `v=2` (mma_sync only; the default stays 1, the kernel above): a second version for speed
  (templates/flash_attn/mma_sync_v2.j2). S stays in registers: the m16n8k16 accumulator layout of
  two adjacent n8 score tiles is, lane for lane, the A fragment of P for the P V product
  (`p_from_s` derives it from the lane-layout table and refuses a table where it is not), so the
  online softmax runs on each lane's rows with shuffles among the lanes sharing a row (`row_lanes`:
  the quad), l accumulates per lane and is summed over the quad once at the end. Fragments by
  ldmatrix .x4 (Q, K row-major; V stored transposed, ldmatrix .trans not being emulated). The K/V
  tiles are double-buffered (two f16 buffers): the next tile's raw rows are fetched into registers
  (common/attn_decode_seg.j2's 8-value segments: 16-byte loads for f16) before this tile's
  products and decoded into the other buffer after them, so one block barrier per key tile.
- "mfma" (arch.has("mfma_f16"): gfx942, gfx950, emu-gfx950; wave64): the same kernel
  (templates/flash_attn/matrix.j2) on v_mfma_f32_16x16x16_f16 (templates/flash_attn/mfma.j2). The
  block keeps MMA_THREADS = 128 threads and MMA_BQ = 64 rows, i.e. 2 waves of 64 lanes, so a wave owns
  32 rows: two 16-row MFMA blocks, each K or V^T fragment it loads serving both (the softmax keeps
  its two threads per row). Head dims 64-128, v = 1 only.
- everything else ("scalar": emu, emu64, host, head dim 256): f32 fma tiles in common/attn.h,
  shared with attn_decode.
"""

from ...arch import Arch
from ..matrix_layouts import MatrixLayout, get_layout
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from .kv_append import KV_DTYPES

HEAD_DIMS = (64, 80, 96, 128, 256)
THREADS = 128
# CUDA caps static shared memory at 48 KiB per block; every tile choice below stays under it.
STATIC_SMEM_CAP = 48 * 1024
# Host target: query rows per block (their K/V tiles are decoded once for all of them); keys go in
# tiles of 16 (one vector of scores), common/host_attn.h.
HOST_BQ = 16
# Matrix paths: 4 waves of 32 lanes, 16 query rows each (one MMA row block), keys in tiles of 32.
MMA_BQ, MMA_BK, MMA_THREADS = 64, 32, 128
MMA_HEAD_DIMS = (64, 80, 96, 128)  # 256: the O accumulators alone would take 128 registers a lane
PAD = 8  # f16 after each shared tile row: rows stay 16-byte aligned (the fragment loads' need)


def path(arch: Arch, head_dim: int) -> str:
    """Which matrix path multiplies flash_attn's tiles on `arch` (templates/flash_attn/<path>.j2):
    the arch's f16 matrix unit where it has one forge can run and test, else scalar fma."""
    if arch.is_gpu_semantics and head_dim in MMA_HEAD_DIMS and arch.wave_size == 32:
        if arch.has("wmma_f16"):
            return "wmma"
        if arch.has("mma_sync"):
            return "mma_sync"
    if arch.is_gpu_semantics and head_dim in MMA_HEAD_DIMS and arch.wave_size == 64 and arch.has("mfma_f16"):
        return "mfma"
    return "scalar"


def rounds_to_f16(arch: Arch, head_dim: int) -> bool:
    """Whether flash_attn on `arch` rounds Q, K, P and V to f16 (the matrix paths): its results carry
    the f16 bound of tests/kernels/test_flash_attn.py."""
    return path(arch, head_dim) != "scalar"


def v2_smem_bytes(head_dim: int) -> int:
    """Static shared memory of templates/flash_attn/mma_sync_v2.j2: two K/V^T tile buffers in f16 (the
    Q staging area aliases them before the walk), and a float per row (scale * 2^e)."""
    buf = (MMA_BK * (head_dim + PAD) + head_dim * (MMA_BK + PAD)) * 2
    return max(2 * buf, MMA_BQ * (head_dim + PAD) * 2) + 4 * MMA_BQ


def p_from_s(L: MatrixLayout) -> list[tuple[int, int]]:
    """[(n tile, accumulator element)] for each element i of an A fragment: in every lane, A element
    i of the k block kb of P is element e of the score accumulator tile (L.k // L.n) kb + t of the same
    lane, so P's A fragments are built from S's registers with no data movement between lanes.
    SpecError where the table has no such lane-uniform correspondence (then S must go through
    memory)."""
    tiles = L.k // L.n
    if L.a.rows != L.d.rows or L.k % L.n:
        raise SpecError(f"{L.name}: A and D differ in rows, or K is not whole n tiles")
    out = []
    for i in range(L.a.elems):
        hits = [(t, e) for t in range(tiles) for e in range(L.d.elems)
                if all((L.d.row(lane=l, i=e), L.d.col(lane=l, i=e) + t * L.n) == L.a.element(l, i)
                       for l in range(L.wave))]
        if len(hits) != 1:
            raise SpecError(f"{L.name}: A element {i} is not one accumulator element in every lane ({hits})")
        out.append(hits[0])
    return out


def row_lanes(L: MatrixLayout) -> tuple[list[int], list[int], list[int]]:
    """(xor masks, slot of each accumulator element, first element of each slot): the lanes holding
    a row of D are lane ^ x for x spanned by the masks (a shuffle per mask reduces over them), and
    element e of every lane holds the lane's row number slot[e] (rows in order of first element).
    SpecError where the lanes of a row are not such a group or the slots differ between lanes."""
    rows = {}
    for l in range(L.wave):
        for e in range(L.d.elems):
            rows.setdefault(L.d.row(lane=l, i=e), set()).add(l)
    masks = sorted({l ^ min(g) for g in rows.values() for l in g} - {0})
    masks = [m for m in masks if m & (m - 1) == 0]
    span = {0}
    for m in masks:
        span |= {x ^ m for x in span}
    if any(g != {min(g) ^ x for x in span} for g in rows.values()):
        raise SpecError(f"{L.name}: the lanes sharing a row of D are not an xor group")
    slots = None
    for l in range(L.wave):
        order = list(dict.fromkeys(L.d.row(lane=l, i=e) for e in range(L.d.elems)))
        mine = [order.index(L.d.row(lane=l, i=e)) for e in range(L.d.elems)]
        if slots not in (None, mine):
            raise SpecError(f"{L.name}: lanes place their rows in different elements")
        slots = mine
    return masks, slots, [slots.index(r) for r in range(max(slots) + 1)]


def mma_smem_bytes(head_dim: int) -> int:
    """Static shared memory of templates/flash_attn/matrix.j2's FaSmem: the f16 Q staging area,
    aliased with the K, V^T and P tiles; the f32 scores; five per-row words."""
    q = MMA_BQ * (head_dim + PAD) * 2
    tiles = (MMA_BK * (head_dim + PAD) + head_dim * (MMA_BK + PAD) + MMA_BQ * (MMA_BK + PAD)) * 2
    return max(q, tiles) + MMA_BQ * (MMA_BK + 4) * 4 + 5 * 4 * MMA_BQ


def smem_bytes(head_dim: int, bq: int, bk: int) -> int:
    """Shared memory of common/attn.h's AttnSmem for these tile sizes."""
    floats = bq * head_dim + bk * (head_dim + 1) + bk * head_dim + bq * bk + 3 * bq
    return 4 * floats + 4 * bq


def kv_dtype_fits(kv: str, head_dim: int) -> bool:
    """q8_0 rows are whole GGML blocks of 32 (head_dim 80 has no q8_0 variant)."""
    return kv != "q8_0" or head_dim % 32 == 0


def check_heads(family: str, n_heads: int, n_kv_heads: int) -> None:
    """SpecError unless n_kv_heads divides n_heads (GQA/MQA groups of equal size)."""
    if n_kv_heads < 1 or n_heads < 1 or n_heads % n_kv_heads:
        raise SpecError(f"{family}: n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")


class PagedAttention(KernelSpec):
    """What flash_attn and attn_decode share: tiles of (BQ rows, BK keys) in static shared memory
    over the paged cache, THREADS per block; subclasses pick the tiles."""

    def tiles(self, p) -> tuple[int, int]:
        raise NotImplementedError

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:  # no shared memory or threads on the host: only the dtype fit
            return kv_dtype_fits(p["kv"], p["head_dim"])
        bq, bk = self.tiles(p)
        return kv_dtype_fits(p["kv"], p["head_dim"]) and smem_bytes(p["head_dim"], bq, bk) <= min(
            arch.lds_bytes, STATIC_SMEM_CAP) and THREADS <= arch.max_threads

    def context(self, p, arch):
        if not arch.is_gpu_semantics:
            return {"bq": HOST_BQ}
        bq, bk = self.tiles(p)
        return {"bq": bq, "bk": bk, "nt": THREADS}


class FlashAttn(PagedAttention):
    family = "flash_attn"
    host = True
    # Causal masking is a run-time flag: it only sets each row's last visible key and the block's
    # key range, so a compile-time copy would double the variants for nothing.
    # v: the mma.sync kernel's version (2: S in registers, ldmatrix, double-buffered tiles; the
    # other paths have only 1). The default keeps the existing symbols.
    space = {"head_dim": HEAD_DIMS, "kv": KV_DTYPES, "v": (1, 2)}
    defaults = {"v": 1}
    oracle = "attention"
    doc = "BQ (token, head) rows of one KV-head group per block, keys in tiles of BK; causal at run time"

    def tiles(self, p) -> tuple[int, int]:
        """(BQ, BK) of the scalar path: query rows per block and keys per tile."""
        return (16, 32) if p["head_dim"] <= 128 else (8, 16)

    def arch_tiles(self, p, arch: Arch) -> tuple[int, int]:
        """(BQ, BK) of the GPU kernel on `arch`: the matrix paths' where it has one."""
        return (MMA_BQ, MMA_BK) if path(arch, p["head_dim"]) != "scalar" else self.tiles(p)

    def valid(self, p, arch):
        kind = path(arch, p["head_dim"])
        if p["v"] != 1 and not (arch.is_gpu_semantics and kind == "mma_sync"):
            return False
        if kind == "scalar":
            return super().valid(p, arch)
        smem = v2_smem_bytes(p["head_dim"]) if p["v"] == 2 else mma_smem_bytes(p["head_dim"])
        return (kv_dtype_fits(p["kv"], p["head_dim"]) and MMA_THREADS <= arch.max_threads
                and smem <= min(arch.lds_bytes, STATIC_SMEM_CAP))

    def context(self, p, arch):
        kind = path(arch, p["head_dim"])
        if kind == "scalar":
            return {**super().context(p, arch), "path": kind}
        ctx = {"path": kind, "bq": MMA_BQ, "bk": MMA_BK, "nt": MMA_THREADS, "pad": PAD, "v": p["v"]}
        if p["v"] == 2:
            L = get_layout("mma_m16n8k16_f16_f32")
            masks, slots, first = row_lanes(L)
            ctx.update(p_map=p_from_s(L), row_xor=masks, row_slot=slots, slot_first=first)
        return ctx

    def args(self, p):
        return [Arg.ptr("q", "f32", const=True), Arg.ptr("k_cache", "u8", const=True),
                Arg.ptr("v_cache", "u8", const=True), Arg.ptr("block_table", "i32", const=True),
                Arg.ptr("o", "f32"), Arg.scalar("n_q", "i32"), Arg.scalar("n_heads", "i32"),
                Arg.scalar("n_kv_heads", "i32"), Arg.scalar("page_size", "i32"),
                Arg.scalar("kv_len", "i32"), Arg.scalar("n_past", "i32"), Arg.scalar("causal", "i32"),
                Arg.scalar("scale", "f32")]

    def launch(self, p, arch: Arch, *, n_q: int, n_heads: int, n_kv_heads: int) -> Launch:
        check_heads(self.family, n_heads, n_kv_heads)
        rows = n_q * (n_heads // n_kv_heads)
        if not arch.is_gpu_semantics:
            return Launch((max(1, ceil_div(rows, HOST_BQ)), n_kv_heads, 1), (1, 1, 1))
        bq, _ = self.arch_tiles(p, arch)
        threads = MMA_THREADS if path(arch, p["head_dim"]) != "scalar" else THREADS
        return Launch((max(1, ceil_div(rows, bq)), n_kv_heads, 1), (threads, 1, 1))


register(FlashAttn())
