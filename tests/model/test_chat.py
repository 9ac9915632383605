"""Chat templates from GGUF files: HF-compatible rendering, and hostile templates refused in one
line (sandbox, time, memory and output bounds)."""

from __future__ import annotations

import time

import pytest

from forge.errors import ForgeError
from forge.model.chat import ChatTemplateError, render_chat
from forge.model.gguf import load_gguf
from forge.model.tokenizer import Tokenizer
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.helpers.tiny_spm import write_tiny_spm_gguf

# SmolLM2-135M-Instruct's template, as its GGUF carries it
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
           "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
           "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")
HI = [{"role": "user", "content": "Hi there"}]


def refused(template, match, messages=HI, **kw):
    with pytest.raises(ChatTemplateError, match=match) as e:
        render_chat(template, messages, source="t.gguf", **kw)
    assert "\n" not in str(e.value) and str(e.value).startswith("t.gguf: ")
    return e.value


def test_file_template_renders_as_hf(tmp_path):
    tok = Tokenizer.from_gguf(load_gguf(write_tiny_gguf(
        tmp_path / "m.gguf", override_kv={"tokenizer.chat_template": SMOLLM2})))
    prompt = tok.apply_chat_template(HI)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                      "Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert not tok.apply_chat_template(HI, add_generation_prompt=False).endswith("assistant\n")
    ids = tok.encode(prompt, special=True)
    assert ids[0] == 1 and ids.count(2) == 2          # <|im_start|>, <|im_end|> as tokens


def test_special_token_variables_and_hf_extras(tmp_path):
    template = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'skip' %}{% continue %}"
                "{% endif %}[{{ m.content }}]{{ eos_token }}\n{% endfor %}"
                "{{ messages[0]|tojson }} {{ strftime_now('%Y')|length }}")
    tok = Tokenizer.from_gguf(load_gguf(write_tiny_spm_gguf(tmp_path / "s.gguf",
                                                           chat_template=template)))
    msgs = [{"role": "user", "content": "héllo"}, {"role": "skip", "content": "x"}]
    # trim_blocks: the newline after a block tag goes; tojson keeps non-ASCII (HF's filter)
    assert tok.apply_chat_template(msgs) == '<s>[héllo]</s>\n{"role": "user", "content": "héllo"} 4'


def test_file_without_template(tmp_path):
    tok = Tokenizer.from_gguf(load_gguf(write_tiny_gguf(tmp_path / "m.gguf")))
    with pytest.raises(ChatTemplateError, match="m.gguf: the file has no chat template"):
        tok.apply_chat_template(HI)


@pytest.mark.parametrize("template", [
    "{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages[0].__class__ }}", "{{ cycler.__init__.__globals__ }}", "{{ messages.append(1) }}",
])
def test_sandbox_refuses_internals_and_mutation(template):
    refused(template, "unsafe operation refused by the sandbox")


def test_template_can_refuse_messages():
    refused("{{ raise_exception('Only user and assistant roles are supported') }}",
            "the template refused the messages: Only user and assistant roles are supported")


def test_syntax_error():
    refused("{% if %}", "syntax error at line 1")


def test_huge_loop_times_out():
    t0 = time.monotonic()
    refused("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "did not finish within 1 s", timeout_s=1)
    assert time.monotonic() - t0 < 30      # bounded, not a hang (generous: a loaded CI machine)


def test_output_and_memory_bounds():
    refused("{{ 'ab' * 2000000 }}", "output larger than")
    refused("{{ 'x' * 10**9 }}", "used more than 512 MiB of memory")


@pytest.mark.parametrize("messages, match", [
    ({"role": "user"}, "must be a list of dicts"), (["hi"], "must be a list of dicts"),
    ([{"role": "user", "content": object()}], "must be plain JSON data"),
    ([{"role": "user", "content": float("nan")}], "must be plain JSON data"),
])
def test_bad_messages(messages, match):
    with pytest.raises(ChatTemplateError, match=match):
        render_chat(SMOLLM2, messages)


def test_errors_are_forge_errors():
    assert issubclass(ChatTemplateError, ForgeError)
