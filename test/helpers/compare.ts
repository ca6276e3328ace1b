// One tolerance model (|got − ref| ≤ atol + rtol·|ref|) with failure messages that bisect:
// the case string, max abs/rel error, number of failures, and the first mismatches with their index.
import { expect } from 'vitest';

export interface Tol {
  atol: number;
  rtol: number;
}

/** Defaults per dtype: f16 storage rounds to ~1e-3 relative; f32 accumulation stays near 1e-6. */
export const TOL: Record<'f32' | 'f16', Tol> = {
  f32: { atol: 1e-5, rtol: 1e-4 },
  f16: { atol: 2e-3, rtol: 1e-2 },
};

export interface CloseReport {
  maxAbs: number;
  maxRel: number;
  failures: number;
}

export function compareArrays(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tol): CloseReport & { first: string[] } {
  let maxAbs = 0, maxRel = 0, failures = 0;
  let refMax = 0;
  for (let i = 0; i < ref.length; i++) refMax = Math.max(refMax, Math.abs(ref[i]!));
  const first: string[] = [];
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!, r = ref[i]!;
    const d = Math.abs(g - r);
    const bad = !(d <= tol.atol + tol.rtol * Math.abs(r)) || Number.isNaN(g) !== Number.isNaN(r);
    if (Number.isFinite(d)) {
      maxAbs = Math.max(maxAbs, d);
      maxRel = Math.max(maxRel, d / Math.max(refMax, 1e-30));
    }
    if (bad) {
      failures++;
      if (first.length < 5) first.push(`[${i}] got ${g} want ${r} (diff ${d.toExponential(2)})`);
    }
  }
  return { maxAbs, maxRel, failures, first };
}

/** Asserts closeness; `what` names the op and case (e.g. "conv2d(N=2,C=3,H=9,W=7,k=3,f16)"). */
export function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tol, what: string): CloseReport {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const r = compareArrays(got, ref, tol);
  if (r.failures) {
    expect.fail(
      `${what}: ${r.failures}/${ref.length} values outside atol=${tol.atol} rtol=${tol.rtol}; ` +
        `max abs ${r.maxAbs.toExponential(3)}, max rel ${r.maxRel.toExponential(3)}\n  ${r.first.join('\n  ')}`,
    );
  }
  return r;
}

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * u;
  }
  return out;
}
