// ---- staging a byte range of global memory into shared memory with 16-byte loads ----
// Weight rows of most GGML types are not 16-byte aligned (a Q4_0 block is 18 bytes), so the copy
// covers [src, src + n) with the aligned 16-byte words around it: word k of the cover lands at
// dst + 16k, and the returned offset `off` (src % 16) is where src[0] lands. Words wholly inside
// [lo, hi) (the buffer) are one u32x4 load; the at most two words at the buffer's ends are copied
// byte by byte so nothing outside the buffer is read. Threads t = 0..nt-1 share the words.
// dst must be 16-byte aligned with room for n + 30 bytes.
DEVICE u32 stage_bytes(u8* dst, const u8* src, u32 n, const u8* lo, const u8* hi, u32 t, u32 nt) {
  const u32 off = (u32)((u64)src & 15u);
  const u8* base = src - off;
  const u32 words = (off + n + 15u) / 16u;
  for (u32 k = t; k < words; k += nt) {
    const u8* p = base + 16u * k;
    if (p >= lo && p + 16 <= hi) {
      *(u32x4*)(dst + 16u * k) = *(const u32x4*)p;
    } else {
      for (u32 b = 0; b < 16u; ++b)
        if (p + b >= lo && p + b < hi) dst[16u * k + b] = p[b];
    }
  }
  return off;
}
