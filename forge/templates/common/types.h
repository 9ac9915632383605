// ---- the vocabulary's types, the same on every target ----
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef short i16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;
typedef u16 f16;
typedef u16 bf16;
struct __attribute__((aligned(16))) f32x4 { float v[4]; };
struct __attribute__((aligned(16))) u32x4 { u32 v[4]; };
struct __attribute__((aligned(8))) u32x2 { u32 v[2]; };
