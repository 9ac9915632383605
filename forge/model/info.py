"""`forge info model.gguf`: a human-readable summary of a GGUF file."""

from __future__ import annotations

import os
from collections import defaultdict

from forge.errors import GGUFError
from forge.model.config import ModelConfig, config_from_gguf
from forge.model.gguf import GGUFFile, load_gguf


def _size(n: int) -> str:
    """n bytes as '98,362,432 bytes (93.8 MiB)'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"


def _printable(s: str, limit: int = 80) -> str:
    """s made safe to print (surrogate escapes and control characters shown escaped), cut to limit."""
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _model_lines(c: ModelConfig) -> list[str]:
    """Hyper-parameter and tokenizer lines of a supported model."""
    t = c.tokenizer
    ids = ", ".join(f"{k} {v}" for k, v in (("bos", t.bos_id), ("eos", t.eos_id),
                                            ("unk", t.unk_id), ("pad", t.pad_id)) if v is not None)
    return [
        f"  layers       {c.n_layer}, n_embd {c.n_embd}, n_ff {c.n_ff}, vocab {c.n_vocab}, "
        f"trained context {c.n_ctx_train}",
        f"  attention    {c.n_head} heads, {c.n_head_kv} KV heads (GQA {c.n_gqa}), head_dim "
        f"{c.head_dim}, qkv bias {'yes' if c.qkv_bias else 'no'}",
        f"  rope         {c.rope_type}, base {c.rope_freq_base:g}, scale {c.rope_freq_scale:g} "
        f"({c.rope_scaling}), {c.n_rot} rotated dims"
        + (", rope_freqs tensor" if c.has_rope_freqs else ""),
        f"  norm         RMS, eps {c.rms_eps:g}",
        f"  output       {'tied to token_embd' if c.tied_output else 'separate output.weight'}",
        f"  tokenizer    {_printable(t.model)} (pre {_printable(t.pre or '-')}), {t.n_tokens} tokens"
        f", {t.n_merges} merges; {ids or 'no special ids'}; add_bos {str(t.add_bos).lower()}",
    ]


def _tensor_lines(g: GGUFFile) -> list[str]:
    """Per-type tensor counts and bytes, largest first, then the total."""
    count: dict[str, int] = defaultdict(int)
    nbytes: dict[str, int] = defaultdict(int)
    for t in g.tensors.values():
        count[t.type_name] += 1
        nbytes[t.type_name] += t.nbytes
    lines = [f"  tensors      {len(g.tensors)}"]
    for name in sorted(count, key=lambda k: -nbytes[k]):
        lines.append(f"    {name:<8} {count[name]:>5} {'tensor ' if count[name] == 1 else 'tensors'}  {_size(nbytes[name])}")
    lines.append(f"    total          {_size(g.tensor_bytes)}")
    return lines


def describe(path: str | os.PathLike) -> tuple[str, GGUFError | None]:
    """(summary, problem): file, architecture, name, hyper-parameters, tokenizer, tensors.

    Refuses (GGUFError) a file that does not load. A well-formed file that forge cannot run (an
    unknown architecture, non-standard tensor names) is still described, with an "unsupported"
    line, and the reason comes back as problem (None when forge can run the model).
    """
    g = load_gguf(path)
    lines = [f"{g.path}",
             f"  file         {_size(g.file_size)}, GGUF v{g.version}, alignment {g.alignment}, "
             f"{len(g.kv)} metadata keys"]
    arch = g.get("general.architecture")
    name = g.get("general.name")
    lines.append(f"  model        {_printable(name) if isinstance(name, str) else '(unnamed)'}"
                 f", architecture {_printable(str(arch)) if arch is not None else '(none)'}")
    problem = None
    try:
        lines += _model_lines(config_from_gguf(g))
    except GGUFError as e:
        problem = e
        lines.append(f"  unsupported  {_printable(str(e).removeprefix(f'{g.path}: '), 400)}")
    return "\n".join(lines + _tensor_lines(g)), problem
