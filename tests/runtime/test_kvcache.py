"""The paged KV cache's bookkeeping: pages are never shared or leaked, block tables on the device
match the page lists, a failed allocation (out of pages, or the device refusing a buffer) leaves
the cache exactly as it was, and bytes_per_token adds up per dtype."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.errors import DeviceError, KVCacheError
from forge.runtime.kvcache import KV_DTYPES, PagedKVCache, bytes_per_token, row_bytes


class HostDevice:
    """The Device protocol's memory half over host bytearrays, with injectable alloc failures and
    a count of live buffers (so leaks show)."""

    def __init__(self):
        self.bufs, self.next, self.fail_allocs = {}, 1, False

    def alloc(self, n):
        if self.fail_allocs:
            raise DeviceError("out of device memory (injected)")
        h, self.next = self.next, self.next + 1
        self.bufs[h] = bytearray(n)
        return h

    def upload(self, buf, arr):
        data = np.ascontiguousarray(arr).tobytes()
        self.bufs[buf][: len(data)] = data

    def download(self, buf, n):
        return bytes(self.bufs[buf][:n])

    def free(self, buf):
        del self.bufs[buf]


def snapshot(c: PagedKVCache):
    """Everything observable about the cache's bookkeeping, device tables included."""
    seqs = {s: (c.pages(s), c.seq_len(s), c.block_table(s)) for s in c.sequences()}
    tables = {s: c.device.download(c.block_table(s), 4 * len(c.pages(s))) for s in c.sequences()}
    return seqs, tables, c.free_pages, list(c._free), set(c.device.bufs)


