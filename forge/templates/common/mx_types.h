// ---- vector types of gfx950's MX builtins (cvt_scalef32_*, mfma_scale_*) ----
// clang's ext vectors on AMD (the V2f / V6Ui / V16f / V32f / V8Zi / V4f of BuiltinsAMDGPU.def); on the
// emulator (a GCC-compatible host compiler) vectors of the same element type and size, indexed with
// [] (never .x), and a struct for the six words of an FP6 group (GCC vectors are powers of two).
#ifndef FORGE_MX_TYPES
#define FORGE_MX_TYPES 1
#ifdef FORGE_TARGET_EMU
typedef float forge_f2 __attribute__((vector_size(8)));
typedef float forge_f32x32 __attribute__((vector_size(128)));
typedef float forge_v16f __attribute__((vector_size(64)));
typedef int forge_v8i __attribute__((vector_size(32)));
typedef float forge_v4f __attribute__((vector_size(16)));
struct forge_u6 {
  u32 w[6];
  u32& operator[](u32 i) { return w[i]; }
  u32 operator[](u32 i) const { return w[i]; }
};
#else
typedef float forge_f2 __attribute__((ext_vector_type(2)));
typedef float forge_f32x32 __attribute__((ext_vector_type(32)));
typedef float forge_v16f __attribute__((ext_vector_type(16)));
typedef int forge_v8i __attribute__((ext_vector_type(8)));
typedef float forge_v4f __attribute__((ext_vector_type(4)));
typedef u32 forge_u6 __attribute__((ext_vector_type(6)));
#endif
#endif
