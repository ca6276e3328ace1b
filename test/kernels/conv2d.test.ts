import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, cpu, roundToF16 } from '@fewstep/tensor';
import { conv2d, type GemmVariant } from '@fewstep/kernels';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose, randArray, type Tol } from '../helpers/compare';

afterAll(closeDevice);

const input = (n: number, seed: number, dtype: 'f32' | 'f16') => {
  const x = randArray(n, seed);
  return dtype === 'f16' ? roundToF16(x) : x;
};
const tol = (dtype: 'f32' | 'f16', K: number): Tol =>
  dtype === 'f32' ? { atol: 1e-6 * (K + 10), rtol: 1e-4 } : { atol: 2e-3 + 3e-4 * Math.sqrt(K), rtol: 2e-3 };

interface Case {
  x: [number, number, number, number];
  o: number;
  k: number;
  stride?: number;
  padding?: number;
  bias?: boolean;
}

const cases: Case[] = [
  { x: [1, 3, 9, 7], o: 5, k: 3, padding: 1, bias: true },
  { x: [1, 3, 9, 7], o: 5, k: 3, stride: 2, padding: 1, bias: true },
  { x: [1, 3, 8, 10], o: 5, k: 3, stride: 2, padding: 1 },
  { x: [1, 3, 9, 7], o: 5, k: 1, bias: true },
  { x: [2, 3, 9, 7], o: 5, k: 3, padding: 1 },
  { x: [1, 3, 9, 7], o: 5, k: 4, stride: 2, padding: 1, bias: true },
  { x: [1, 4, 6, 5], o: 3, k: 3 }, // no padding: output shrinks
  // Several tiles in M (N·H'·W' = 442) and N (O = 70), K = 144 over several K steps.
  { x: [2, 16, 17, 13], o: 70, k: 3, padding: 1, bias: true },
];

describe('conv2d', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    for (const variant of ['tiled', 'naive'] as GemmVariant[]) {
      for (const c of cases) {
        const name = `${variant} ${dtype} x${JSON.stringify(c.x)} O=${c.o} k=${c.k} s=${c.stride ?? 1} p=${c.padding ?? 0}${c.bias ? ' +bias' : ''}`;
        it(name, async () => {
          const d = await gpuDevice();
          const ws = [c.o, c.x[1], c.k, c.k];
          const nx = c.x.reduce((a, b) => a * b, 1), nw = ws.reduce((a, b) => a * b, 1);
          const x = input(nx, 41, dtype), w = input(nw, 42, dtype), bias = c.bias ? input(c.o, 43, dtype) : undefined;
          const tx = Tensor.from(d, x, c.x, dtype), tw = Tensor.from(d, w, ws, dtype);
          const tb = bias ? Tensor.from(d, bias, [c.o], dtype) : undefined;
          const y = conv2d(tx, tw, { stride: c.stride, padding: c.padding, bias: tb, variant });
          const [ref, shape] = cpu.cpuConv2d(x, c.x, w, ws, { stride: c.stride, padding: c.padding, bias });
          expect(y.shape).toEqual(shape);
          expectClose(await y.read(), ref, tol(dtype, c.x[1] * c.k * c.k), `conv2d ${name}`);
          for (const t of [tx, tw, tb, y]) t?.dispose();
        });
      }
    }
  }

  it('rejects a channel mismatch, naming both shapes', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, new Float32Array(1 * 3 * 4 * 4), [1, 3, 4, 4]);
    const w = Tensor.from(d, new Float32Array(2 * 4 * 3 * 3), [2, 4, 3, 3]);
    expect(() => conv2d(x, w, { padding: 1 })).toThrow('conv2d: input has 3 channels but the weight expects 4: x [1, 3, 4, 4] ⊛ w [2, 4, 3, 3]');
  });
});
