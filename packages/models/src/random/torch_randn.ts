/**
 * Bit-exact reproduction of `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))`
 * on CPU (PyTorch 1.13, x86-64 with AVX2), so pipelines can start from the same latents as diffusers.
 *
 * What torch does (aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp,
 * core/DistributionsHelper.h, core/TransformationHelper.h, native/cpu/DistributionTemplates.h):
 * - The engine is a 32-bit mt19937 whose state[0] is the low 32 bits of the 64-bit seed.
 *   `random64()` is two draws, the first as the high word.
 * - Uniform [0,1): float takes the low 24 bits of one 32-bit draw × 2^-24; double the low 53 bits of
 *   a 64-bit draw × 2^-53.
 * - Tensors with ≥ 16 elements (contiguous) first fill every element with a uniform, then transform
 *   each 16-block with Box-Muller (u1 = 1 − data[j], u2 = data[j+8], j < 8). A tail that is not a
 *   multiple of 16 re-draws 16 fresh uniforms over the *last* 16 elements and transforms them again.
 *   float32 uses the AVX2 kernel (Cephes-style log/sincos from avx_mathfun.h, float arithmetic);
 *   float64 uses libm log/cos/sin in double.
 * - Smaller tensors draw one element at a time with `normal_distribution<double>`, which produces a
 *   pair and caches the sine half in the generator for the next element (also across calls).
 */
import { InvalidArgumentError } from '@fewstep/tensor';

const N = 624;
const M = 397;

/** 32-bit Mersenne Twister, seeded and advanced exactly like at::mt19937. */
export class MT19937 {
  private state = new Uint32Array(N);
  private left = 1;
  private next = 0;

