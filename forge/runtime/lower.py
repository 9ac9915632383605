"""Lowering: a layer graph's semantic ops become kernel calls for one arch and one phase.

    calls, sizes = lower(graph, arch, phase="prefill", T=512, R=512, opts)

A Call names a kernel family, its parameters, its arguments (buffer references or scalars) and
its launch shapes. Buffer references are tensor names (graph tensors, or scratch tensors lowering
adds: a matmul input quantized to 8-bit blocks, attention partials) or ("kv", layer, "k"|"v"),
("table",), ("kv_len",) for the KV cache and the step's control values. `sizes` gives the bytes
of every activation and scratch tensor, for the buffer planner.

Choices, by what the arch offers (never by its name):
  matmul     decode: gemv (f32 x), prefill: gemm (with GEMM_F16_X, where the arch's gemm has the
             f16-X variant: x rounded to f16 once by x_f16, shared by every gemm reading it; with
             GEMM_Q8_X, on, the int8 variant xin="q8" on quantize_q8's blocks instead, for the
             types it has);
             where the arch does 4-way int8 dot products and
             matmul_q8 has the weight type: x is quantized once into 8-bit blocks (quantize_q8,
             shared by every matmul that reads the same x) and matmul_q8 does integer dots; MX
             weights where the arch multiplies MX formats natively (gfx950's scaled MFMA): gemv_mx
             up to 16 tokens, gemm beyond, X quantized to the model's `acts` (mxfp8 by default)
  attention  prefill: flash_attn (causal, over the cache); decode: attn_decode in `splits`
             chunks + attn_combine, the context length read from device memory
  rope       in place on q (K is rotated by kv_append on its way into the cache)

Fusion (decode is launch-bound: a step is hundreds of launches of ~1.6 us each on an H100), where
the arch has the fused variant (GPU-model targets; the host keeps its own kernels), as peepholes
on the calls just emitted:
  rmsnorm -> quantize_q8          one rmsnorm (attn_combine) with quant q8, when every reader of its
  attn_combine -> quantize_q8     output is an integer matmul
  matmul, matmul(, matmul)        one `multi` launch when they read the same x (Q, K, V)
  multi(gate, up) -> swiglu       one `glu` launch writing silu(gate) * up
  matmul -> add                   one `add` launch (the residual added in the matmul's write)
  rope(q) -> kv_store             one kv_append with rope_q (Q rotated in place beside K)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..arch import Arch
from ..codegen.spec import get_spec
from ..codegen.specs.gemm import gemm_params
from ..codegen.specs.gemv_mx import TOKENS as GEMV_MX_TOKENS
from ..codegen.specs.matmul_q8 import team_for
from ..codegen.specs.rope import freq_log2
from ..errors import SpecError
from .graph import GraphError, LayerGraph


SAMPLE_PARAMS = {"block": 256}  # the sampler the executor appends to a generating step
# Prefill gemms on an arch whose gemm has the f16-X variant (mma.sync: sm_80/sm_90, emu-sm90) read X
# converted to f16 once per distinct activation (x_f16, shared by Q/K/V and by gate/up) instead of
# converting it in every block column. Measured on the H100 (docs/PERFORMANCE.md, one call): the 8B's
# projections at m = 512 in 80 ms against 97 ms (benchmarks/gemm.py, conversions included).
GEMM_F16_X = True
# Prefill gemms on an arch whose gemm has the int8 variant (xin="q8": mma.sync m16n8k32 .s8 on
# sm_80/sm_90, emu-sm90; matmul_q8's types but q6_k) read X quantized once per distinct activation by
# quantize_q8 (shared with every matmul reading it) and multiply on the int8 tensor cores, as
# llama.cpp's MMQ; where on, it takes precedence over GEMM_F16_X. Measured on the H100 (one call,
# docs/PERFORMANCE.md, whole-model forge bench on gguf-quantized random models against the f16-X
# gemm with K groups): pp512 1B Q4_0 43.0k against 35.0k t/s, 1B Q8_0 40.1k against 32.5k,
# SmolLM2 Q4_0 82.3k against 75.1k.
GEMM_Q8_X = True
# matmul_q8's row team on a GPU: the smallest that gives each thread at most this many 32-column
# units. Measured on the H100 (one call, each setting twice; docs/PERFORMANCE.md): 4 against 1
# (a thread per unit) is +9 % on a 1B Q4_0's decode and equal on SmolLM2 and the 8B; 2 was worse
# than both on the 8B.
TEAM_UNITS = 4
# Prefill attention's version on the mma.sync path (flash_attn v: 1 scores through shared memory,
# 2 scores and softmax in registers, double-buffered K/V). Measured on the H100 (docs/PERFORMANCE.md,
# one call, benchmarks/flash_attn.py): v2 2.8-3.6x v1's speed at 512 and 2048 tokens, 1B and 8B shapes.
FLASH_ATTN_V = 2


@dataclass
class Call:
    """One kernel launch to be: family + params, arguments by name, launch shapes."""

    family: str
    params: dict
    args: dict
    shapes: dict
    node: str = ""  # what graph node it came from, for tables and errors


@dataclass
class LowerOptions:
    """Runtime choices that shape the calls."""

    kv_dtype: str = "f16"
    page_size: int = 16
    splits: int = 0  # attn_decode chunks (fixed: a captured decode step has a fixed grid); 0: decode_splits()


@dataclass
class Lowered:
    calls: list[Call]
    sizes: dict[str, int]  # activation / scratch tensor -> bytes
    outputs: list[str] = field(default_factory=list)


def has_variant(family: str, arch: Arch, **params: Any) -> bool:
    """Whether `family` has a kernel with these parameters for `arch`."""
    try:
        get_spec(family).variant(arch, **params)
        return True
    except SpecError:
        return False


def uses_q8(arch: Arch, wtype: str, n_cols: int, rows: int = 1) -> bool:
    """Whether a matmul of this weight type over `rows` tokens takes the 8-bit-activation integer
    path on `arch`: where the arch has 4-way int8 dot products and matmul_q8 the type — on a GPU
    for one token only (its GPU kernel reads the weights once per token: prefill keeps gemm)."""
    return (arch.has("dot4_i8") and n_cols % 32 == 0 and (rows == 1 or not arch.is_gpu_semantics)
            and has_variant("matmul_q8", arch, wtype=wtype))


def gemm_quantizes_x(arch: Arch, wtype: str, n_cols: int) -> bool:
    """Whether a prefill gemm of this weight type takes the int8 variant on `arch` (GEMM_Q8_X on, the
    variant and quantize_q8 there): its X is then quantized to 8-bit blocks, as uses_q8's is."""
    return (GEMM_Q8_X and n_cols % 32 == 0 and has_variant("gemm", arch, wtype=wtype, xin="q8", ldmatrix=False)
            and has_variant("quantize_q8", arch))