def check_invariants(c: PagedKVCache):
    used = [p for s in c.sequences() for p in c.pages(s)]
    assert len(used) == len(set(used)), "a page belongs to two sequences"
    assert sorted(used + c._free) == list(range(c.n_pages)), "a page leaked or was duplicated"
    for s in c.sequences():
        n = c.seq_len(s)
        assert len(c.pages(s)) == -(-n // c.page_size)  # exactly the pages its tokens need
        table = np.frombuffer(c.device.download(c.block_table(s), 4 * len(c.pages(s))), np.int32)
        np.testing.assert_array_equal(table, c.pages(s))
    assert len(c.device.bufs) == 2 * c.n_layers + len(c.sequences())  # storage + one table each


ops = st.lists(st.tuples(st.sampled_from(["alloc", "alloc", "release"]), st.integers(0, 4),
                         st.integers(0, 40)), min_size=1, max_size=30)


@given(ops=ops, page_size=st.sampled_from([1, 3, 16]), n_pages=st.integers(1, 12), seed=st.integers(0, 99))
def test_random_allocations_keep_invariants(ops, page_size, n_pages, seed):
    dev = HostDevice()
    order = np.random.default_rng(seed).permutation(n_pages)
    c = PagedKVCache(dev, n_layers=2, n_kv_heads=1, head_dim=8, n_pages=n_pages, page_size=page_size,
                     dtype="f32", page_order=order)
    for op, seq, n in ops:
        if op == "release":
            if seq in c.sequences():
                before = c.free_pages
                freed = c.release(seq)
                assert c.free_pages == before + freed
            else:
                with pytest.raises(KVCacheError, match="unknown sequence"):
                    c.release(seq)
            check_invariants(c)
            continue
        fit = c.tokens_fit(seq)
        old_len = c.seq_len(seq) if seq in c.sequences() else 0
        if n <= fit:
            assert c.allocate(seq, n) == old_len
            assert c.seq_len(seq) == old_len + n
        else:
            before = snapshot(c)
            with pytest.raises(KVCacheError, match=f"{fit} tokens fit"):
                c.allocate(seq, n)
            assert snapshot(c) == before
        check_invariants(c)
    c.close()
    assert dev.bufs == {}


def test_pages_follow_page_order_and_are_reused():
    dev = HostDevice()
    c = PagedKVCache(dev, n_layers=1, n_kv_heads=2, head_dim=64, n_pages=4, page_size=16,
                     dtype="f16", page_order=[2, 0, 3, 1])
    assert c.allocate("a", 17) == 0 and c.pages("a") == [2, 0]
    assert c.allocate("a", 15) == 17 and c.pages("a") == [2, 0]  # fills the second page, no new one
    assert c.allocate("b", 1) == 0 and c.pages("b") == [3]
    assert c.tokens_fit("b") == 15 + 16 and c.tokens_fit() == 16
    c.release("a")
    assert c.allocate("c", 20) == 0 and c.pages("c") == [2, 0]  # freed pages come back in order
    assert c.allocate("d", 0) == 0 and c.pages("d") == [] and c.seq_len("d") == 0


def test_failed_allocation_is_atomic_and_names_what_fits():
    dev = HostDevice()
    c = PagedKVCache(dev, n_layers=1, n_kv_heads=1, head_dim=32, n_pages=3, page_size=4, dtype="q8_0")
    c.allocate(7, 6)  # two pages, 2 spare slots
    before = snapshot(c)
    with pytest.raises(KVCacheError, match=r"KV cache full: sequence 7 needs 7 more tokens .*6 tokens fit"):
        c.allocate(7, 7)
    assert snapshot(c) == before
    # The device refusing the (grown) block table is just as harmless.
    c.allocate(7, 2)
    before = snapshot(c)
    dev.fail_allocs = True
    with pytest.raises(DeviceError):
        c.allocate(8, 1)
    assert snapshot(c) == before
    dev.fail_allocs = False
    assert c.allocate(8, 4) == 0
    check_invariants(c)


def test_bad_configuration_is_refused():
    dev = HostDevice()
    with pytest.raises(KVCacheError, match="multiple of 32"):
        PagedKVCache(dev, n_layers=1, n_kv_heads=1, head_dim=80, n_pages=1, dtype="q8_0")
    with pytest.raises(KVCacheError, match="unknown KV cache dtype"):
        PagedKVCache(dev, n_layers=1, n_kv_heads=1, head_dim=64, n_pages=1, dtype="bf8")
    with pytest.raises(KVCacheError, match="permutation"):
        PagedKVCache(dev, n_layers=1, n_kv_heads=1, head_dim=64, n_pages=2, page_order=[0, 0])
    with pytest.raises(KVCacheError, match="n_pages"):
        PagedKVCache(dev, n_layers=1, n_kv_heads=1, head_dim=64, n_pages=0)
    assert dev.bufs == {}


def test_storage_allocation_failure_frees_what_was_allocated():
    dev = HostDevice()
    real = dev.alloc
    calls = []

    def flaky(n):
        calls.append(n)
        if len(calls) == 4:
            raise DeviceError("injected")
        return real(n)

    dev.alloc = flaky
    with pytest.raises(DeviceError):
        PagedKVCache(dev, n_layers=3, n_kv_heads=1, head_dim=64, n_pages=2)
    assert dev.bufs == {}


def test_storage_sizes_and_bytes_per_token():
    # Row sizes: f32 4d, f16 2d, fp8 d codes + f32 scale, q8_0 d/32 blocks of 34 bytes, mxfp6 3d/4
    # bytes of codes + an E8M0 byte per 32 values, padded to 4.
    assert [row_bytes(t, 64) for t in KV_DTYPES] == [256, 128, 68, 68, 52]
    assert [row_bytes(t, 128) for t in KV_DTYPES] == [512, 256, 132, 136, 100]
    assert [row_bytes("mxfp6", d) for d in (16, 80, 96, 256)] == [16, 64, 76, 200]
    with pytest.raises(KVCacheError, match="multiple of 16"):
        row_bytes("mxfp6", 72)
    # SmolLM2-135M: 30 layers x 3 KV heads x 64, K and V.
    assert bytes_per_token("f16", 30, 3, 64) == 2 * 30 * 3 * 128 == 23040
    assert bytes_per_token("q8_0", 32, 8, 128) == 2 * 32 * 8 * 136
    c = PagedKVCache(HostDevice(), n_layers=2, n_kv_heads=3, head_dim=64, n_pages=5, page_size=16, dtype="fp8")
    assert c.bytes_per_token == bytes_per_token("fp8", 2, 3, 64)
    assert c.device_bytes == c.bytes_per_token * c.capacity_tokens
    assert len(c.device.bufs[c.layer(1)[0]]) == 5 * 3 * 16 * 68
    with pytest.raises(KVCacheError, match="layer 2"):
        c.layer(2)


def test_block_table_on_the_real_device(kctx):
    """The cache runs over the test backend's device: tables read back as the page lists."""
    dev = kctx.device
    c = PagedKVCache(dev, n_layers=1, n_kv_heads=2, head_dim=64, n_pages=9, page_size=2, dtype="fp8",
                     page_order=[5, 1, 8, 0, 2, 7, 3, 6, 4])
    c.allocate("s", 5)
    c.allocate("s", 8)  # grows past the first table buffer's capacity
    table = np.frombuffer(dev.download(c.block_table("s"), 4 * 7), np.int32)
    np.testing.assert_array_equal(table, [5, 1, 8, 0, 2, 7, 3])
    c.close()


def test_docs_bytes_per_token_table_is_right():
    """docs/KVCACHE.md's bytes-per-token table says what bytes_per_token computes."""
    import re
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "KVCACHE.md").read_text()
    section = doc[doc.index("## Bytes per token"):doc.index("## Kernels")]
    shape, rows = None, 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[1] not in KV_DTYPES:
            continue
        if cells[0]:
            m = re.search(r"(\d+) layers, (\d+) KV heads, head_dim (\d+)", cells[0])
            shape = tuple(int(g) for g in m.groups())
        dtype, rb, bpt = cells[1], int(cells[2]), int(cells[3].replace(",", ""))
        assert rb == row_bytes(dtype, shape[2]), line
        assert bpt == bytes_per_token(dtype, *shape), line
        assert abs(float(cells[4]) - bpt / 1024) < 0.01 and abs(float(cells[5]) - bpt * 8192 / 2**20) < 0.1, line
        rows += 1
    assert rows == 10


