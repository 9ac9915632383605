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
- mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 (NVIDIA sm_80+, warp of 32; gemm xin="q8"): the PTX
  ISA's "Matrix Fragments for mma.m16n8k32" with .s8 operands (A 4 .b32 registers of 4 int8, B 2,
  C/D 4 .s32; the same groupID / threadID_in_group rule, 4 K values per register). Run on the H100
  (2026-11-27: the int8 gemm's property with --backend cuda).
- v_mfma_scale_f32_16x16x128_f8f6f4 (gfx950, CDNA4, wave64), two entries (8-bit and sub-byte
  operands place K differently): LLVM BuiltinsAMDGPU.def and the Verifier's register counts per
  format, AMD's ROCm blog on CDNA4 matrix cores (FP8 and FP4 figures, scales after the dot
  product), FPSan's MI350-verified model (FP8 and mixed-width lane maps, the scale lane of each
  block), tinygrad's wave64 MFMA model and triton's gfx950 layouts (which place FP8 contiguously:
  the disagreement, and why this table follows AMD's blog, is in docs/ARCH.md). Never run on a
  gfx950 here.
- v_mfma_f32_16x16x16_f16 (CDNA, gfx908+ incl. gfx942 and gfx950, wave64): LLVM BuiltinsAMDGPU.def
  (`__builtin_amdgcn_mfma_f32_16x16x16f16`, "V4fV4hV4hV4fIiIiIi", mai-insts: A and B 4 halves, C/D 4
  floats a lane, then the immediates cbsz, abid, blgp); AMD's hgemm_16x16x16 HIP example (AMD
  copyright, its lane map read off the AMD Matrix Instruction Calculator for mi200: a[i] =
  A[lane % 16][4 (lane / 16) + i], b[i] = B[4 (lane / 16) + i][lane % 16], d[i] = D[4 (lane / 16) +
  i][lane % 16]); tinygrad's wave64 MFMA model (a_elem x[k % (K/4)][goff + (k // (K/4)) 16 + row],
  c_map (lane % 16, (lane // 16) 4 + elem)). Never run on a CDNA GPU here.
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
    # Block-scaled instructions only (gfx950's v_mfma_scale_*): `block` K values share one scale;
    # sa (m x k/block) and sb (k/block x n) say which lane supplies the scale of each block of A's
    # rows and B's columns (one scale register per lane, its byte chosen by opsel).
    block: int = 0
    sa: Operand | None = None
    sb: Operand | None = None

    def operands(self) -> tuple[tuple[str, Operand], ...]:
        """(name, operand) of every operand the instruction reads or writes, scales included."""
        ops = (("a", self.a), ("b", self.b), ("d", self.d))
        return ops + tuple((n, o) for n, o in (("sa", self.sa), ("sb", self.sb)) if o is not None)

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
        element exactly once (an accumulator has one home); block scales likewise, with shapes
        matching the blocks."""
        for name, op in self.operands():
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
        if (self.sa is None) != (self.sb is None) or (self.sa is not None and (
                not self.block or self.k % self.block or (self.sa.rows, self.sa.cols, self.sb.rows, self.sb.cols)
                != (self.m, self.k // self.block, self.k // self.block, self.n))):
            raise SpecError(f"{self.name}: block scales do not match m, n, k / block")


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

_MMA_S8_SOURCES = (
    "NVIDIA PTX ISA, Warp-level matrix multiply-accumulate: Matrix Fragments for mma.m16n8k32 (.s8 / .u8 "
    "multiplicands): A a vector of four .b32 registers, each four .s8 elements a0..a15: row groupID for ai with "
    "i < 4 or 8 <= i < 12, groupID + 8 otherwise; col threadID_in_group * 4 + (i & 3), + 16 for i >= 8; B two "
    ".b32 registers b0..b7: row (K) threadID_in_group * 4 + (i & 3), + 16 for i >= 4, col groupID; C/D four .s32 "
    "c0..c3 laid out as for m16n8k16 (row groupID, + 8 for c2, c3; col threadID_in_group * 2 + (i & 1))",
    "Modular MAX's int8 matmul (a public repository) restates the same table for its "
    "llvm.nvvm.mma.m16n8k32.row.col.s8 calls: reg0 row groupID cols tig*4+0..3, reg1 row groupID+8, reg2 and "
    "reg3 cols + 16; B reg0 k tig*4+0..3, reg1 k + 16",
)

_MFMA_SCALE_SOURCES = (
    "LLVM clang/include/clang/Basic/BuiltinsAMDGPU.def: __builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4(v8i32 a, "
    "v8i32 b, v4f32 c, imm cbsz, imm blgp, imm opsel_a, i32 scale_a, imm opsel_b, i32 scale_b), gfx950-insts",
    "LLVM llvm/lib/IR/Verifier.cpp and SIDefines.h MFMAScaleFormats: cbsz/blgp 0 FP8 E4M3, 1 BF8 E5M2, 2 FP6 "
    "E2M3, 3 BF6 E3M2, 4 FP4 E2M1 (<= 4); 8 registers for FP8/BF8, 6 for FP6/BF6, 4 for FP4",
    "AMD ROCm blog, Matrix Core Programming on AMD CDNA3 and CDNA4 architecture (rocm-blogs "
    "blogs/software-tools-optimization/matrix-cores-cdna): scales applied after the dot product, before "
    "accumulation; 32x32x64 FP8: lane l holds row l%32, K 16(l/32) + 32(i/16) + i%16; FP4: lane l holds "
    "K 32(l/32)..+31, byte i = K 2i (low nibble) and 2i+1 (high)",
    "FPSan's wrappers of the builtin (a public repository; 'silicon-verified on MI350', 'full-block-random'): "
    "16x16x128 FP8 A[i][k] at lane 16((k%64)/16) + i, byte (k/64)16 + k%16; sub-byte operands pair with FP8 at "
    "lane 16(k/32) + i, field k%32 (Width bits at Width*field); block kb's E8M0 scale from lane 16kb + row, "
    "byte opsel",
    "tinygrad tinygrad/runtime/ops_python.py, AMD threads == 64 model (unscaled): a_elem(x, k, row, goff) = "
    "x[k % (K/4)][goff + (k // (K/4))*16 + row]; c_map(lane, elem) = (lane%16, (lane//16)*4 + elem) as "
    "(column, row)",
    "triton test/TritonGPU/amd/accelerate-amd-matmul-mfma-gfx950.mlir: dot_scaled scales one per lane (lane "
    "bits 0-3 the row, 4-5 the K block); operands mxfp8 kWidth = 32, mxfp4 kWidth = 16 bytes",
)


_MFMA_F16_SOURCES = (
    "LLVM clang/include/clang/Basic/BuiltinsAMDGPU.def: TARGET_BUILTIN(__builtin_amdgcn_mfma_f32_16x16x16f16, "
    "\"V4fV4hV4hV4fIiIiIi\", \"nc\", \"mai-insts\"): v4f (v4h a, v4h b, v4f c, imm cbsz, imm abid, imm blgp); "
    "mai-insts: gfx908, gfx90a, gfx942, gfx950",
    "AMD's HIP example hgemm_16x16x16 (Advanced Micro Devices copyright; lane map from the AMD Matrix "
    "Instruction Calculator, ./matrix_calculator.py -a mi200 -i v_mfma_f32_16x16x16f16 -R -A/-B/-D), launched "
    "as one wave of (16, 4) threads: a[i] = A[threadIdx.x * LDA + 4 * threadIdx.y + i], b[i] = "
    "B[threadIdx.x + (4 * threadIdx.y + i) * LDB], D[threadIdx.x + (4 * threadIdx.y + i) * LDD] = d[i]",
    "tinygrad tinygrad/runtime/ops_python.py, AMD threads == 64 model: a_elem(x, k, row, goff) = "
    "x[k % (K/4)][goff + (k // (K/4))*16 + row], b_elem the same with the column, c_map(lane, elem) = "
    "(lane%16, (lane//16)*4 + elem) as (column, row)",
)


@dataclass(frozen=True)
class FragmentLoad:
    """A warp-collective load from shared memory of `rows` x `cols` elements (several small matrices
    stacked row after row): lane `lane` supplies the address of stacked row `addr(lane)` (`cols`
    contiguous elements, `row_bytes` bytes, aligned to `row_bytes`), and element i of lane `lane`'s
    destination registers receives stacked[dst.row][dst.col]. `col0_lane` / `col0_elem` (over
    `row`) name the (lane, element) that receives column 0 of stacked row `row`: the inverse of
    `dst` there, which is what a kernel needs to point each lane at the right row of its operand."""

    name: str
    builtin: str  # what the templates call: forge's wrapper of the inline PTX (the emulator defines it too)
    instruction: str
    feature: str
    wave: int
    rows: int
    cols: int
    row_bytes: int
    addr: Expr
    dst: Operand
    col0_lane: Expr
    col0_elem: Expr
    sources: tuple[str, ...]

    def check(self) -> None:
        """SpecError unless every stacked row's address comes from exactly one lane, the destination
        covers the stacked matrix exactly once, and col0_lane/col0_elem invert it at column 0."""
        if sorted(self.addr(lane=lane) for lane in range(self.wave)) != list(range(self.rows)):
            raise SpecError(f"{self.name}: the lanes' addresses do not name each row exactly once")
        got = sorted(self.dst.element(lane, i) for lane in range(self.wave) for i in range(self.dst.elems))
        if got != [(r, c) for r in range(self.rows) for c in range(self.cols)]:
            raise SpecError(f"{self.name}: the destination does not cover its {self.rows} x {self.cols} matrix once")
        for r in range(self.rows):
            if self.dst.element(self.col0_lane(row=r), self.col0_elem(row=r)) != (r, 0):
                raise SpecError(f"{self.name}: col0_lane/col0_elem do not invert dst at row {r}")

    def serves(self, op: Operand, tiles: int = 1, transposed: bool = False) -> bool:
        """Whether this load fills every lane's registers exactly with `tiles` fragments of `op`
        (element i of lane l: op element (l, i % op.elems) of fragment i / op.elems), each lane
        pointing at the operand element that column 0 of its stacked row becomes (op at (col0_lane,
        col0_elem)). The operand is in memory row-major, or with `transposed` column-major (B stored
        as its transpose: a weight tile); a stacked row's columns run along memory rows."""
        if self.dst.elems != op.elems * tiles:
            return False
        for lane in range(self.wave):
            for i in range(self.dst.elems):
                r, c = self.dst.element(lane, i)
                ol, oi = self.col0_lane(row=r), self.col0_elem(row=r)
                if ol % self.wave != ol or oi // op.elems != i // op.elems:
                    return False
                (orow, ocol), want = op.element(ol, oi % op.elems), op.element(lane, i % op.elems)
                if transposed:
                    (orow, ocol), want = (ocol, orow), want[::-1]
                if want != (orow, ocol + c):
                    return False
        return True


def _mfma_scale(name: str, k_of: str, elems: int) -> MatrixLayout:
    """gfx950's v_mfma_scale_f32_16x16x128_f8f6f4 seen with operands of one width class: `k_of` is the
    K of element i (a value, whatever its bits) of lane `lane`, the same for A's rows and B's columns."""
    return MatrixLayout(
        name, "__builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4", "v_mfma_scale_f32_16x16x128_f8f6f4",
        "mx_scaled_mfma", 64, 16, 16, 128, name.rsplit("_", 1)[1], "f32",
        a=Operand(16, 128, elems, Expr("lane % 16"), Expr(k_of)),
        b=Operand(128, 16, elems, Expr(k_of), Expr("lane % 16")),
        d=Operand(16, 16, 4, Expr("4 * (lane // 16) + i"), Expr("lane % 16")),
        sources=_MFMA_SCALE_SOURCES, block=32,
        sa=Operand(16, 4, 1, Expr("lane % 16"), Expr("lane // 16")),
        sb=Operand(4, 16, 1, Expr("lane // 16"), Expr("lane % 16")))


_LDMATRIX_SOURCES = (
    "NVIDIA PTX ISA, Data Movement and Conversion Instructions: ldmatrix (sm_75+): ldmatrix.sync.aligned"
    ".m8n8.x4.shared.b16 loads four 8x8 matrices of 16-bit elements; threads 0-7, 8-15, 16-23 and 24-31 supply "
    "the addresses of rows 0-7 of matrices 0, 1, 2 and 3 (each row 16 bytes, 16-byte aligned); destination "
    "register j holds matrix j, and in it each thread holds row %laneid / 4 (groupID), elements "
    "2 (%laneid % 4) and 2 (%laneid % 4) + 1 (Figure: ldmatrix fragment layout for one 8x8 matrix); all "
    "threads of the warp must execute it (.sync.aligned)",
    "tinygrad / CUTLASS-style usage: the m16n8k16 A fragment's four registers are the 8x8 blocks (rows 0-7, "
    "k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15), which is what FragmentLoad.serves "
    "checks from the two table entries rather than assumes",
)

LAYOUTS: dict[str, MatrixLayout | FragmentLoad] = {
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
    # NVIDIA (sm_80+) int8: lane l is thread t = l % 4 of group g = l / 4. A (row-major 16x32 int8)
    # element i (register i / 4, byte i % 4): row g + 8 ((i / 4) % 2), column 4t + i % 4 + 16 (i / 8);
    # B (32x8, "col") element i: row (K) 4t + i % 4 + 16 (i / 4), column g; C/D (s32) as m16n8k16's.
    # A register's 4 bytes are 4 consecutive K of one row (one 32-bit load from a row-major tile).
    "mma_m16n8k32_s8_s32": MatrixLayout(
        "mma_m16n8k32_s8_s32", "mma_m16n8k32_s8", "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32",
        "mma_sync", 32, 16, 8, 32, "s8", "s32",
        a=Operand(16, 32, 16, Expr("lane // 4 + 8 * (i // 4 % 2)"), Expr("lane % 4 * 4 + i % 4 + 16 * (i // 8)")),
        b=Operand(32, 8, 8, Expr("lane % 4 * 4 + i % 4 + 16 * (i // 4)"), Expr("lane // 4")),
        d=Operand(16, 8, 4, Expr("lane // 4 + 8 * (i // 2)"), Expr("lane % 4 * 2 + i % 2")),
        sources=_MMA_S8_SOURCES),
    # gfx950 (CDNA4, wave64) block-scaled MFMA, D = (A x sa) (B x sb) + C: K = 128 in 4 blocks of 32,
    # the scale of block kb of A's row r (B's column c) from lane 16 kb + r (+ c), byte opsel. D
    # element i of lane l is D[4 (l / 16) + i][l % 16]. A lane holds 32 values of its row / column;
    # which K they are depends on the operand's width (AMD's blog and FPSan's silicon tests agree;
    # tinygrad's and triton's contiguous FP8 model does not: docs/ARCH.md):
    #  - 8-bit (FP8, BF8; 8 registers): byte i of lane l is K 64 (i / 16) + 16 (l / 16) + i % 16;
    "mfma_scale_f32_16x16x128_f8": _mfma_scale("mfma_scale_f32_16x16x128_f8",
                                               "64 * (i // 16) + 16 * (lane // 16) + i % 16", 32),
    #  - 6- and 4-bit (FP6, BF6: 6 registers, FP4: 4): field i (bits w i .. w i + w - 1 of the
    #    little-endian register stream) of lane l is K 32 (l / 16) + i: lane group g holds block g.
    "mfma_scale_f32_16x16x128_f6f4": _mfma_scale("mfma_scale_f32_16x16x128_f6f4", "32 * (lane // 16) + i", 32),
    # CDNA (gfx908+, gfx942, gfx950; wave64) f16 MFMA: lane l holds row l % 16 of A and column l % 16 of
    # B at K = 4 (l / 16) + i (four consecutive K: one 8-byte run of a row-major row), and C/D element
    # i of lane l is D[4 (l / 16) + i][l % 16]. 64 lanes x 4 elements = 256: each element has one home.
    "mfma_f32_16x16x16_f16": MatrixLayout(
        "mfma_f32_16x16x16_f16", "__builtin_amdgcn_mfma_f32_16x16x16f16", "v_mfma_f32_16x16x16_f16",
        "mfma_f16", 64, 16, 16, 16, "f16", "f32",
        a=Operand(16, 16, 4, Expr("lane % 16"), Expr("4 * (lane // 16) + i")),
        b=Operand(16, 16, 4, Expr("4 * (lane // 16) + i"), Expr("lane % 16")),
        d=Operand(16, 16, 4, Expr("4 * (lane // 16) + i"), Expr("lane % 16")),
        sources=_MFMA_F16_SOURCES),
    # NVIDIA (sm_75+) ldmatrix .x4 .b16: four 8x8 matrices stacked into 32 rows of 8 halves; lane l
    # gives the address of stacked row l (row l % 8 of matrix l / 8); register j of lane l receives
    # matrix j, row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (element 2j in the low half, as mma.sync
    # wants its .f16x2 registers). Column 0 of stacked row r lands in lane 4 (r % 8), element 2 (r / 8).
    "ldmatrix_m8n8_x4_b16": FragmentLoad(
        "ldmatrix_m8n8_x4_b16", "ldmatrix_x4", "ldmatrix.sync.aligned.m8n8.x4.shared.b16", "mma_sync", 32, 32, 8, 16,
        addr=Expr("lane"),
        dst=Operand(32, 8, 8, Expr("8 * (i // 2) + lane // 4"), Expr("lane % 4 * 2 + i % 2")),
        col0_lane=Expr("4 * (row % 8)"), col0_elem=Expr("2 * (row // 8)"),
        sources=_LDMATRIX_SOURCES),
}
for _layout in LAYOUTS.values():
    _layout.check()


def get_layout(name: str) -> MatrixLayout:
    """The layout of instruction `name`; SpecError listing the known ones otherwise."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise SpecError(f"unknown matrix instruction {name!r}; known: {', '.join(LAYOUTS)}") from None
