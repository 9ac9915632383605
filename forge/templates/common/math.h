// ---- portable math, the same code on every target so results agree across backends ----
// sin and cos together: Cody-Waite reduction by pi/2 with a three-part constant (exact products
// through fma), then Taylor polynomials on [-pi/4, pi/4]. Accurate to a few ulp for |x| < 1e5,
// which covers RoPE angles (position * frequency) of any realistic context.
DEVICE void f_sincos(float x, float* s, float* c) {
  const float q = f_floor(f_fma(x, 0.63661977236758134f, 0.5f));
  float r = f_fma(q, -1.5707963705062866f, x);
  r = f_fma(q, 4.371138828673793e-08f, r);
  r = f_fma(q, 1.7151245100058819e-15f, r);
  const float r2 = r * r;
  const float sn = r + r * r2 * (-1.0f / 6 + r2 * (1.0f / 120 + r2 * (-1.0f / 5040 + r2 * (1.0f / 362880))));
  const float cs = 1.0f + r2 * (-0.5f + r2 * (1.0f / 24 + r2 * (-1.0f / 720 + r2 * (1.0f / 40320))));
  const i32 quadrant = ((i32)q) & 3;
  *s = quadrant == 0 ? sn : quadrant == 1 ? cs : quadrant == 2 ? -sn : -cs;
  *c = quadrant == 0 ? cs : quadrant == 1 ? -sn : quadrant == 2 ? -cs : sn;
}
