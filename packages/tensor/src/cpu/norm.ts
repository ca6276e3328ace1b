// CPU references for the norm family: float64 loops, two-pass mean/variance (biased, as PyTorch).
import type { Shape } from '../tensor.js';

const silu = (v: number) => v / (1 + Math.exp(-v));

/** GroupNorm over x [N, C, ...spatial]; gamma/beta [C] or null; optional SiLU after the affine. */
export function cpuGroupNorm(x: ArrayLike<number>, shape: Shape, groups: number, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null, eps: number, fuseSilu = false): Float32Array {
  const [n, c] = shape as [number, number];
  const spatial = x.length / (n * c);
  const cpg = c / groups;
  const count = cpg * spatial;
  const y = new Float32Array(x.length);
  for (let u = 0; u < n * groups; u++) {
    const base = u * count;
    let s = 0;
    for (let i = 0; i < count; i++) s += x[base + i]!;
    const mean = s / count;
    let q = 0;
    for (let i = 0; i < count; i++) q += (x[base + i]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / count + eps);
    for (let i = 0; i < count; i++) {
      const ch = (u % groups) * cpg + Math.floor(i / spatial);
      let v = (x[base + i]! - mean) * rstd;
      if (gamma) v *= gamma[ch]!;
      if (beta) v += beta[ch]!;
      y[base + i] = fuseSilu ? silu(v) : v;
    }
  }
  return y;
}

/** LayerNorm over the last dim; gamma/beta [D] or null. */
export function cpuLayerNorm(x: ArrayLike<number>, shape: Shape, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null, eps: number): Float32Array {
  const d = shape[shape.length - 1]!;
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[r * d + i]!;
    const mean = s / d;
    let q = 0;
    for (let i = 0; i < d; i++) q += (x[r * d + i]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / d + eps);
    for (let i = 0; i < d; i++) {
      let v = (x[r * d + i]! - mean) * rstd;
      if (gamma) v *= gamma[i]!;
      if (beta) v += beta[i]!;
      y[r * d + i] = v;
    }
  }
  return y;
}

/** Softmax over the last dim (max-subtracted). */
export function cpuSoftmax(x: ArrayLike<number>, shape: Shape): Float32Array {
  const d = shape[shape.length - 1]!;
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let m = -Infinity;
    for (let i = 0; i < d; i++) m = Math.max(m, x[r * d + i]!);
    let s = 0;
    for (let i = 0; i < d; i++) s += Math.exp(x[r * d + i]! - m);
    for (let i = 0; i < d; i++) y[r * d + i] = Math.exp(x[r * d + i]! - m) / s;
  }
  return y;
}
