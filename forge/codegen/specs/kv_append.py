"""Append new K/V rows into the paged KV cache in its storage dtype, optionally applying RoPE to K."""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, ceil_div, register

KV_DTYPES = ("f32", "f16", "fp8", "q8_0", "mxfp6")


class KVAppend(KernelSpec):
    family = "kv_append"
    # RoPE is a run-time choice (n_rot = 0: none; rope_neox picks the pairing): it costs a uniform
    # branch per row in a memory-bound kernel, and saves two thirds of the variants.
    # rope_q (GPU-model targets): the same launch rotates Q in place (args q, n_heads), so the decode
    # step needs no separate rope launch.
    space = {"kv": KV_DTYPES, "block": (128,), "rope_q": (False, True)}
    defaults = {"rope_q": False}
    host = True
    oracle = "attention"
    doc = ("one wave per (token, kv head) row; head_dim <= 256 at run time (q8_0: a multiple of 32, "
           "fp8: of 4, mxfp6: of 16); fp8 rows carry a power-of-two f32 scale, q8_0 rows are GGML blocks, "
           "mxfp6 rows FP6 E2M3 codes then an E8M0 scale per 32 (OCP MX; gfx950: cvt_scalef32); "
           "n_rot > 0 rotates the first n_rot dims of K (rope_neox: NeoX pairing, else normal)")

    def valid(self, p, arch):
        if p["rope_q"] and not arch.is_gpu_semantics:
            return False
        if not arch.is_gpu_semantics:  # the host kernel takes a token per call; block is unused
            return True
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        return [Arg.ptr("k_new", "f32", const=True), Arg.ptr("v_new", "f32", const=True),
                Arg.ptr("pos", "i32", const=True), Arg.ptr("block_table", "i32", const=True),
                Arg.ptr("k_cache", "u8"), Arg.ptr("v_cache", "u8"),
                Arg.scalar("n_tokens", "i32"), Arg.scalar("n_kv_heads", "i32"),
                Arg.scalar("head_dim", "i32"), Arg.scalar("page_size", "i32"),
                Arg.scalar("n_rot", "i32"), Arg.scalar("rope_neox", "i32"),
                Arg.scalar("freq_log2", "f32"), Arg.scalar("freq_scale", "f32"),
                *([Arg.ptr("q", "f32"), Arg.scalar("n_heads", "i32")] if p["rope_q"] else [])]

    def launch(self, p, arch: Arch, *, n_tokens: int, n_kv_heads: int, n_heads: int = 0) -> Launch:
        """rope_q: n_heads Q rows per token after the K/V rows."""
        if n_tokens < 0 or n_kv_heads < 1:
            raise SpecError(f"kv_append: n_tokens {n_tokens} and n_kv_heads {n_kv_heads} must be >= 0 and >= 1")
        if not arch.is_gpu_semantics:
            return Launch((max(1, n_tokens), 1, 1), (1, 1, 1))
        rows_per_block = p["block"] // arch.wave_size
        rows = n_tokens * (n_kv_heads + (n_heads if p["rope_q"] else 0))
        return Launch((max(1, ceil_div(rows, rows_per_block)), 1, 1), (p["block"], 1, 1))


register(KVAppend())
