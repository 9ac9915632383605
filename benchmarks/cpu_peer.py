"""forge's host-CPU path beside llama.cpp's CPU path (llama-cpp-python), same file, same threads:
prefill and decode tokens/s, greedy parity, perplexity. The source of docs/PERFORMANCE.md's CPU
section.

    python3 benchmarks/cpu_peer.py [--threads 2] [--windows 6] [--skip-quality]

Needs llama-cpp-python (pip builds it from source, ~11 min on 2 cores) and the cached SmolLM2
(`forge fetch`) and Tiny Shakespeare (`forge fetch tiny-shakespeare`). Speed: prefill is a 128-token
prompt from an empty cache, decode 128 greedy tokens after it; best of --reps runs each.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import numpy as np


def forge_speed(m, ids, n_gen, reps):
    from forge.runtime.executor import SamplingSettings
    ex = m.executor
    ex.set_sampling(SamplingSettings(temperature=0.0), ids)
    ex.prefill(np.asarray(ids, np.int32), sample=True)  # warm
    ex.decode_step(len(ids))
    pp = tg = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        ex.prefill(np.asarray(ids, np.int32), sample=True)
        t1 = time.perf_counter()
        for i in range(n_gen):
            ex.decode_step(len(ids) + i)
        t2 = time.perf_counter()
        pp, tg = min(pp, t1 - t0), min(tg, t2 - t1)
    return len(ids) / pp, n_gen / tg


def llama_speed(ll, ids, n_gen, reps):
    pp = tg = float("inf")
    for _ in range(reps + 1):
        ll.reset()
        t0 = time.perf_counter()
        ll.eval(ids)
        t1 = time.perf_counter()
        tok = int(np.argmax(ll.scores[ll.n_tokens - 1]))
        for _ in range(n_gen):
            ll.eval([tok])
            tok = int(np.argmax(ll.scores[ll.n_tokens - 1]))
        t2 = time.perf_counter()
        pp, tg = min(pp, t1 - t0), min(tg, t2 - t1)
    return len(ids) / pp, n_gen / tg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--skip-quality", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("FORGE_HOST_THREADS", str(a.threads))
    import llama_cpp

    import forge
    from forge.model.fetch import DEFAULT_MODEL, DEFAULT_TEXT, fetch_model
    from forge.model.perplexity import perplexity
    path = fetch_model(DEFAULT_MODEL)
    m = forge.load(path, backend="cpu", max_context=1024)
    # logits_all only where logits of every row are needed: it costs llama.cpp speed otherwise
    ll = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_batch=512, verbose=False, n_threads=a.threads,
                         n_threads_batch=a.threads)
    text = fetch_model(DEFAULT_TEXT).read_text()
    ids = m.tokenizer.encode(text)[:128]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {a.threads}, load average before {load:.2f}, commit {commit}, llama-cpp-python "
          f"{llama_cpp.__version__}")
    fp, fd = forge_speed(m, ids, 128, a.reps)
    lp, ld = llama_speed(ll, ids, 128, a.reps)
    print(f"| SmolLM2-135M Q4_1 | prefill pp128 t/s | decode tg128 t/s |\n|---|---|---|")
    print(f"| forge cpu | {fp:.1f} | {fd:.1f} |\n| llama.cpp | {lp:.1f} | {ld:.1f} |")
    print(f"| forge / llama.cpp | {fp / lp:.2f} | {fd / ld:.2f} |")
    if a.skip_quality:
        return
    ll2 = llama_cpp.Llama(model_path=str(path), n_ctx=1024, logits_all=True, verbose=False, n_threads=a.threads)
    all_ids = m.tokenizer.encode(text)
    bos = m.tokenizer.bos_id if m.tokenizer.add_bos else None

    def llama_logits(w):
        ll2.reset()
        ll2.eval(w)
        return np.asarray(ll2.scores[:len(w)])

    ours = perplexity(m.logits, all_ids, 512, bos, a.windows)
    theirs = perplexity(llama_logits, all_ids, 512, bos, a.windows)
    print(f"\nperplexity, Tiny Shakespeare, {a.windows} windows of 512 ({ours.n_scored} tokens scored): "
          f"forge {ours.ppl:.4f}, llama.cpp {theirs.ppl:.4f} (ratio {ours.ppl / theirs.ppl:.4f})")


if __name__ == "__main__":
    main()
