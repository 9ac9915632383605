"""Cold and warm wall time of `forge build --arch ARCH` (the CLI, as a user runs it) into a fresh
store, for docs/PERFORMANCE.md.

    python benchmarks/build.py [--arch gfx1100] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def timed_build(arch: str, cache: str, jobs: int | None) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "forge.cli", "build", "--arch", arch, "--cache-dir", cache]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = next((ln for ln in proc.stdout.splitlines() if re.match(r"\d+ variants for", ln)), "")
    return wall, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gfx1100")
    ap.add_argument("--jobs", type=int, default=None, help="default: forge's default (all cores)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cache = os.path.join(d, "store")
        cold, s1 = timed_build(a.arch, cache, a.jobs)
        warm, s2 = timed_build(a.arch, cache, a.jobs)
    print(f"{os.cpu_count()} cores, --jobs {a.jobs or 'default'}")
    print(f"cold: {cold:.2f} s wall  [{s1}]")
    print(f"warm: {warm:.2f} s wall  [{s2}]")


if __name__ == "__main__":
    main()