  constructor(seed: bigint | number) {
    const s = toU64(seed);
    const st = this.state;
    st[0] = Number(s & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = st[j - 1]!;
      st[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
  }

  private twist(): void {
    const st = this.state;
    const mix = (u: number, v: number) => (((u & 0x80000000) | (v & 0x7fffffff)) >>> 1) ^ (v & 1 ? 0x9908b0df : 0);
    let i = 0;
    for (; i < N - M; i++) st[i] = st[i + M]! ^ mix(st[i]!, st[i + 1]!);
    for (; i < N - 1; i++) st[i] = st[i + M - N]! ^ mix(st[i]!, st[i + 1]!);
    st[N - 1] = st[M - 1]! ^ mix(st[N - 1]!, st[0]!);
    this.left = N;
    this.next = 0;
  }

  /** Next 32-bit output as an unsigned number. */
  nextU32(): number {
    if (--this.left === 0) this.twist();
    let y = this.state[this.next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

function toU64(seed: bigint | number): bigint {
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError(`TorchGenerator: seed ${seed} is not a safe integer; pass a bigint`);
    seed = BigInt(seed);
  }
  // torch keeps the seed as uint64 (negative Python ints wrap).
  return BigInt.asUintN(64, seed);
}

const f = Math.fround;
const TWO_M24 = 2 ** -24;
const TWO_M53 = 2 ** -53;

export type RandnDType = 'f32' | 'f64';

/** A torch CPU generator (`torch.Generator('cpu').manual_seed(seed)`), only what randn needs. */
export class TorchGenerator {
  private engine: MT19937;
  /** at::CPUGeneratorImpl::next_double_normal_sample_, the cached second Box-Muller value. */
  private nextDoubleNormal: number | undefined;
  readonly seed: bigint;

  constructor(seed: bigint | number) {
    this.seed = toU64(seed);
    this.engine = new MT19937(this.seed);
  }

  /** `manual_seed`: resets the engine and drops the cached normal sample. */
  manualSeed(seed: bigint | number): this {
    (this as { seed: bigint }).seed = toU64(seed);
    this.engine = new MT19937(this.seed);
    this.nextDoubleNormal = undefined;
    return this;
  }

  private uniformF32(): number {
    return (this.engine.nextU32() & 0xffffff) * TWO_M24;
  }

  private uniformF64(): number {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    // Low 53 bits of (hi << 32 | lo): 21 bits of hi, all of lo.
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * TWO_M53;
  }

  /** at::normal_distribution<double>(0, 1), with the generator-level cache of the sine half. */
  private normalScalar(): number {
    if (this.nextDoubleNormal !== undefined) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = undefined;
      return v;
    }
    const u1 = this.uniformF64();
    const u2 = this.uniformF64();
    const r = Math.sqrt(-2.0 * Math.log1p(-u2));
    const theta = 2.0 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `torch.randn(shape, generator=this, dtype)`; consecutive calls continue the stream like torch. */
  randn(shape: readonly number[], dtype: 'f32'): Float32Array;
  randn(shape: readonly number[], dtype: 'f64'): Float64Array;
  randn(shape: readonly number[]): Float32Array;
  randn(shape: readonly number[], dtype: RandnDType = 'f32'): Float32Array | Float64Array {
    let n = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new InvalidArgumentError(`randn: bad shape ${JSON.stringify(shape)}`);
      n *= d;
    }
    const out = dtype === 'f32' ? new Float32Array(n) : new Float64Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.normalScalar();
      return out;
    }
    if (dtype === 'f32') {
      const data = out as Float32Array;
      for (let i = 0; i < n; i++) data[i] = this.uniformF32();
      for (let i = 0; i + 16 <= n; i += 16) boxMuller16F32(data, i);
      if (n % 16 !== 0) {
        for (let i = n - 16; i < n; i++) data[i] = this.uniformF32();
        boxMuller16F32(data, n - 16);
      }
    } else {
      const data = out as Float64Array;
      for (let i = 0; i < n; i++) data[i] = this.uniformF64();
      for (let i = 0; i + 16 <= n; i += 16) boxMuller16F64(data, i);
      if (n % 16 !== 0) {
        for (let i = n - 16; i < n; i++) data[i] = this.uniformF64();
        boxMuller16F64(data, n - 16);
      }
    }
    return out;
  }
}

/** normal_fill_16<double>: libm in double. */
function boxMuller16F64(d: Float64Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = 1 - d[o + j]!;
    const u2 = d[o + j + 8]!;
    const radius = Math.sqrt(-2 * Math.log(u1));
    const theta = 2.0 * Math.PI * u2;
    d[o + j] = radius * Math.cos(theta);
    d[o + j + 8] = radius * Math.sin(theta);
  }
}

// ---- float32 AVX2 path: avx_mathfun.h log256_ps / sincos256_ps, emulated lane by lane ----

/** Exact float32 fma: a*b is exact in double (24+24 bits); fixes the double-rounding case. */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  // TwoSum error of p + c; if s sits exactly on a float rounding midpoint, nudge it toward the error.
  const bb = s - p;
  const err = (p - (s - bb)) + (c - bb);
  if (err !== 0) {
    const r = f(s);
    if (r !== s) {
      const other = r > s ? nextDownF32(r) : nextUpF32(r);
      if (Math.abs(s - r) === Math.abs(s - other)) {
        // midpoint: the exact value is on the side of err
        return (err > 0) === (r > s) ? r : other;
      }
    }
  }
  return f(s);
}

const cvtBuf = new DataView(new ArrayBuffer(4));
function f32Bits(x: number): number {
  cvtBuf.setFloat32(0, x, true);
  return cvtBuf.getUint32(0, true);
}
function bitsF32(b: number): number {
  cvtBuf.setUint32(0, b >>> 0, true);
  return cvtBuf.getFloat32(0, true);
}
function nextUpF32(x: number): number {
  return x >= 0 ? bitsF32(f32Bits(x) + 1) : bitsF32(f32Bits(x) - 1);
}
function nextDownF32(x: number): number {
  return x > 0 ? bitsF32(f32Bits(x) - 1) : bitsF32(f32Bits(x) + 1);
}

const C = {
  SQRTHF: f(0.707106781186547524),
  lp: [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1].map(f),
  q1: f(-2.12194440e-4),
  q2: f(0.693359375),
  DP1: f(-0.78515625),
  DP2: f(-2.4187564849853515625e-4),
  DP3: f(-3.77489497744594108e-8),
  sin: [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f),
  cos: [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f),
  FOPI: f(1.27323954473516),
  TWO_PI: f(2.0 * Math.PI),
};

