"""Rotary position embedding (normal and NeoX pairing), in place."""

import math

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register


class Rope(KernelSpec):
    family = "rope"
    space = {"mode": ("normal", "neox"), "dtype": ("f32", "f16"), "block": (128,)}
    barrier_free = True
    host = True

    def args(self, p):
        return [Arg.ptr("x", p["dtype"]), Arg.ptr("pos", "i32", const=True),
                Arg.scalar("n_heads", "i32"), Arg.scalar("head_dim", "i32"), Arg.scalar("n_rot", "i32"),
                Arg.scalar("freq_log2", "f32"), Arg.scalar("freq_scale", "f32")]

    def launch(self, p, arch: Arch, *, n_tokens: int, n_heads: int, n_rot: int) -> Launch:
        if not arch.is_gpu_semantics:  # one token (every head) per block
            return Launch((max(1, n_tokens), 1, 1), (1, 1, 1))
        pairs = n_heads * (n_rot // 2)
        return Launch((max(1, ceil_div(pairs, p["block"])), n_tokens, 1), (p["block"], 1, 1))


def freq_log2(base: float, n_rot: int) -> float:
    """The kernel's `freq_log2` argument: -2*log2(base)/n_rot (pair i turns by base^(-2i/n_rot))."""
    return -2.0 * math.log2(base) / n_rot


register(Rope())
