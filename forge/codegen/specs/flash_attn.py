"""Prefill attention over the paged KV cache: online softmax, K/V tiles in shared memory, GQA."""

from ...arch import Arch
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
    space = {"head_dim": HEAD_DIMS, "kv": KV_DTYPES}
    oracle = "attention"
    doc = "BQ (token, head) rows of one KV-head group per block, keys in tiles of BK; causal at run time"

    def tiles(self, p) -> tuple[int, int]:
        """(BQ, BK): query rows per block and keys per tile."""
        return (16, 32) if p["head_dim"] <= 128 else (8, 16)

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
        bq, _ = self.tiles(p)
        return Launch((max(1, ceil_div(rows, bq)), n_kv_heads, 1), (THREADS, 1, 1))


register(FlashAttn())
