import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16, type Device } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { ATTENTION_MAX_HEAD_DIM, attention } from '@fewstep/kernels';
import { attentionMaterialized, fixedSubgroupSize } from '@fewstep/kernels/testing';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
import { expectClose, randArray } from '../helpers/compare';

afterAll(closeDevice);

const input = (n: number, seed: number, dtype: 'f32' | 'f16', lo = -2, hi = 2) => {
  const x = randArray(n, seed, lo, hi);
  return dtype === 'f16' ? roundToF16(x) : x;
};
// Outputs are convex combinations of V (|v| ≤ 2): f16 rounds the result (~1e-3) and the f32 exp2
// path differs from float64 by a few ulps per term.
const TOL = { f32: { atol: 2e-5, rtol: 2e-4 }, f16: { atol: 3e-3, rtol: 1e-2 } };

interface Case { b: number; h: number; lq: number; lk: number; d: number; causal?: boolean; mask?: 'some' | 'all'; scale?: number }
const cases: Case[] = [
  { b: 2, h: 3, lq: 37, lk: 29, d: 5 },
  { b: 1, h: 2, lq: 70, lk: 77, d: 40 }, // cross-attention shape; 70 queries span two blocks
  { b: 1, h: 2, lq: 13, lk: 13, d: 8, causal: true },
  { b: 2, h: 1, lq: 90, lk: 90, d: 16, causal: true }, // causal across query blocks and key tiles
  { b: 2, h: 2, lq: 9, lk: 77, d: 16, mask: 'some' },
  { b: 2, h: 2, lq: 6, lk: 11, d: 4, mask: 'all', causal: true },
  { b: 1, h: 1, lq: 3, lk: 1, d: 2 },
  { b: 1, h: 1, lq: 5, lk: 40, d: 160, scale: 0.05 },
  { b: 1, h: 2, lq: 33, lk: 50, d: 80 },
  { b: 1, h: 1, lq: 37, lk: 45, d: 512 }, // the SD VAE's mid-block attention: GEMM path
  { b: 2, h: 2, lq: 9, lk: 11, d: 300 },
];

const caseName = (c: Case) => `B=${c.b} H=${c.h} Lq=${c.lq} Lk=${c.lk} D=${c.d}${c.causal ? ' causal' : ''}${c.mask ? ` mask=${c.mask}` : ''}`;

async function checkCase(dev: Device, c: Case, dtype: 'f32' | 'f16', label: string): Promise<void> {
  const hd = c.h * c.d;
  const q = input(c.b * c.lq * hd, 1, dtype), k = input(c.b * c.lk * hd, 2, dtype), v = input(c.b * c.lk * hd, 3, dtype);
  let mask: Float32Array | undefined;
  if (c.mask) {
    mask = new Float32Array(c.b * c.lk).fill(1);
    // 'some': batch 0 keeps its first 7 keys, batch 1 every other key; 'all': batch 1 is fully masked.
    for (let j = 0; j < c.lk; j++) {
      if (c.mask === 'some') { mask[j] = j < 7 ? 1 : 0; mask[c.lk + j] = j % 2; }
      else mask[c.lk + j] = 0;
    }
  }
  // The mask comes in f32, and in f16 for f16 inputs.
  const mt = mask && Tensor.from(dev, mask, [c.b, c.lk], dtype);
  const y = attention(Tensor.from(dev, q, [c.b, c.lq, hd], dtype), Tensor.from(dev, k, [c.b, c.lk, hd], dtype), Tensor.from(dev, v, [c.b, c.lk, hd], dtype), c.h, { causal: c.causal, keyMask: mt, scale: c.scale });
  expect(y.shape).toEqual([c.b, c.lq, hd]);
  const got = await y.read();
  expect(got.some(Number.isNaN)).toBe(false);
  const ref = cpu.cpuAttention(q, k, v, c.b, c.lq, c.lk, c.h, c.d, { causal: c.causal, keyMask: mask, scale: c.scale });
  expectClose(got, ref, TOL[dtype], label);
}

