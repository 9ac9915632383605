"""Chat templates: a GGUF file's tokenizer.chat_template rendered without trusting it.

A model file is untrusted input, and its chat template is a program. Two walls:

1. Jinja2's ImmutableSandboxedEnvironment (what Hugging Face renders templates in, with the same
   options: trim_blocks, lstrip_blocks, loop controls, a JSON `tojson`, `raise_exception` and
   `strftime_now`): no access to Python internals (`''.__class__`), no mutation of the inputs,
   `range` capped at 100,000 items.
2. A separate Python process (`python -I -S`: no site hooks, no current directory on the path)
   with a wall-clock timeout, a CPU-time limit and an address-space limit, whose output is cut
   at a size bound. The sandbox cannot stop a loop of 100,000 × 100,000 iterations, a string
   doubled forty times or `lipsum(10**9)`; a process that is killed can. Starting it costs
   about 0.1 s on an idle machine, once per rendered prompt.

Anything that goes wrong is one ChatTemplateError line naming the template's source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from forge.errors import ForgeError

TIMEOUT_S = 10.0                 # wall clock for one render, process start included
MEMORY_LIMIT = 1 << 29           # address space of the rendering process
OUTPUT_LIMIT = 1 << 20           # rendered bytes allowed beyond 4x the size of the messages


class ChatTemplateError(ForgeError):
    """A chat template is missing, malformed, hostile, or refused the messages."""


# The child: reads a JSON request on stdin, writes {"text": ...} or {"error": ...} on stdout.
_CHILD = r'''
import sys
sys.path[:0] = sys.argv[1:]               # where jinja2 and markupsafe live (parent's view)
import json, resource
req = json.loads(sys.stdin.buffer.read())
resource.setrlimit(resource.RLIMIT_AS, (req["memory"], req["memory"]))
resource.setrlimit(resource.RLIMIT_CPU, (req["cpu"], req["cpu"]))

def reply(**kw):
    sys.stdout.write(json.dumps(kw))
    sys.stdout.flush()

class Refused(Exception):
    pass

import datetime
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

try:
    def raise_exception(message):
        raise Refused(str(message))

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(str(fmt))

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    class Sandbox(ImmutableSandboxedEnvironment):
        def unsafe_undefined(self, obj, attribute):
            # Jinja returns an Undefined that prints as ''; a hostile template is refused instead.
            raise jinja2.exceptions.SecurityError(
                f"access to attribute {attribute!r} of a {type(obj).__name__} object is unsafe")

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals.pop("lipsum", None)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    env.filters["tojson"] = tojson
    template = env.from_string(req["template"])
    out, size = [], 0
    for chunk in template.generate(**req["context"]):
        size += len(chunk)
        if size > req["limit"]:
            reply(error=f"output larger than {req['limit']} characters")
            sys.exit(0)
        out.append(chunk)
    reply(text="".join(out))
except Refused as e:
    reply(error=f"the template refused the messages: {e}")
except jinja2.TemplateSyntaxError as e:
    reply(error=f"syntax error at line {e.lineno}: {e.message}")
except jinja2.exceptions.SecurityError as e:
    reply(error=f"unsafe operation refused by the sandbox: {e}")
except MemoryError:
    reply(error=f"used more than {req['memory'] >> 20} MiB of memory")
except RecursionError:
    reply(error="recursion too deep")
except Exception as e:
    reply(error=f"{type(e).__name__}: {e}")
'''


def _one_line(text: str, limit: int = 300) -> str:
    """text on one line, shortened to limit characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _library_paths() -> list[str]:
    """The directories holding jinja2 and markupsafe, for a child that skips site setup."""
    import jinja2
    import markupsafe
    dirs = [os.path.dirname(os.path.dirname(m.__file__)) for m in (jinja2, markupsafe)]
    return list(dict.fromkeys(dirs))


def _request(template: str, messages: Any, add_generation_prompt: bool, tokens: dict,
             extra: dict | None, timeout_s: float) -> bytes:
    """The JSON request for the child; refuses messages that are not JSON data."""
    if not isinstance(template, str) or not template:
        raise ChatTemplateError("the chat template is empty or not a string")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ChatTemplateError("messages must be a list of dicts such as "
                                "{'role': 'user', 'content': 'Hi'}")
    context = {"messages": messages, "add_generation_prompt": bool(add_generation_prompt),
               "tools": None, "documents": None, **tokens, **(extra or {})}
    try:
        body = json.dumps(context, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ChatTemplateError(f"messages must be plain JSON data (str, numbers, lists, "
                                f"dicts): {_one_line(e)}") from None
    return json.dumps({"template": template, "context": json.loads(body),
                       "limit": OUTPUT_LIMIT + 4 * len(body), "memory": MEMORY_LIMIT,
                       "cpu": int(timeout_s) + 1}).encode()


def render_chat(template: str, messages: list[dict], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", unk_token: str = "",
                pad_token: str = "", extra: dict | None = None, source: str = "chat template",
                timeout_s: float = TIMEOUT_S) -> str:
    """The text template makes of messages, rendered in the sandbox, in a separate process.

    Variables: messages, add_generation_prompt, bos_token, eos_token, unk_token, pad_token,
    tools=None, documents=None, and extra's. Refuses (ChatTemplateError, one line naming source):
    messages that are not a list of dicts of JSON data; a template with a syntax error, an unsafe
    operation, a raise_exception call, more than timeout_s seconds, MEMORY_LIMIT bytes of memory or
    OUTPUT_LIMIT (+4x the messages) characters of output; a renderer that could not run.
    """
    request = _request(template, messages, add_generation_prompt,
                       {"bos_token": bos_token, "eos_token": eos_token, "unk_token": unk_token,
                        "pad_token": pad_token}, extra, timeout_s)
    cmd = [sys.executable, "-I", "-S", "-c", _CHILD, *_library_paths()]
    try:
        proc = subprocess.run(cmd, input=request, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ChatTemplateError(f"{source}: the chat template did not finish within "
                                f"{timeout_s:g} s (a huge loop? the template is refused)") from None
    except OSError as e:
        raise ChatTemplateError(f"{source}: cannot start the template renderer: {e}") from None
    try:
        reply = json.loads(proc.stdout)
    except ValueError:
        why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else _one_line(proc.stderr.decode(errors="replace")[-300:]) or "no output")
        raise ChatTemplateError(f"{source}: the template renderer failed ({why})") from None
    if "error" in reply:
        raise ChatTemplateError(f"{source}: {_one_line(reply['error'])}")
    return reply["text"]
