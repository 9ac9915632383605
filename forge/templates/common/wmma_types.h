// ---- matrix fragment types: a lane's 16 f16 of a WMMA A or B operand, its 8 f32 of C/D ----
#ifndef FORGE_WMMA_TYPES
#define FORGE_WMMA_TYPES 1
#ifdef FORGE_TARGET_EMU
// the host compiler's (GCC-style) vectors: same size, element access and by-value passing
typedef _Float16 v16h __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));
#else
// clang's vectors, the V16h / V8f of the builtin's signature in LLVM's BuiltinsAMDGPU.def
typedef _Float16 v16h __attribute__((ext_vector_type(16)));
typedef float v8f __attribute__((ext_vector_type(8)));
#endif
#endif
