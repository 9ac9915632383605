"""Split-K decode attention (flash-decoding): partial (max, sum, output) per chunk of the context."""

from ...arch import Arch
from ..spec import Arg, Launch, ceil_div, register
from .flash_attn import HEAD_DIMS, THREADS, PagedAttention, check_heads
from .kv_append import KV_DTYPES


class AttnDecode(PagedAttention):
    family = "attn_decode"
    host = True
    space = {"head_dim": HEAD_DIMS, "kv": KV_DTYPES}
    oracle = "attention"
    doc = ("grid (splits, kv heads, ceil(group / BQ)); kv_len[0] (device memory) keys, cut into whole "
           "key tiles per split (splits past the context write empty partials); merge with attn_combine")

    def tiles(self, p) -> tuple[int, int]:
        """(BQ, BK): heads of a group per block (8 covers GQA up to 8 in one block) and keys per tile."""
        return (8, 32) if p["head_dim"] <= 128 else (8, 16)

    def args(self, p):
        return [Arg.ptr("q", "f32", const=True), Arg.ptr("k_cache", "u8", const=True),
                Arg.ptr("v_cache", "u8", const=True), Arg.ptr("block_table", "i32", const=True),
                Arg.ptr("part_o", "f32"), Arg.ptr("part_ml", "f32"), Arg.scalar("n_heads", "i32"),
                Arg.scalar("n_kv_heads", "i32"), Arg.scalar("page_size", "i32"),
                Arg.ptr("kv_len", "i32", const=True), Arg.scalar("scale", "f32")]

    def launch(self, p, arch: Arch, *, n_splits: int, n_heads: int, n_kv_heads: int) -> Launch:
        check_heads(self.family, n_heads, n_kv_heads)
        if not arch.is_gpu_semantics:  # a block takes every head of its KV head's group
            return Launch((n_splits, n_kv_heads, 1), (1, 1, 1))
        bq, _ = self.tiles(p)
        return Launch((n_splits, n_kv_heads, ceil_div(n_heads // n_kv_heads, bq)), (THREADS, 1, 1))


register(AttnDecode())