def test_cache_feeds_the_attention_kernels(kctx):
    """The pieces fit: a PagedKVCache on the test device, two interleaved sequences, kv_append
    (with RoPE) filling the prefill through the cache's block table, flash_attn reading it causally,
    then one decode step (kv_append + attn_decode + attn_combine), each compared with float64
    attention over what the cache holds, read back through the host's page list."""
    from forge.codegen.specs.rope import freq_log2
    from tests.oracles.attention import attention, attention_bound, gather, kv_decode
    from tests.oracles.rope import rope

    dev, disp, rng = kctx.device, kctx.dispatcher, np.random.default_rng(4)
    d, n_kv, group, page, n0 = 64, 2, 3, 4, 12
    n_heads = n_kv * group
    c = PagedKVCache(dev, n_layers=1, n_kv_heads=n_kv, head_dim=d, n_pages=10, page_size=page,
                     dtype="fp8", page_order=rng.permutation(10))
    bufs = []

    def buf(a):
        b = dev.alloc(max(a.nbytes, 4))
        dev.upload(b, np.ascontiguousarray(a))
        bufs.append(b)
        return b

    def call(family, params, named, **shapes):
        k = disp.get(family, **params)
        k(*[named[a.name] for a in k.args], **shapes)
        dev.synchronize()

    def append(seq, k, v, start):
        n = len(k)
        pos = np.arange(start, start + n, dtype=np.int32)
        kc, vc = c.layer(0)
        call("kv_append", {"kv": "fp8", "block": 128},
             {"k_new": buf(k), "v_new": buf(v), "pos": buf(pos), "block_table": c.block_table(seq),
              "k_cache": kc, "v_cache": vc, "n_tokens": n, "n_kv_heads": n_kv, "head_dim": d,
              "page_size": page, "n_rot": d, "rope_neox": 1, "freq_log2": fl, "freq_scale": 1.0},
             n_tokens=n, n_kv_heads=n_kv)

    def stored(seq):
        """float64 K and V of seq's positions, read back through the host page list."""
        n, table = c.seq_len(seq), c.block_table_array(seq)
        shape = (c.n_pages, n_kv, page, c.row_bytes)
        kc, vc = (np.frombuffer(dev.download(b), np.uint8)[: np.prod(shape)].reshape(shape) for b in c.layer(0))
        return [kv_decode(gather(x, table, page, n), "fp8", d) for x in (kc, vc)]

    fl = freq_log2(1e4, d)
    ks, vs = (rng.standard_normal((n0, n_kv, d)).astype(np.float32) for _ in "kv")
    c.allocate("other", 5)  # another sequence takes pages in between
    assert c.allocate("s", n0) == 0
    append("other", *(rng.standard_normal((5, n_kv, d)).astype(np.float32) for _ in "kv"), 0)
    append("s", ks, vs, 0)
    other = stored("other")
    kq, vq = stored("s")
    ref_k, _ = rope(ks, np.arange(n0), d, fl, 1.0, "neox")
    np.testing.assert_allclose(kq, ref_k, rtol=2.0 ** -4, atol=1e-2)  # K went in rotated (fp8 storage)

    q = rng.standard_normal((n0, n_heads, d)).astype(np.float32)
    o = np.zeros_like(q)
    ob = buf(o)
    kc, vc = c.layer(0)
    call("flash_attn", {"head_dim": d, "kv": "fp8"},
         {"q": buf(q), "k_cache": kc, "v_cache": vc, "block_table": c.block_table("s"), "o": ob,
          "n_q": n0, "n_heads": n_heads, "n_kv_heads": n_kv, "page_size": page, "kv_len": n0,
          "n_past": 0, "causal": 1, "scale": 0.125}, n_q=n0, n_heads=n_heads, n_kv_heads=n_kv)
    got = np.frombuffer(dev.download(ob), np.float32).reshape(o.shape)
    ref = attention(q, kq, vq, 0.125, True, 0)
    assert np.all(np.abs(got - ref) <= attention_bound(q, kq, vq, 0.125, True, 0))

    # One decode step: position n0 = 12 needs a fourth page, taken after one "other" just took.
    c.allocate("other", 4)
    assert c.allocate("s", 1) == n0 and len(c.pages("s")) == 4
    append("s", *(rng.standard_normal((1, n_kv, d)).astype(np.float32) for _ in "kv"), n0)
    kq, vq = stored("s")
    qd = rng.standard_normal((n_heads, d)).astype(np.float32)
    ns = 2
    part_o, part_ml = buf(np.zeros((ns, n_heads, d), np.float32)), buf(np.zeros((ns, n_heads, 2), np.float32))
    od = buf(qd * 0)
    call("attn_decode", {"head_dim": d, "kv": "fp8"},
         {"q": buf(qd), "k_cache": kc, "v_cache": vc, "block_table": c.block_table("s"), "part_o": part_o,
          "part_ml": part_ml, "n_heads": n_heads, "n_kv_heads": n_kv, "page_size": page,
          "kv_len": buf(np.array([n0 + 1], np.int32)), "scale": 0.125}, n_splits=ns, n_heads=n_heads,
         n_kv_heads=n_kv)
    call("attn_combine", {"block": 128}, {"part_o": part_o, "part_ml": part_ml, "o": od, "n_splits": ns,
                                          "n_heads": n_heads, "head_dim": d}, n_heads=n_heads)
    got = np.frombuffer(dev.download(od), np.float32).reshape(qd.shape)
    ref = attention(qd[None], kq, vq, 0.125, False, 0)[0]
    assert np.all(np.abs(got - ref) <= 2 * attention_bound(qd[None], kq, vq, 0.125, False, 0)[0])
    for mine, now in zip(other, stored("other")):  # s's writes never touched the other sequence
        np.testing.assert_array_equal(mine, now[:5])
    for b in bufs:
        dev.free(b)
    c.close()
