/**
 * Deterministic random weights for a model's parameter map (`X.describe(config)`), so full-size models can
 * be built without a download (`X.random(config, device)`, `fewstep bench`).
 */
import { UnsupportedError, f32ArrayToF16, shapeStr, type TensorData } from '@fewstep/tensor';
import { WeightsError } from '../errors.js';
import type { TensorSource } from './weights.js';

/** `X.random(config, device, opts)`: the weights' dtype and the seed (default 0). */
export interface RandomWeightsOptions {
  dtype?: 'f32' | 'f16' | undefined;
  seed?: number | undefined;
}

/** FNV-1a of a string, mixed with a seed. */
function hashKey(key: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * Deterministic random weights for a key → shape map (a model's `describe(config)`):
 * each tensor's values depend only on (seed, key), so loading order does not matter.
 * Matrices and kernels are uniform in ±1/sqrt(fan_in) (PyTorch's default init bound); biases use
 * their weight's fan-in; norm weights are 1 ± 0.1 and norm biases ±0.1. Values are realistic in
 * scale, not meaningful: use this for benchmarks and memory tests, not for images.
 */
export class RandomSource implements TensorSource {
  constructor(readonly shapes: ReadonlyMap<string, readonly number[]>, readonly seed = 0, readonly name = `random weights (seed ${seed})`) {}

  keys(): string[] {
    return [...this.shapes.keys()];
  }
  has(key: string): boolean {
    return this.shapes.has(key);
  }
  shape(key: string): number[] {
    const s = this.shapes.get(key);
    if (!s) throw new WeightsError(`${this.name}: missing tensor "${key}"`, this.name, key);
    return [...s];
  }

  async read(key: string, dtype: 'f32' | 'f16'): Promise<TensorData> {
    const shape = this.shape(key);
    const n = shape.reduce((a, b) => a * b, 1);
    const { lo, hi } = this.range(key, shape);
    const out = new Float32Array(n);
    let s = hashKey(key, this.seed);
    for (let i = 0; i < n; i++) {
      // mulberry32
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
    }
    return dtype === 'f16' ? f32ArrayToF16(out) : out;
  }

  private range(key: string, shape: number[]): { lo: number; hi: number } {
    const isNorm = /(^|\.)[^.]*norm[^.]*\.(weight|bias)$/.test(key);
    if (shape.length === 1 && isNorm) return key.endsWith('.weight') ? { lo: 0.9, hi: 1.1 } : { lo: -0.1, hi: 0.1 };
    let fanIn: number;
    if (shape.length >= 2) fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    else {
      const w = this.shapes.get(key.replace(/bias$/, 'weight'));
      if (!w || w.length < 2) throw new UnsupportedError(`${this.name}: cannot pick an init range for "${key}" ${shapeStr(shape)}`);
      fanIn = w.slice(1).reduce((a, b) => a * b, 1);
    }
    const b = 1 / Math.sqrt(fanIn);
    return { lo: -b, hi: b };
  }
}