/**
 * Which mul+add pairs GCC contracted into FMAs in torch's AVX2 build (the intrinsics are plain
 * vector arithmetic to it). Polynomial steps and the y·z + e·q1 / y·z − z/2 tails are fused; without
 * that ~4% of float32 values are off by an ulp. Verified bit-exact against the golden data.
 */
const AVX_FMA = { poly: true, reduce: true, tail: true } as const;

function madd(a: number, b: number, c: number, fused: boolean): number {
  return fused ? fmaf(a, b, c) : f(f(a * b) + c);
}

/** log256_ps for one positive normal lane (u1 ∈ (0, 1]). */
function logAvx(xIn: number): number {
  let x = Math.max(xIn, 2 ** -126);
  const bits = f32Bits(x);
  let e = f((bits >>> 23) - 127 + 1);
  x = bitsF32((bits & ~0x7f800000) | 0x3f000000);
  const lt = x < C.SQRTHF;
  const tmp = lt ? x : 0;
  x = f(x - 1);
  e = f(e - (lt ? 1 : 0));
  x = f(x + tmp);
  const z = f(x * x);
  const P = AVX_FMA.poly;
  let y = C.lp[0]!;
  for (let k = 1; k < 9; k++) y = madd(y, x, C.lp[k]!, P);
  y = f(y * x);
  // y = y*z + e*q1; y -= z*0.5; x = x + y + e*q2
  const t1 = f(e * C.q1);
  y = AVX_FMA.tail ? fmaf(y, z, t1) : f(f(y * z) + t1);
  y = f(y - f(z * 0.5));
  const xy = f(x + y);
  return AVX_FMA.tail ? fmaf(e, C.q2, xy) : f(xy + f(e * C.q2));
}

/** sincos256_ps for one lane, x ≥ 0. Returns [sin, cos]. */
function sincosAvx(xIn: number): [number, number] {
  let x = Math.abs(xIn);
  let j = Math.trunc(f(x * C.FOPI)) | 0;
  j = (j + 1) & ~1;
  const y0 = j;
  const sinNeg = ((j & 4) !== 0) !== xIn < 0;
  const polyMask = (j & 2) === 0;
  const cosNeg = (~(j - 2) & 4) !== 0;
  const R = AVX_FMA.reduce;
  x = madd(y0, C.DP1, x, R);
  x = madd(y0, C.DP2, x, R);
  x = madd(y0, C.DP3, x, R);
  const z = f(x * x);
  const P = AVX_FMA.poly;
  let y = C.cos[0]!;
  y = madd(y, z, C.cos[1]!, P);
  y = madd(y, z, C.cos[2]!, P);
  y = f(y * z);
  // y*z − z*0.5: the first product is fused (the second is exact anyway).
  y = AVX_FMA.tail ? fmaf(y, z, -f(z * 0.5)) : f(f(y * z) - f(z * 0.5));
  y = f(y + 1);
  let y2 = C.sin[0]!;
  y2 = madd(y2, z, C.sin[1]!, P);
  y2 = madd(y2, z, C.sin[2]!, P);
  y2 = f(y2 * z);
  y2 = madd(y2, x, x, P);
  let s = polyMask ? y2 : y;
  let c = polyMask ? y : y2;
  if (sinNeg) s = -s;
  if (cosNeg) c = -c;
  return [s, c];
}

/** normal_fill_16_AVX2 on data[o .. o+16). */
function boxMuller16F32(d: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - d[o + j]!);
    const u2 = d[o + j + 8]!;
    const radius = f(Math.sqrt(f(-2 * logAvx(u1))));
    const theta = f(C.TWO_PI * u2);
    const [s, c] = sincosAvx(theta);
    d[o + j] = f(radius * c);
    d[o + j + 8] = f(radius * s);
  }
}

/** Convenience: `torch.randn(shape, generator=torch.manual_seed(seed))` as float32. */
export function torchRandn(shape: readonly number[], seed: bigint | number): Float32Array {
  return new TorchGenerator(seed).randn(shape, 'f32');
}

