"""A random-weight model (peer/make_model.py's shapes and values) with its matrices quantized by the
`gguf` package instead of llama-quantize: for diagnosing forge on a GPU machine before llama.cpp is
built. Published numbers use llama.cpp's own files (benchmarks/models_gpu.sh), not these.

usage: quick_model.py OUT.gguf {smollm2,1b,8b} {f16,q4_0,q8_0}
"""
import sys
from pathlib import Path

import gguf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peer"))
import make_model  # noqa: E402


def main(out: str, size: str, qtype: str) -> None:
    if qtype != "f16":
        q = gguf.GGMLQuantizationType[qtype.upper()]
        plain = gguf.GGUFWriter.add_tensor

        def add_tensor(self, name, arr, **kw):
            if arr.ndim == 2:  # matrices; norms stay f32
                return plain(self, name, gguf.quants.quantize(arr.astype("float32"), q), raw_dtype=q)
            return plain(self, name, arr, **kw)
        gguf.GGUFWriter.add_tensor = add_tensor
    make_model.main(out, size)


if __name__ == "__main__":
    main(*sys.argv[1:4])
