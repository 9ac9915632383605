"""One exception type per layer, all under ForgeError.

The CLI prints `forge: error: <message>` for any ForgeError and exits 1; anything else is a bug and
shows a traceback. Messages name the file, tensor or kernel and say what was expected.
"""


class ForgeError(Exception):
    """Root of every error forge raises on purpose."""


class ArchError(ForgeError):
    """Unknown architecture name or a feature the arch lacks."""


class SpecError(ForgeError):
    """A kernel spec was asked for something outside its parameter space."""


class RenderError(ForgeError):
    """A template failed to render (syntax error, undefined variable)."""


class ToolchainError(ForgeError):
    """No toolchain can compile for the target, or one is misconfigured."""


class CompileError(ForgeError):
    """A compiler ran and failed; the message carries its diagnostics and the source path."""


class StoreError(ForgeError):
    """The code-object store is unusable (unsafe permissions, unreadable)."""


class CodeObjectError(ForgeError):
    """A compiled object could not be read (not ELF, no metadata note)."""


class DeviceError(ForgeError):
    """A backend failed to allocate, load or launch."""


class GGUFError(ForgeError):
    """A GGUF file is malformed, hostile or unsupported."""


class QuantError(ForgeError):
    """A tensor cannot be encoded or decoded in the requested format."""


class KVCacheError(ForgeError):
    """The KV cache is out of capacity or was misused."""


class PackError(ForgeError):
    """A kernel pack is unusable: another arch or toolchain, tampered or unsafe members, or a
    kernel it lacks."""