describe('attention', () => {
  for (const dtype of ['f32', 'f16'] as const)
    for (const c of cases) {
      it(`${dtype} ${caseName(c)}`, async () => checkCase(await gpuDevice(), c, dtype, `attention(${JSON.stringify(c)},${dtype})`));
    }

  // The adapter picks one flash kernel; run both on every flash case whatever the adapter: the
  // shared-memory kernel (GPUs), and the subgroup kernel (CPU adapters with a fixed subgroup size) at
  // an awkward 3 queries per lane (partial query blocks, partial key blocks of the subgroup size).
  const forced = [
    { name: 'shared-memory kernel', cfg: { variant: 'shared', tq: null } },
    { name: 'subgroup kernel, 3 queries per lane', cfg: { variant: 'subgroup', tq: 3 } },
  ] as const;
  for (const f of forced)
    for (const dtype of ['f32', 'f16'] as const) {
      it(`${f.name} ${dtype}, every case`, async (ctx) => {
        const dev = await gpuDevice();
        if (f.cfg.variant === 'subgroup' && fixedSubgroupSize(dev) === null) ctx.skip();
        await withKernels(dev, { attention: f.cfg }, async () => {
          for (const c of cases.filter((x) => x.d <= ATTENTION_MAX_HEAD_DIM)) await checkCase(dev, c, dtype, `${f.name} ${dtype} ${caseName(c)}`);
        });
      });
    }

  it('large head dims: score blocks split over query chunks agree with one block', async () => {
    const dev = await gpuDevice();
    const [b, h, lq, lk, d] = [1, 2, 23, 19, 288];
    const q = input(b * lq * h * d, 7, 'f32'), k = input(b * lk * h * d, 8, 'f32'), v = input(b * lk * h * d, 9, 'f32');
    const t = (x: Float32Array, l: number) => Tensor.from(dev, x, [b, l, h * d]);
    // 5 query rows of scores per block: 5 chunks, the last one partial.
    const y = attentionMaterialized(t(q, lq), t(k, lk), t(v, lk), h, 0.03, 5 * b * h * lk * 4);
    const ref = cpu.cpuAttention(q, k, v, b, lq, lk, h, d, { scale: 0.03 });
    expectClose(await y.read(), ref, TOL.f32, 'chunked');
    expect(() => attentionMaterialized(t(q, lq), t(k, lk), t(v, lk), h, 0.03, 100)).toThrow('attention: one query row of scores (2×19 f32) exceeds the 100-byte storage binding limit');
    expect(() => attention(t(q, lq), t(k, lk), t(v, lk), h, { causal: true })).toThrow('attention: head dim 288 > 256 supports neither causal nor keyMask');
  });

  it('f32 keyMask with f16 inputs', async () => {
    const dev = await gpuDevice();
    const [b, lq, lk, h, d] = [2, 5, 9, 2, 6];
    const q = input(b * lq * h * d, 4, 'f16'), k = input(b * lk * h * d, 5, 'f16'), v = input(b * lk * h * d, 6, 'f16');
    const mask = Float32Array.from({ length: b * lk }, (_, i) => (i % 3 ? 1 : 0));
    const y = attention(Tensor.from(dev, q, [b, lq, h * d], 'f16'), Tensor.from(dev, k, [b, lk, h * d], 'f16'), Tensor.from(dev, v, [b, lk, h * d], 'f16'), h, { keyMask: Tensor.from(dev, mask, [b, lk]) });
    expectClose(await y.read(), cpu.cpuAttention(q, k, v, b, lq, lk, h, d, { keyMask: mask }), TOL.f16, 'attention f32 mask, f16 q/k/v');
  });

  it('rejects mismatched shapes, naming them', async () => {
    const dev = await gpuDevice();
    const t = (s: number[]) => Tensor.from(dev, new Float32Array(s.reduce((a, b) => a * b, 1)), s);
    expect(() => attention(t([1, 4, 12]), t([1, 5, 12]), t([1, 5, 10]), 2)).toThrow('attention: q/k/v shapes do not match (q [1, 4, 12], k [1, 5, 12], v [1, 5, 10], heads=2)');
    expect(() => attention(t([1, 4, 12]), t([1, 5, 12]), t([1, 5, 12]), 5)).toThrow('attention: H·D = 12 is not divisible by heads (q [1, 4, 12]');
    expect(() => attention(t([1, 4, 12]), t([1, 5, 12]), t([1, 5, 12]), 2, { keyMask: t([1, 4]) })).toThrow('attention: keyMask [1, 4] is not [B, Lk] = [1, 5]');
  });
});