def quantize_params(arch: Arch, rows: int) -> dict:
    """quantize_q8's parameters for `rows` rows: one row (decode) 4 blocks of 32 columns per thread
    block, so a row spreads over more SMs (specs/quantize_q8.py's measurement), where that variant
    exists; else the default."""
    return {"bpb": 4} if rows == 1 and has_variant("quantize_q8", arch, bpb=4) else {}


def scratch_base(x) -> str:
    """The name a tensor's derived scratch (its f16 or 8-bit copy) is named after: the tensor's own,
    or for a view ("view", base, byte offset) its base and offset."""
    return x if isinstance(x, str) else f"{x[1]}@{x[2]}"


class _Lowerer:
    def __init__(self, g: LayerGraph, arch: Arch, phase: str, T: int, R: int, opts: LowerOptions):
        if phase not in ("prefill", "decode"):
            raise GraphError(f"unknown phase {phase!r}")
        self.g, self.arch, self.phase, self.opts = g, arch, phase, opts
        self.dims = {"T": T, "R": R}
        self.calls: list[Call] = []
        self.sizes: dict[str, int] = {}
        self.alias: dict[str, str] = {}
        self.q8: dict[str, tuple[str, str]] = {}  # activation -> its quantized (xq, xd)
        self.xh: dict = {}  # activation -> its f16 copy and row exponents (x_f16), for the gemms
        self.outputs = {t.name for t in g.of_kind("output")}
        self.readers: dict[str, list] = {}  # tensor -> the nodes that read it
        for n in g.nodes:
            for t in n.inputs:
                self.readers.setdefault(t, []).append(n)
        for t in g.tensors.values():
            if t.kind in ("activation", "output"):
                self.sizes[t.name] = 4 * t.numel(self.dims)

    def ref(self, name: str):
        """The storage a tensor name stands for: a tensor name, or ("view", base, byte offset)."""
        while name in self.alias:
            name = self.alias[name]
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        t = self.g.tensors[name]
        return tuple(self.dims[d] if isinstance(d, str) else d for d in t.shape)

    def call(self, family: str, params: dict, args: dict, node: str, **shapes) -> None:
        self.calls.append(Call(family, params, args, shapes, node))

    def scratch(self, name: str, nbytes: int) -> str:
        self.sizes[name] = max(self.sizes.get(name, 0), nbytes)
        return name

    # ---- ops ------------------------------------------------------------------------------------
    def embed(self, n, table, tokens):
        (y,) = n.outputs
        V, E = self.shape(table)
        self.call("embed", {"wtype": self.g.tensors[table].dtype},
                  {"w": table, "ids": tokens, "y": y, "n_tokens": self.dims["T"], "n_rows": V, "n_cols": E},
                  y, n_tokens=self.dims["T"], n_cols=E)

    def rmsnorm(self, n, x, w):
        (y,) = n.outputs
        rows, cols = self.shape(y)
        self.call("rmsnorm", {"dtype": "f32", "block": 256},
                  {"x": self.ref(x), "w": w, "y": y, "ncols": cols, "eps": float(n.attrs["eps"])}, y, rows=rows)

    def matmul(self, n, w, x):
        (y,) = n.outputs
        rows, n_out = self.shape(y)
        wt = self.g.tensors[w].dtype
        n_in = self.shape(w)[1]
        x = self.ref(x)
        acts = n.attrs.get("acts")  # forge.load(acts=...): what MX-weight matmuls quantize X to
        mx = {"wtype": wt, "acts": acts or "mxfp8"}
        if rows <= GEMV_MX_TOKENS and has_variant("gemv_mx", self.arch, **mx):
            # MX weights on gfx950's scaled MFMA, passed natively (uses_q8's integer path would
            # re-decode them per 4 values); any token count up to the one launch's columns
            self.call("gemv_mx", mx, {"w": w, "x": x, "y": y, "m": rows, "n_rows": n_out, "n_cols": n_in}, y,
                      m=rows, n_rows=n_out, n_cols=n_in)
        elif uses_q8(self.arch, wt, n_in, rows):
            xq, xd = self.quantized(x, rows, n_in)
            params = {"wtype": wt}
            if self.arch.is_gpu_semantics:  # a row team sized to the row (the host's kernel has none)
                params["team"] = team_for(wt, n_in, TEAM_UNITS)
            self.gemv_call("matmul_q8", params,
                           {"w": w, "xq": xq, "xd": xd, "y": y, "n_rows": n_out, "n_cols": n_in, "n_tokens": rows},
                           y, n_rows=n_out, n_cols=n_in, n_tokens=rows)
        elif self.phase == "decode" and rows == 1:
            self.gemv_call("gemv", {"wtype": wt}, {"w": w, "x": x, "y": y, "n_rows": n_out, "n_cols": n_in}, y,
                           n_rows=n_out, n_cols=n_in)
        else:
            params = gemm_params(self.arch, wt, rows, n_out)
            if acts and has_variant("gemm", self.arch, **params, acts=acts):
                params["acts"] = acts
            xargs = {"x": x}
            q8 = dict(params)  # the int8 kernel takes gemm_params' tile and K groups too
            if gemm_quantizes_x(self.arch, wt, n_in) and has_variant("gemm", self.arch, **q8, xin="q8", ldmatrix=False):
                params = {**q8, "xin": "q8", "ldmatrix": False}  # int8 fragments come by 32-bit loads
                xargs = dict(zip(("xq", "xd"), self.quantized(x, rows, n_in)))
            elif GEMM_F16_X and has_variant("gemm", self.arch, **params, xin="f16") and has_variant("x_f16", self.arch):
                params["xin"] = "f16"
                xargs = dict(zip(("x", "xe"), self.x_f16(x, rows, n_in)))
            else:
                params.pop("kgroups", None)  # f32 X has one K group (two need more registers than there are)
            self.call("gemm", params,
                      {"w": w, **xargs, "y": y, "m": rows, "n_rows": n_out, "n_cols": n_in},
                      y, m=rows, n_rows=n_out, n_cols=n_in)

    # ---- fusion peepholes ---------------------------------------------------------------------
    def last(self, family: str, **params) -> Call | None:
        """The call just emitted, if it is of `family` with these parameter values."""
        c = self.calls[-1] if self.calls else None
        if c is None or c.family != family or any(c.params.get(k, "none") != v for k, v in params.items()):
            return None
        return c

    def fusable(self, family: str, **params) -> bool:
        return has_variant(family, self.arch, **params)

    def gemv_call(self, family: str, params: dict, args: dict, node: str, **shapes) -> None:
        """A GEMV-shaped call, merged into the previous one as `multi` (up to three matrices) when
        that one reads the same x with the same weight type and shape."""
        xkey = "xq" if family == "matmul_q8" else "x"
        prev = self.last(family)
        if (prev is not None and prev.params["wtype"] == params["wtype"] and prev.args[xkey] == args[xkey]
                and prev.args["n_cols"] == args["n_cols"] and prev.args.get("n_tokens") == args.get("n_tokens")
                and prev.params.get("fuse", "none") in ("none", "multi") and prev.args.get("n_rows3", 0) == 0
                and self.fusable(family, wtype=params["wtype"], fuse="multi")):
            k = "2" if prev.params.get("fuse", "none") == "none" else "3"
            if k == "2":
                prev.params = {**prev.params, "fuse": "multi"}
                prev.args.update(w2=prev.args["w"], y2=prev.args["y"], n_rows2=0, w3=prev.args["w"],
                                 y3=prev.args["y"], n_rows3=0)
            prev.args.update({"w" + k: args["w"], "y" + k: args["y"], "n_rows" + k: args["n_rows"]})
            prev.shapes.update(n_rows2=prev.args["n_rows2"], n_rows3=prev.args["n_rows3"])
            prev.node += "+" + node
            return
        self.call(family, params, args, node, **shapes)

    def only_reader(self, tensor: str, node) -> bool:
        rs = self.readers.get(tensor, [])
        return len(rs) == 1 and rs[0] is node and tensor not in self.outputs

    def fuse_glu(self, n, gate: str, up: str) -> bool:
        """multi(gate, up) just emitted + swiglu -> one glu launch writing the swiglu output."""
        (y,) = n.outputs
        for family in ("gemv", "matmul_q8"):
            c = self.last(family, fuse="multi")
            if (c is not None and c.args["n_rows3"] == 0 and (c.args["y"], c.args["y2"]) == (gate, up)
                    and self.only_reader(gate, n) and self.only_reader(up, n)
                    and self.fusable(family, wtype=c.params["wtype"], fuse="glu")):
                c.params = {**c.params, "fuse": "glu"}
                for k in ("y2", "y3", "w3", "n_rows2", "n_rows3"):
                    del c.args[k]
                c.shapes = {k: v for k, v in c.shapes.items() if k not in ("n_rows2", "n_rows3")}
                c.args["y"], c.node = y, c.node + "+" + y
                return True
        return False

    def fuse_add(self, n, a: str, b: str) -> bool:
        """A matmul whose output only this add reads, just emitted -> its write adds the residual."""
        (y,) = n.outputs
        for family in ("gemv", "matmul_q8"):
            c = self.last(family, fuse="none")
            if c is None or not self.fusable(family, wtype=c.params["wtype"], fuse="add"):
                continue
            for prod, res in ((b, a), (a, b)):
                if c.args["y"] == self.ref(prod) and self.only_reader(prod, n) and self.ref(res) != c.args["y"]:
                    c.params = {**c.params, "fuse": "add"}
                    c.args.update(y=y, res=self.ref(res))
                    c.node += "+" + y
                    return True
        return False

    def quantized(self, x: str, rows: int, cols: int) -> tuple[str, str]:
        """x in 8-bit blocks: made by the call just emitted where that call produced x and can write
        them (fuse_norm_q8), else by one quantize_q8 per activation, however many matmuls read it."""
        if x not in self.q8 and self.fuse_norm_q8(x, rows, cols):
            return self.q8[x]
        if x not in self.q8:
            name = scratch_base(x)
            xq = self.scratch(f"{name}:q8", rows * cols)
            xd = self.scratch(f"{name}:q8d", rows * (cols // 32) * 8)
            self.call("quantize_q8", quantize_params(self.arch, rows), {"x": x, "xq": xq, "xd": xd, "n_cols": cols}, xq, rows=rows, n_cols=cols)
            self.q8[x] = (xq, xd)
        return self.q8[x]

    def x_f16(self, x, rows: int, cols: int) -> tuple[str, str]:
        """(xh, xe): x rounded to f16 with a power-of-two exponent per row, by one x_f16 call per
        activation however many gemms read it (the f16-X gemm's input)."""
        if x not in self.xh:
            name = scratch_base(x)
            xh = self.scratch(f"{name}:f16", rows * cols * 2)
            xe = self.scratch(f"{name}:f16e", rows * 4)
            self.call("x_f16", {}, {"x": x, "xh": xh, "xe": xe, "n_cols": cols}, xh, rows=rows, n_cols=cols)
            self.xh[x] = (xh, xe)
        return self.xh[x]

    def fuse_norm_q8(self, x: str, rows: int, cols: int) -> bool:
        """The call just emitted made x (rmsnorm, or attn_combine's o) and only integer matmuls read
        x: that call writes x's 8-bit blocks instead of x."""
        c = self.calls[-1] if self.calls else None
        out = {"rmsnorm": "y", "attn_combine": "o"}.get(c.family) if c else None
        if out is None or c.args[out] != x or c.params.get("quant", "none") != "none":
            return False
        if not self.fusable(c.family, **{**c.params, "quant": "q8"}) or c.args.get("head_dim", 32) % 32:
            return False
        for r in self.readers.get(x, []):
            if r.op != "matmul" or r.inputs[1] != x:
                return False
            if not uses_q8(self.arch, self.g.tensors[r.inputs[0]].dtype, self.shape(r.inputs[0])[1], rows):
                return False
        xq = self.scratch(f"{x}:q8", rows * cols)
        xd = self.scratch(f"{x}:q8d", rows * (cols // 32) * 8)
        c.params = {**c.params, "quant": "q8"}
        del c.args[out]
        c.args.update(xq=xq, xd=xd)
        self.q8[x] = (xq, xd)
        return True

    def addrow(self, n, x, b):
        (y,) = n.outputs
        rows, cols = self.shape(y)
        self.call("elementwise", {"op": "addrow", "dtype": "f32", "block": 256},
                  {"a": self.ref(x), "b": b, "y": y, "n": rows * cols, "ncols": cols}, y, n=rows * cols)

    def add(self, n, a, b):
        if self.fuse_add(n, a, b):
            return
        (y,) = n.outputs
        rows, cols = self.shape(y)
        self.call("elementwise", {"op": "add", "dtype": "f32", "block": 256},
                  {"a": self.ref(a), "b": self.ref(b), "y": y, "n": rows * cols}, y, n=rows * cols)

    def swiglu(self, n, gate, up):
        if self.fuse_glu(n, self.ref(gate), self.ref(up)):
            return
        (y,) = n.outputs
        rows, cols = self.shape(y)
        self.call("swiglu", {"dtype": "f32", "block": 256},
                  {"g": self.ref(gate), "u": self.ref(up), "y": y, "n": rows * cols}, y, n=rows * cols)

    def rope(self, n, x, pos):
        (y,) = n.outputs
        x = self.ref(x)
        self.alias[y] = x  # in place: y is x's storage
        del self.sizes[y]
        a = n.attrs
        self.call("rope", {"mode": a["mode"], "dtype": "f32", "block": 128},
                  {"x": x, "pos": pos, "n_heads": a["n_heads"], "head_dim": a["head_dim"], "n_rot": a["n_rot"],
                   "freq_log2": freq_log2(a["base"], a["n_rot"]), "freq_scale": float(a["scale"])},
                  y, n_tokens=self.dims["T"], n_heads=a["n_heads"], n_rot=a["n_rot"])

    def kv_store(self, n, k, v, pos):
        a, i = n.attrs, n.attrs["layer"]
        params, extra, shapes = {"kv": self.opts.kv_dtype, "block": 128}, {}, {}
        r = self.last("rope")
        if (r is not None and r.args["pos"] == pos and r.params["dtype"] == "f32"
                and (r.args["n_rot"], r.params["mode"], r.args["freq_log2"], r.args["freq_scale"])
                == (a["n_rot"], a["mode"], freq_log2(a["base"], a["n_rot"]), float(a["scale"]))
                and r.args["head_dim"] == a["head_dim"] and self.fusable("kv_append", **params, rope_q=True)):
            self.calls.pop()  # Q's rotation moves into the append
            params["rope_q"] = True
            extra = {"q": r.args["x"], "n_heads": r.args["n_heads"]}
            shapes = {"n_heads": r.args["n_heads"]}
        self.call("kv_append", params,
                  {"k_new": self.ref(k), "v_new": self.ref(v), "pos": pos, "block_table": ("table",),
                   "k_cache": ("kv", i, "k"), "v_cache": ("kv", i, "v"), "n_tokens": self.dims["T"],
                   "n_kv_heads": a["n_kv_heads"], "head_dim": a["head_dim"], "page_size": self.opts.page_size,
                   "n_rot": a["n_rot"], "rope_neox": int(a["mode"] == "neox"),
                   "freq_log2": freq_log2(a["base"], a["n_rot"]), "freq_scale": float(a["scale"]), **extra},
                  n.outputs[0], n_tokens=self.dims["T"], n_kv_heads=a["n_kv_heads"], **shapes)

    def attention(self, n, q, cache):
        (o,) = n.outputs
        a, i = n.attrs, n.attrs["layer"]
        kv = {"q": self.ref(q), "k_cache": ("kv", i, "k"), "v_cache": ("kv", i, "v"), "block_table": ("table",)}
        common = {"n_heads": a["n_heads"], "n_kv_heads": a["n_kv_heads"], "page_size": self.opts.page_size,
                  "scale": float(a["scale"])}
        params = {"head_dim": a["head_dim"], "kv": self.opts.kv_dtype}
        if self.phase == "prefill":
            fa = {**params, "v": FLASH_ATTN_V}
            self.call("flash_attn", fa if FLASH_ATTN_V != 1 and has_variant("flash_attn", self.arch, **fa) else params,
                      {**kv, "o": o, "n_q": self.dims["T"], **common, "kv_len": ("kv_len_host",),
                       "n_past": ("n_past_host",), "causal": 1},
                      o, n_q=self.dims["T"], n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"])
            return
        ns, h, d = self.opts.splits or decode_splits(self.arch, a["n_kv_heads"]), a["n_heads"], a["head_dim"]
        po = self.scratch("attn.part_o", ns * h * d * 4)
        pml = self.scratch("attn.part_ml", ns * h * 2 * 4)
        self.call("attn_decode", params, {**kv, "part_o": po, "part_ml": pml, **common, "kv_len": ("kv_len",)},
                  o, n_splits=ns, n_heads=h, n_kv_heads=a["n_kv_heads"])
        self.call("attn_combine", {"block": 128},
                  {"part_o": po, "part_ml": pml, "o": o, "n_splits": ns, "n_heads": h, "head_dim": d}, o, n_heads=h)

    def last_rows(self, n, x):
        (y,) = n.outputs
        T, R = self.dims["T"], self.dims["R"]
        x = self.ref(x)
        del self.sizes[y]
        if R == T:
            self.alias[y] = x
        else:  # a view of x's last R rows
            self.alias[y] = ("view", x, (T - R) * self.shape(y)[1] * 4)


def decode_splits(arch: Arch, n_kv_heads: int) -> int:
    """attn_decode's split count when none is set: about two blocks per compute unit over the KV
    heads on a GPU (the context is long; empty splits cost a block each), 4 on the emulator, 2 on
    the host (the executor passes its pool size there)."""
    if not arch.is_gpu_semantics:
        return 2
    if not arch.compute_units:
        return 4
    return max(1, min(64, 2 * arch.compute_units // max(1, n_kv_heads)))


def lower(g: LayerGraph, arch: Arch, phase: str, T: int, R: int, opts: LowerOptions | None = None) -> Lowered:
    """The kernel calls of one step of `g` on `arch`: phase "prefill" (T tokens, R output rows, the
    last ones) or "decode" (T = R = 1). GraphError for an op lowering does not know."""
    lw = _Lowerer(g, arch, phase, T, R, opts or LowerOptions())
    for n in g.nodes:
        fn = getattr(lw, n.op, None)
        if fn is None:
            raise GraphError(f"no lowering for op {n.op!r}")
        fn(n, *n.inputs)
    return Lowered(lw.calls, lw.sizes, [t.name for t in g.of_kind("output")])




def kernel_set(g: LayerGraph, arch: Arch, opts: LowerOptions | None = None, chunk: int = 512) -> list:
    """Every kernel variant (forge.codegen.spec.Variant) running `g` on `arch` needs: prefill (all
    rows and the last row), decode, and the sampler. What a kernel pack for a model holds."""
    opts = opts or LowerOptions()
    calls = []
    for phase, T, R in (("prefill", chunk, chunk), ("prefill", chunk, 1), ("decode", 1, 1)):
        calls += lower(g, arch, phase, T, R, opts).calls
    seen, out = set(), []
    for family, params in [(c.family, c.params) for c in calls] + [("sample", SAMPLE_PARAMS)]:
        v = get_spec(family).variant(arch, **params)
        if v.symbol not in seen:
            seen.add(v.symbol)
            out.append(v)
    return out
