"""Kernel families. Importing this package registers every family; one module per family, named
like its template (forge/templates/<family>.hip.j2), its oracle (tests/oracles/<family>.py) and its
test (tests/kernels/test_<family>.py)."""

from . import elementwise, rmsnorm, rope, softmax, swiglu  # noqa: F401
from . import attn_combine, attn_decode, flash_attn, kv_append  # noqa: F401
from . import dequant, embed, gemm, gemv  # noqa: F401
from . import sample  # noqa: F401
from . import matmul_q8, quantize_q8  # noqa: F401  (host-only families so far)
from . import gemv_mx  # noqa: F401  (gfx950's scaled-MFMA GEMV)
from . import x_f16  # noqa: F401  (X rounded to f16 once per batch, for the mma.sync gemm)
