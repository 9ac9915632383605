"""A paged KV cache: fixed-size pages of `page_size` tokens, handed to sequences on demand.

Device storage, per layer, for K and for V alike (docs/KVCACHE.md):

    [n_pages][n_kv_heads][page_size][row_bytes(dtype, head_dim)]   bytes

A row is one token of one KV head in the storage dtype: f32, f16, fp8 (E4M3 codes followed by the
row's f32 power-of-two scale), q8_0 (GGML blocks of 32: f16 scale + 32 int8) or mxfp6 (FP6 E2M3
codes, then an E8M0 scale per block of 32, OCP MX). Page-major order
keeps one page of one head contiguous (page_size * row_bytes), which is what an attention tile
reads. A sequence owns a list of page ids; its block table is that list as an int32 device
array, so position p lives in page table[p // page_size] at slot p % page_size.

The bookkeeping is plain Python over the Device protocol (alloc/upload/download/free); the
kernels (kv_append, flash_attn, attn_decode) read and write the storage. Every operation either
completes or leaves the cache exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np

from ..codegen.specs.kv_append import KV_DTYPES  # the storage dtypes the kernels are built for
from ..errors import KVCacheError

MAX_HEAD_DIM = 256  # kv_append holds a row in registers: 256 / wave size values per lane


def row_bytes(dtype: str, head_dim: int) -> int:
    """Bytes of one stored row (one token, one KV head). KVCacheError for an unknown dtype or a
    head_dim the dtype cannot hold (q8_0: a multiple of 32; fp8: of 4, so the scale is aligned; mxfp6:
    of 16)."""
    check_format(dtype, head_dim)
    return {"f32": 4 * head_dim, "f16": 2 * head_dim, "fp8": head_dim + 4,
            "q8_0": head_dim // 32 * 34, "mxfp6": mxfp6_row_bytes(head_dim)}[dtype]


def mxfp6_row_bytes(head_dim: int) -> int:
    """mxfp6 row: head_dim 6-bit codes (3/4 byte each), then one E8M0 byte per block of 32 values
    (the last block may hold 16), padded to 4 bytes so that rows stay 4-byte aligned."""
    n_blocks = -(-head_dim // 32)
    return 3 * head_dim // 4 + (n_blocks + 3) // 4 * 4


def check_format(dtype: str, head_dim: int) -> None:
    """KVCacheError unless (dtype, head_dim) is a storable row format."""
    if dtype not in KV_DTYPES:
        raise KVCacheError(f"unknown KV cache dtype {dtype!r}; known: {', '.join(KV_DTYPES)}")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise KVCacheError(f"head_dim {head_dim} is outside 1..{MAX_HEAD_DIM}")
    if dtype == "q8_0" and head_dim % 32:
        raise KVCacheError(f"q8_0 KV rows are blocks of 32; head_dim {head_dim} is not a multiple of 32")
    if dtype == "fp8" and head_dim % 4:
        raise KVCacheError(f"fp8 KV rows end in an f32 scale; head_dim {head_dim} must be a multiple of 4")
    if dtype == "mxfp6" and head_dim % 16:
        raise KVCacheError(f"mxfp6 KV rows pack 4 codes in 3 bytes and keep their scales 4-byte aligned; "
                           f"head_dim {head_dim} must be a multiple of 16")


def bytes_per_token(dtype: str, n_layers: int, n_kv_heads: int, head_dim: int) -> int:
    """Cache bytes one token costs across all layers, K and V together."""
    return 2 * n_layers * n_kv_heads * row_bytes(dtype, head_dim)


@dataclass
class _Seq:
    pages: list[int] = field(default_factory=list)
    length: int = 0  # tokens allocated (positions 0..length-1)
    table: object = None  # device buffer holding `pages` as int32
    table_cap: int = 0  # entries the device buffer has room for


class PagedKVCache:
    """K/V storage for every layer plus per-sequence page lists.

    `page_order` fixes the order in which free pages are handed out (default 0, 1, 2, ...); tests
    use it to check that kernels do not depend on pages being contiguous."""

    def __init__(self, device, *, n_layers: int, n_kv_heads: int, head_dim: int, n_pages: int,
                 page_size: int = 16, dtype: str = "f16", page_order: Sequence[int] | None = None):
        check_format(dtype, head_dim)
        for name, v in (("n_layers", n_layers), ("n_kv_heads", n_kv_heads), ("n_pages", n_pages),
                        ("page_size", page_size)):
            if v < 1:
                raise KVCacheError(f"{name} must be >= 1, got {v}")
        order = list(range(n_pages)) if page_order is None else [int(p) for p in page_order]
        if sorted(order) != list(range(n_pages)):
            raise KVCacheError(f"page_order must be a permutation of 0..{n_pages - 1}")
        self.device, self.dtype = device, dtype
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.n_pages, self.page_size = n_pages, page_size
        self.row_bytes = row_bytes(dtype, head_dim)
        self.page_bytes = n_kv_heads * page_size * self.row_bytes  # one layer, K or V
        self._free = order[::-1]  # a stack: pop() hands out order[0] first
        self._seqs: dict[Hashable, _Seq] = {}
        self._kv: list[tuple[object, object]] = []
        try:
            for _ in range(n_layers):
                k = device.alloc(n_pages * self.page_bytes)
                self._kv.append((k, None))
                self._kv[-1] = (k, device.alloc(n_pages * self.page_bytes))
        except BaseException:
            self.close()
            raise

    # ---- storage ---------------------------------------------------------------------------
    def layer(self, i: int) -> tuple[object, object]:
        """(K buffer, V buffer) of layer i."""
        if not 0 <= i < self.n_layers:
            raise KVCacheError(f"layer {i} is outside 0..{self.n_layers - 1}")
        return self._kv[i]

    @property
    def bytes_per_token(self) -> int:
        return bytes_per_token(self.dtype, self.n_layers, self.n_kv_heads, self.head_dim)

    @property
    def device_bytes(self) -> int:
        """Bytes of K/V storage on the device (block tables not counted)."""
        return 2 * self.n_layers * self.n_pages * self.page_bytes

    # ---- capacity ------------------------------------------------------------------------------
    @property
    def free_pages(self) -> int:
        return len(self._free)

    @property
    def capacity_tokens(self) -> int:
        """Tokens the whole cache holds."""
        return self.n_pages * self.page_size

    def tokens_fit(self, seq: Hashable | None = None) -> int:
        """How many more tokens `seq` (a new sequence when None or unknown) can take right now."""
        s = self._seqs.get(seq) if seq is not None else None
        spare = len(s.pages) * self.page_size - s.length if s else 0
        return spare + len(self._free) * self.page_size

    def seq_len(self, seq: Hashable) -> int:
        return self._seq(seq).length

    def sequences(self) -> list:
        return list(self._seqs)

    def pages(self, seq: Hashable) -> list[int]:
        """The page ids of `seq`, in position order (a copy)."""
        return list(self._seq(seq).pages)

    def block_table(self, seq: Hashable):
        """The device buffer of `seq`'s page ids (int32, at least len(pages) entries)."""
        return self._seq(seq).table

    def block_table_array(self, seq: Hashable) -> np.ndarray:
        return np.asarray(self._seq(seq).pages, dtype=np.int32)

    # ---- allocation ----------------------------------------------------------------------------
    def allocate(self, seq: Hashable, n_tokens: int) -> int:
        """Reserve positions for `n_tokens` more tokens of `seq` (created when new) and return the
        first new position. KVCacheError, with the cache unchanged, when they do not fit."""
        if n_tokens < 0:
            raise KVCacheError(f"cannot allocate {n_tokens} tokens")
        s = self._seqs.get(seq) or _Seq()
        need = -(-(s.length + n_tokens) // self.page_size) - len(s.pages)
        if need > len(self._free):
            raise KVCacheError(
                f"KV cache full: sequence {seq!r} needs {n_tokens} more tokens ({need} new pages of "
                f"{self.page_size}) but {len(self._free)} of {self.n_pages} pages are free; "
                f"{self.tokens_fit(seq)} tokens fit")
        taken = self._free[len(self._free) - need:][::-1] if need > 0 else []
        pages = s.pages + taken
        table, cap = self._upload_table(s, pages)  # may raise: nothing has changed yet
        if need > 0:
            del self._free[len(self._free) - need:]
        if table is not s.table and s.table is not None:
            self.device.free(s.table)
        start = s.length
        s.pages, s.length, s.table, s.table_cap = pages, s.length + n_tokens, table, cap
        self._seqs[seq] = s
        return start

    def release(self, seq: Hashable) -> int:
        """Give `seq`'s pages back; returns how many. KVCacheError for an unknown sequence."""
        s = self._seq(seq)
        del self._seqs[seq]
        self._free.extend(reversed(s.pages))  # its first page is handed out next
        if s.table is not None:
            self.device.free(s.table)
        return len(s.pages)

    def close(self) -> None:
        """Free every device buffer; the cache is unusable afterwards."""
        for seq in list(self._seqs):
            self.release(seq)
        for k, v in self._kv:
            for buf in (k, v):
                if buf is not None:
                    self.device.free(buf)
        self._kv = []

    # ---- internals -----------------------------------------------------------------------------
    def _seq(self, seq: Hashable) -> _Seq:
        try:
            return self._seqs[seq]
        except KeyError:
            raise KVCacheError(f"unknown sequence {seq!r}") from None

    def _upload_table(self, s: _Seq, pages: list[int]) -> tuple[object, int]:
        """The device table holding `pages`: s.table rewritten in place when it has room, else a
        new buffer of doubled capacity (the caller frees the old one once it commits)."""
        if pages == s.pages and s.table is not None:
            return s.table, s.table_cap
        arr = np.asarray(pages or [0], dtype=np.int32)
        if s.table is not None and len(arr) <= s.table_cap:
            self.device.upload(s.table, arr)
            return s.table, s.table_cap
        cap = max(4, 1 << (len(arr) - 1).bit_length())
        buf = self.device.alloc(cap * 4)
        try:
            self.device.upload(buf, arr)
        except BaseException:
            self.device.free(buf)
            raise
        return buf, cap
