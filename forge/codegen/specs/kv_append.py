"""Append new K/V rows into the paged KV cache in its storage dtype, optionally applying RoPE to K."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register

KV_DTYPES = ("f32", "f16", "fp8", "q8_0")


class KVAppend(KernelSpec):
    family = "kv_append"
    space = {"kv": KV_DTYPES, "rope": ("none", "normal", "neox"), "block": (128,)}
    oracle = "attention"
    doc = ("one wave per (token, kv head) row; head_dim <= 256 at run time (q8_0: a multiple of 32, "
           "fp8: of 4); fp8 rows carry a power-of-two f32 scale, q8_0 rows are GGML blocks")

    def valid(self, p, arch):
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        a = [Arg.ptr("k_new", "f32", const=True), Arg.ptr("v_new", "f32", const=True),
             Arg.ptr("pos", "i32", const=True), Arg.ptr("block_table", "i32", const=True),
             Arg.ptr("k_cache", "u8"), Arg.ptr("v_cache", "u8"),
             Arg.scalar("n_tokens", "i32"), Arg.scalar("n_kv_heads", "i32"),
             Arg.scalar("head_dim", "i32"), Arg.scalar("page_size", "i32")]
        if p["rope"] != "none":
            a += [Arg.scalar("n_rot", "i32"), Arg.scalar("freq_log2", "f32"), Arg.scalar("freq_scale", "f32")]
        return a

    def launch(self, p, arch: Arch, *, n_tokens: int, n_kv_heads: int) -> Launch:
        rows_per_block = p["block"] // arch.wave_size
        return Launch((max(1, ceil_div(n_tokens * n_kv_heads, rows_per_block)), 1, 1), (p["block"], 1, 1))


register(KVAppend())
