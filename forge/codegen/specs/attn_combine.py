"""Merge attn_decode's split-K partials into the attention output."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, register


class AttnCombine(KernelSpec):
    family = "attn_combine"
    host = True
    # quant q8 (GPU-model targets): o quantized to 8-bit blocks for the integer matmul that reads it,
    # in the same launch (common/q8_block.j2; head_dim a multiple of 32)
    space = {"block": (128,), "quant": ("none", "q8")}
    defaults = {"quant": "none"}
    barrier_free = False  # GPU: a block max and split weights shared through memory (attn_combine.hip.j2)
    oracle = "attention"
    test = "test_attn_decode"
    doc = "one block per head, threads over head_dim; exact log-sum-exp reweighting"

    def valid(self, p, arch):
        if p["quant"] == "q8" and (not arch.is_gpu_semantics or p["block"] % 32):
            return False
        if not arch.is_gpu_semantics:  # one call merges every head; block is unused
            return True
        return p["block"] <= arch.max_threads

    def args(self, p):
        out = [Arg.ptr("xq", "i8"), Arg.ptr("xd", "f32")] if p["quant"] == "q8" else [Arg.ptr("o", "f32")]
        return [Arg.ptr("part_o", "f32", const=True), Arg.ptr("part_ml", "f32", const=True),
                *out, Arg.scalar("n_splits", "i32"), Arg.scalar("n_heads", "i32"),
                Arg.scalar("head_dim", "i32")]

    def launch(self, p, arch: Arch, *, n_heads: int) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((1, 1, 1), (1, 1, 1))
        return Launch((n_heads, 1, 1), (p["block"], 1, 1))


register(AttnCombine())
