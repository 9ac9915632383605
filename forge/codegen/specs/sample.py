"""Token sampling on the device: repetition penalty, then greedy, or top-k / top-p / min-p and a
temperature draw, all reading their settings and writing their history in one small state buffer,
so a captured decode step samples with no host work and no per-token arguments.

The state buffer (u32[STATE_WORDS], `state` below; floats stored as their bits):

    0 temperature (f32; <= 0: greedy)      5 penalty window n (u32, <= HISTORY)
    1 top_k (u32; 0: off)                   6 seed (u32)
    2 top_p (f32; >= 1: off)                7 draws made (u32, the RNG counter; the kernel adds 1)
    3 min_p (f32; <= 0: off)                8 history length (u32, <= HISTORY)
    4 repeat penalty (f32; 1: off)          9 history write index (ring, u32)
    10..15 reserved (0)                     16.. the history ring of the last HISTORY token ids

Semantics, exactly (tests/oracles/sample.py is the same in numpy):
1. Penalty (llama.cpp's): each distinct id among the last n history entries has its logit l
   replaced by l / penalty if l > 0 else l * penalty (in place in `logits`). NaN logits never win.
2. temperature <= 0: the id of the largest logit (the lowest id among equal maxima).
3. Otherwise with m the largest logit, the kept set is every id whose logit is >= each of:
   the k-th largest logit (top_k in 1..n_vocab-1; ties at the threshold are kept);
   the smallest value t such that the ids with logit >= t (among those kept by top-k) carry at
   least top_p of the softmax mass exp(l - m) of those kept by top-k (ties kept);
   m + log(min_p) (p >= min_p * p_max).
   Then u = (hash(seed, draws) >> 8) / 2^24 and the token is the first id, in id order, whose
   running sum of exp((l - m) / temperature) over kept ids exceeds u times their total.
4. The token is written to token[0] and appended to the history ring; draws += 1.
"""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, register

HISTORY = 64  # llama.cpp's default repeat_last_n
STATE_WORDS = 16 + HISTORY


class Sample(KernelSpec):
    family = "sample"
    space = {"block": (256,)}
    host = True
    doc = "one block; logits [n_vocab] f32 are modified (penalty); state u32[16 + 64]; token[0] out"

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:  # one call on one thread; block is unused
            return True
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        return [Arg.ptr("logits", "f32"), Arg.ptr("state", "u32"), Arg.ptr("token", "i32"),
                Arg.scalar("n_vocab", "i32")]

    def launch(self, p, arch: Arch, **_) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((1, 1, 1), (1, 1, 1))
        return Launch((1, 1, 1), (p["block"], 1, 1))

    def context(self, p, arch):
        return {"history": HISTORY}


register(Sample())
