// ---- matrix fragment types of the f16 MFMA: a lane's 4 f16 of an A or B operand, its 4 f32 of C/D ----
#ifndef FORGE_MFMA_TYPES
#define FORGE_MFMA_TYPES 1
#ifdef FORGE_TARGET_EMU
// the host compiler's (GCC-style) vectors: same size, element access and by-value passing
typedef _Float16 v4h __attribute__((vector_size(8)));
typedef float v4f __attribute__((vector_size(16)));
#else
// clang's vectors, the V4h / V4f of the builtin's signature in LLVM's BuiltinsAMDGPU.def
typedef _Float16 v4h __attribute__((ext_vector_type(4)));
typedef float v4f __attribute__((ext_vector_type(4)));
#endif
#endif
