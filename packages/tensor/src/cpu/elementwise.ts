// CPU references for the elementwise family: plain loops in float64, obviously correct.
import type { Shape } from '../tensor.js';
import { InvalidArgumentError } from '../errors.js';

/** Exact erf (float64) via the complementary error function's continued fraction / series. */
export function erf(x: number): number {
  // Abramowitz-Stegun is too coarse for a reference; use the series for |x|<3 and asymptotics beyond.
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let sum = a, term = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction (Lentz), accurate for a ≥ 3.
    let f = a, C = a, D = 0;
    for (let n = 1; n < 100; n++) {
      const an = n / 2;
      D = a + an * D; D = 1 / D;
      C = a + an / C;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-a * a) / (f * Math.sqrt(Math.PI));
  }
  return x < 0 ? -r : r;
}

export const refSilu = (x: number) => x / (1 + Math.exp(-x));
export const refGelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
export const refGeluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
export const refQuickGelu = (x: number) => x / (1 + Math.exp(-1.702 * x));

export function cpuUnary(op: string, x: ArrayLike<number>, alpha = 1, beta = 0): Float32Array {
  const f: (v: number) => number =
    op === 'scale' ? (v) => v * alpha + beta
    : op === 'silu' ? refSilu
    : op === 'gelu' ? refGelu
    : op === 'gelu_tanh' ? refGeluTanh
    : op === 'quick_gelu' ? refQuickGelu
    : op === 'tanh' ? Math.tanh
    : op === 'relu' ? (v) => Math.max(v, 0)
    : (() => { throw new InvalidArgumentError(`cpuUnary: unknown op ${op}`, 'op'); })();
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = f(x[i]!);
  return y;
}

/** numpy-broadcast binary op. Returns [values, shape]. */
export function cpuBinary(op: 'add' | 'mul' | 'div', a: ArrayLike<number>, as: Shape, b: ArrayLike<number>, bs: Shape, alpha = 1): [Float32Array, number[]] {
  const r = Math.max(as.length, bs.length);
  const pa = [...new Array(r - as.length).fill(1), ...as];
  const pb = [...new Array(r - bs.length).fill(1), ...bs];
  const out = pa.map((d, i) => Math.max(d, pb[i]!));
  const n = out.reduce((x, y) => x * y, 1);
  const y = new Float32Array(n);
  const idx = new Array<number>(r).fill(0);
  for (let i = 0; i < n; i++) {
    let rem = i;
    for (let k = r - 1; k >= 0; k--) {
      idx[k] = rem % out[k]!;
      rem = Math.floor(rem / out[k]!);
    }
    let ia = 0, ib = 0;
    for (let k = 0; k < r; k++) {
      ia = ia * pa[k]! + (pa[k] === 1 ? 0 : idx[k]!);
      ib = ib * pb[k]! + (pb[k] === 1 ? 0 : idx[k]!);
    }
    const x = a[ia]!, z = b[ib]!;
    y[i] = op === 'add' ? x + alpha * z : op === 'mul' ? x * z : x / z;
  }
  return [y, out];
}

export function cpuGeglu(x: ArrayLike<number>, shape: Shape): Float32Array {
  const last = shape[shape.length - 1]!;
  const half = last / 2;
  const rows = x.length / last;
  const y = new Float32Array(rows * half);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < half; c++) y[r * half + c] = x[r * last + c]! * refGelu(x[r * last + half + c]!);
  return y;
}
