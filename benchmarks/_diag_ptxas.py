"""Diagnostic for the lent GPU machine (h100_run.sh `diag` step): compile two gemv variants for sm_90
with the NVRTC found there and print its identity, the start of the compile log and the resources
parsed from ptxas's report (test_resources relies on that report)."""
import tempfile
from pathlib import Path
from forge.arch import get_arch
from forge.codegen.spec import get_spec
from forge.codegen.render import render
from forge.codegen.toolchain import toolchain_for
arch = get_arch("sm_90"); tc = toolchain_for(arch)
for w in ("f32", "q4_1"):
    v = get_spec("gemv").variant(arch, wtype=w)
    with tempfile.TemporaryDirectory() as d:
        r = tc.compile(render(v, arch), arch, v.symbol, Path(d), False)
    print(w, tc.identity, repr(r.log[:400]), r.resources)
