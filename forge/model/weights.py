"""A GGUF file's tensors as the runtime takes them: matrices as their raw bytes in a forge weight
type (no copy: views of the file mapping), vectors (norms, biases) as float32 arrays."""

from __future__ import annotations

import numpy as np

from ..codegen.wtypes import WTYPES
from ..errors import GGUFError
from .gguf import GGUFFile

# GGML type name -> forge weight type (forge/codegen/wtypes.py): the types the kernels decode.
GGML_TO_WTYPE = {t.codec: t.name for t in WTYPES.values() if t.codec.isupper()}


def weight_types(g: GGUFFile) -> dict[str, str]:
    """name -> forge weight type for every matrix, "f32" for vectors. GGUFError naming the tensor
    when its type has no kernels in forge."""
    out = {}
    for name, t in g.tensors.items():
        if len(t.ggml_shape) == 1:
            if t.type_name not in ("F32", "F16", "BF16"):
                raise GGUFError(f"{g.path}: vector {name!r} is {t.type_name}; forge expects F32, F16 or BF16")
            out[name] = "f32"
            continue
        wt = GGML_TO_WTYPE.get(t.type_name)
        if wt is None:
            raise GGUFError(f"{g.path}: tensor {name!r} is {t.type_name}, which forge has no kernels for; "
                            f"supported: {', '.join(sorted(GGML_TO_WTYPE))}")
        out[name] = wt
    return out


def weight_arrays(g: GGUFFile) -> dict[str, np.ndarray]:
    """name -> array: a uint8 view of the raw blocks for matrices, float32 values for vectors."""
    out = {}
    for name, t in g.tensors.items():
        if len(t.ggml_shape) == 1:
            if t.type_name == "BF16":
                out[name] = (t.data.view("<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                out[name] = np.ascontiguousarray(t.array(), dtype=np.float32)
        else:
            out[name] = t.data
    return out
