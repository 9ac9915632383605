"""Lane layouts of the matrix instructions forge's templates use: for each operand, which matrix
element each lane's register element holds. One table, rendered into both sides that must agree:
the kernels' tile code (templates/common/wmma.h.j2 and mma.h.j2 load fragments and place
accumulators with it) and the CPU emulator's implementation of the instruction
(templates/common/mma_emu.h.j2 reads the wave's operands and places its results with it).
Templates reach it as the Jinja global `matrix_layouts` (forge/codegen/render.py).

Each map is an `Expr` over `lane` (0..wave-1) and `i` (the element of the lane's register vector):
one text, evaluated here (tests, oracles) and rendered as unsigned C by `Expr.c`. Whether an
operand is duplicated across lanes is not a separate flag but follows from the maps: `holders`
lists every (lane, i) that holds a matrix element, and the emulator requires all holders of an
element to carry the same bits (RDNA3's A and B: lanes 16-31 repeat lanes 0-15).

Sources (docs/ARCH.md cites them with what each says):
- v_wmma_f32_16x16x16_f16 (RDNA3, gfx11, wave32): LLVM clang/include/clang/Basic/BuiltinsAMDGPU.def
  (`__builtin_amdgcn_wmma_f32_16x16x16_f16_w32`, "V8fV16hV16hV8f", gfx11-insts; the w32 postfix:
  wavefront size 32); AMD GPUOpen "How to accelerate AI applications on RDNA 3 using
  WMMA" (lane l holds row/column l % 16 of A/B, lanes 16-31 replicate lanes 0-15, result element v
  of lane l is row 2v + l/16); tinygrad tinygrad/runtime/ops_python.py's AMD model
  (a_elem x[k][row], asserting the half-wave duplication; c_map (lane%16, lane//16 + elem*2));
  Modular's MAX kernels (get_rdna_fragment_layout: "lane l, elem v -> D[row=v*2+l//16, col=l%16]").
- mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (NVIDIA sm_80+, warp of 32): the PTX ISA's
  "Matrix Fragments for mma.m16n8k16 with floating point type"; tinygrad's CUDA model (the same
  file); and Hopper silicon (an H200 ran tests/codegen/test_matrix_isa.py's GPU test: exact).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from functools import cached_property

from ..errors import SpecError

_OPS = {ast.Add: (operator.add, "+"), ast.Mult: (operator.mul, "*"), ast.FloorDiv: (operator.floordiv, "/"),
        ast.Mod: (operator.mod, "%")}


@dataclass(frozen=True)
class Expr:
    """A non-negative integer expression over named variables: integer constants, names, +, *, //
    and % (so unsigned C division and remainder mean the same as Python's). SpecError for anything
    else, at construction."""

    text: str

    def __post_init__(self):
        self._check(self._tree)

    @cached_property
    def _tree(self) -> ast.expr:
        try:
            return ast.parse(self.text, mode="eval").body
        except SyntaxError as e:
            raise SpecError(f"layout expression {self.text!r}: {e.msg}") from None

    def _check(self, node) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            self._check(node.left)
            self._check(node.right)
        elif not (isinstance(node, ast.Name) or (isinstance(node, ast.Constant) and type(node.value) is int
                                                  and node.value >= 0)):
            raise SpecError(f"layout expression {self.text!r}: only names, non-negative integers, +, *, // "
                            f"and % are allowed")

    @property
    def names(self) -> frozenset:
        return frozenset(n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name))

    def __call__(self, **env: int) -> int:
        """The value for these variable values."""
        def ev(node):
            if isinstance(node, ast.BinOp):
                return _OPS[type(node.op)][0](ev(node.left), ev(node.right))
            if isinstance(node, ast.Name):
                return env[node.id]
            return node.value
        return ev(self._tree)

    def c(self, **names: str) -> str:
        """The expression as unsigned C, each variable replaced by the C text given for it
        (parenthesized), constants as `16u`."""
        def emit(node):
            if isinstance(node, ast.BinOp):
                return f"({emit(node.left)} {_OPS[type(node.op)][1]} {emit(node.right)})"
            if isinstance(node, ast.Name):
                return f"({names[node.id]})"
            return f"{node.value}u"
        return emit(self._tree)


@dataclass(frozen=True)
class Operand:
    """One operand's register layout: element i (0..elems-1) of lane `lane` holds
    matrix[row(lane, i)][col(lane, i)] of a rows x cols matrix."""

    rows: int
    cols: int
    elems: int
    row: Expr
    col: Expr

    def element(self, lane: int, i: int) -> tuple[int, int]:
        return self.row(lane=lane, i=i), self.col(lane=lane, i=i)


@dataclass(frozen=True)
class MatrixLayout:
    """A matrix instruction D = A B + C (A: m x k, B: k x n, C and D: m x n) over a wave of `wave`
    lanes, with the lane layout of each operand (C is laid out as D)."""

    name: str
    builtin: str  # what the templates call: the clang builtin, or forge's wrapper of inline PTX
    instruction: str  # the instruction as the assembly / PTX spells it
    feature: str  # the arch feature (forge/arch.py) of the archs that have the instruction
    wave: int
    m: int
    n: int
    k: int
    in_type: str  # element type of A and B
    acc_type: str  # element type of C and D
    a: Operand
    b: Operand
    d: Operand
    sources: tuple[str, ...]

    def holders(self, operand: str) -> dict[tuple[int, int], list[tuple[int, int]]]:
        """{(row, col): [(lane, i), ...]} for operand "a", "b" or "d": every register element
        that holds each matrix element, in lane order."""
        op = getattr(self, operand)
        out: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for lane in range(self.wave):
            for i in range(op.elems):
                out.setdefault(op.element(lane, i), []).append((lane, i))
        return out

    def first_holders(self, operand: str) -> list[tuple[int, int]]:
        """[(lane, i)] of the first holder (lowest lane) of each element of the operand's matrix,
        row-major: where an implementation of the instruction reads the element from."""
        op, h = getattr(self, operand), self.holders(operand)
        return [h[(r, c)][0] for r in range(op.rows) for c in range(op.cols)]

    def check(self) -> None:
        """SpecError unless every operand covers its whole matrix and stays inside it, A and B hold
        each element equally often (the replication the emulator enforces), and D holds each
        element exactly once (an accumulator has one home)."""
        for name, op in (("a", self.a), ("b", self.b), ("d", self.d)):
            h = self.holders(name)
            want = {(r, c) for r in range(op.rows) for c in range(op.cols)}
            if set(h) != want:
                raise SpecError(f"{self.name}: operand {name} does not cover its {op.rows} x {op.cols} matrix exactly")
            counts = {len(v) for v in h.values()}
            if len(counts) != 1 or (name == "d" and counts != {1}):
                raise SpecError(f"{self.name}: operand {name} holds its elements {sorted(counts)} times")
        if (self.a.rows, self.a.cols, self.b.rows, self.b.cols, self.d.rows, self.d.cols) != (
                self.m, self.k, self.k, self.n, self.m, self.n):
            raise SpecError(f"{self.name}: operand shapes do not match m, n, k")


_RDNA3_SOURCES = (
    "LLVM clang/include/clang/Basic/BuiltinsAMDGPU.def: __builtin_amdgcn_wmma_f32_16x16x16_f16_w32, "
    "V8fV16hV16hV8f, gfx11-insts, w32: wavefront size 32",
    "AMD GPUOpen, How to accelerate AI applications on RDNA 3 using WMMA (gpuopen.com/learn/wmma_on_rdna3)",
    "tinygrad tinygrad/runtime/ops_python.py, AMD WMMA model: a_elem x[k][goff+row] with the lane 16-31 "
    "duplication assert, c_map (lane%16, lane//16+elem*2)",
    "Modular MAX get_rdna_fragment_layout: lane l, elem v -> D[row=v*2+l//16, col=l%16]",
)

_MMA_SOURCES = (
    "NVIDIA PTX ISA, Warp-level matrix multiply-accumulate: Matrix Fragments for mma.m16n8k16 with "
    "floating point type (fragments A, B, C/D: row and col of each ai, bi, ci from groupID = %laneid >> 2, "
    "threadID_in_group = %laneid % 4)",
    "tinygrad tinygrad/runtime/ops_python.py, CUDA model for dims (8,16,16): a_elem x[k%2 + (row//8)*2 + "
    "(k//8)*4][(k//2)%4 + (row%8)*4], b_elem x[k%2 + (k//8)*2][(k//2)%4 + col*4], c_map "
    "(elem%2 + (lane%4)*2, lane//4 + (elem//2)*8)",
    "Hopper silicon: an NVIDIA H200 (sm_90) ran tests/codegen/test_matrix_isa.py::test_mma_sync_tile_code_on_the_gpu "
    "(fragments placed by this table, small-integer inputs: exact agreement), 2026-11-27",
)

LAYOUTS: dict[str, MatrixLayout] = {
    # RDNA3: lane l holds row l % 16 of A (all 16 K values, in K order) and column l % 16 of B (same);
    # lanes 16-31 hold the same as lanes 0-15. D/C element i of lane l is D[2i + l/16][l % 16]: the two
    # half-waves interleave rows.
    "wmma_f32_16x16x16_f16": MatrixLayout(
        "wmma_f32_16x16x16_f16", "__builtin_amdgcn_wmma_f32_16x16x16_f16_w32", "v_wmma_f32_16x16x16_f16",
        "wmma_f16", 32, 16, 16, 16, "f16", "f32",
        a=Operand(16, 16, 16, Expr("lane % 16"), Expr("i")),
        b=Operand(16, 16, 16, Expr("i"), Expr("lane % 16")),
        d=Operand(16, 16, 8, Expr("2 * i + lane // 16"), Expr("lane % 16")),
        sources=_RDNA3_SOURCES),
    # NVIDIA (sm_80+): lane l is thread t = l % 4 of group g = l / 4. A (row-major 16x16) element i:
    # row g + 8 ((i / 2) % 2), column 2t + i % 2 + 8 (i / 4); B (16x8, "col") element i: row (K)
    # 2t + i % 2 + 8 (i / 2), column g; C/D element i: row g + 8 (i / 2), column 2t + i % 2. Each
    # element has one home (no replication). Elements 2j and 2j+1 share the 32-bit register j
    # (.f16x2: the even one in the low half).
    "mma_m16n8k16_f16_f32": MatrixLayout(
        "mma_m16n8k16_f16_f32", "mma_m16n8k16_f16", "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
        "mma_sync", 32, 16, 8, 16, "f16", "f32",
        a=Operand(16, 16, 8, Expr("lane // 4 + 8 * (i // 2 % 2)"), Expr("lane % 4 * 2 + i % 2 + 8 * (i // 4)")),
        b=Operand(16, 8, 4, Expr("lane % 4 * 2 + i % 2 + 8 * (i // 2)"), Expr("lane // 4")),
        d=Operand(16, 8, 4, Expr("lane // 4 + 8 * (i // 2)"), Expr("lane % 4 * 2 + i % 2")),
        sources=_MMA_SOURCES),
}
for _layout in LAYOUTS.values():
    _layout.check()


def get_layout(name: str) -> MatrixLayout:
    """The layout of instruction `name`; SpecError listing the known ones otherwise."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise SpecError(f"unknown matrix instruction {name!r}; known: {', '.join(LAYOUTS)}") from None
