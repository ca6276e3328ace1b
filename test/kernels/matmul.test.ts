import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16 } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { CPU_SG_TILE, CPU_TILING, GPU_SMALL_TILING, GPU_TILING, linear, matmul } from '@fewstep/kernels';
import { fixedSubgroupSize, matmulNaive } from '@fewstep/kernels/testing';
import type { Device } from '@fewstep/tensor';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
import { expectClose, randArray, type Tol } from '../helpers/compare';

afterAll(closeDevice);

const input = (n: number, seed: number, dtype: 'f32' | 'f16') => {
  const x = randArray(n, seed);
  return dtype === 'f16' ? roundToF16(x) : x;
};
// f32: accumulation-order error grows with K; f16: dominated by rounding the output to half.
const tol = (dtype: 'f32' | 'f16', K: number): Tol =>
  dtype === 'f32' ? { atol: 1e-6 * (K + 10), rtol: 1e-4 } : { atol: 2e-3 + 3e-4 * Math.sqrt(K), rtol: 2e-3 };

interface Case {
  as: number[];
  bs: number[];
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  alpha?: number;
}

const cases: Case[] = [
  { as: [37, 45], bs: [45, 29] },
  { as: [45, 37], bs: [45, 29], transA: true },
  { as: [37, 45], bs: [29, 45], transB: true, bias: true },
  { as: [45, 37], bs: [29, 45], transA: true, transB: true, alpha: 0.5 },
  // Several tiles in M and N, several K steps, none a multiple of the tile.
  { as: [131, 70], bs: [70, 67], bias: true, alpha: -1.5 },
  { as: [1, 1], bs: [1, 1] },
  { as: [2, 3, 37, 45], bs: [2, 3, 45, 29] },
  { as: [2, 3, 45, 37], bs: [2, 3, 29, 45], transA: true, transB: true, bias: true },
  { as: [3, 37, 45], bs: [45, 29], bias: true, alpha: 0.25 }, // 2-D b broadcast over the batch
  { as: [2, 70, 33], bs: [65, 33], transB: true, bias: true }, // linear-style
];

type GemmVariant = 'tiled' | 'naive';
const variants: GemmVariant[] = ['tiled', 'naive'];

const caseName = (c: Case) =>
  `a${JSON.stringify(c.as)}${c.transA ? 'ᵀ' : ''} b${JSON.stringify(c.bs)}${c.transB ? 'ᵀ' : ''}${c.bias ? ' +bias' : ''}${c.alpha !== undefined ? ` α=${c.alpha}` : ''}`;

async function checkCase(d: Device, c: Case, dtype: 'f32' | 'f16', variant: GemmVariant, name: string): Promise<void> {
  const na = c.as.reduce((x, y) => x * y, 1), nb = c.bs.reduce((x, y) => x * y, 1);
  const N = c.transB ? c.bs[c.bs.length - 2]! : c.bs[c.bs.length - 1]!;
  const K = c.transA ? c.as[c.as.length - 2]! : c.as[c.as.length - 1]!;
  const a = input(na, 11, dtype), b = input(nb, 12, dtype), bias = c.bias ? input(N, 13, dtype) : undefined;
  const ta = Tensor.from(d, a, c.as, dtype), tb = Tensor.from(d, b, c.bs, dtype);
  const tbias = bias ? Tensor.from(d, bias, [N], dtype) : undefined;
  const y = (variant === 'naive' ? matmulNaive : matmul)(ta, tb, { transA: c.transA, transB: c.transB, bias: tbias, alpha: c.alpha });
  const [ref, shape] = cpu.cpuMatmul(a, c.as, b, c.bs, { transA: c.transA, transB: c.transB, bias, alpha: c.alpha });
  expect(y.shape).toEqual(shape);
  expectClose(await y.read(), ref, tol(dtype, K), `matmul ${name}`);
  for (const t of [ta, tb, tbias, y]) t?.dispose();
}

describe('matmul', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    for (const variant of variants) {
      for (const c of cases) {
        const name = `${variant} ${dtype} ${caseName(c)}`;
        it(name, async () => checkCase(await gpuDevice(), c, dtype, variant, name));
      }
    }
  }

  // The subgroup GEMM (the default on CPU adapters with a fixed subgroup size) on every case, whatever
  // the adapter: its default tile and an awkward one (5 rows, 3 columns per lane) for tails everywhere.
  for (const tile of [CPU_SG_TILE, { R: 5, C: 3 }]) {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`subgroup tile ${JSON.stringify(tile)} ${dtype}, every case`, async (ctx) => {
        const d = await gpuDevice();
        if (fixedSubgroupSize(d) === null) ctx.skip();
        await withKernels(d, { gemm: { sg: tile } }, async () => {
          for (const c of cases) await checkCase(d, c, dtype, 'tiled', `subgroup ${JSON.stringify(tile)} ${dtype} ${caseName(c)}`);
        });
      });
    }
  }

  // Split-K (real GPUs, few tiles and long K): forced with the GPU tiling on every case, 3 and 5 chunks
  // (chunks of a BK multiple, the last one short; cases with K < chunks·BK take fewer).
  for (const splitK of [3, 5]) {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`split-K ×${splitK} ${dtype}, every case`, async () => {
        const d = await gpuDevice();
        await withKernels(d, { gemm: { tiling: GPU_SMALL_TILING, splitK } }, async () => {
          for (const c of cases) await checkCase(d, c, dtype, 'tiled', `split-K ${splitK} ${dtype} ${caseName(c)}`);
        });
      });
    }
  }

  // The default tiling differs per adapter; check both tilings on one awkward shape whatever the adapter.
  for (const tiling of [GPU_TILING, GPU_SMALL_TILING, CPU_TILING, { TX: 8, TY: 4, TM: 4, TN: 8, BK: 8 }]) {
    it(`tiling ${JSON.stringify(tiling)}`, async () => {
      const d = await gpuDevice();
      const a = input(131 * 70, 21, 'f32'), b = input(70 * 67, 22, 'f32');
      await withKernels(d, { gemm: { tiling } }, async () => {
        const y = matmul(Tensor.from(d, a, [131, 70]), Tensor.from(d, b, [70, 67]));
        expectClose(await y.read(), cpu.cpuMatmul(a, [131, 70], b, [70, 67])[0], tol('f32', 70), `matmul tiling ${JSON.stringify(tiling)}`);
      });
    });
  }

  it('linear = x·Wᵀ + b', async () => {
    const d = await gpuDevice();
    const x = input(5 * 24, 31, 'f32'), w = input(10 * 24, 32, 'f32'), bias = input(10, 33, 'f32');
    const y = linear(Tensor.from(d, x, [5, 24]), Tensor.from(d, w, [10, 24]), Tensor.from(d, bias, [10]));
    expectClose(await y.read(), cpu.cpuMatmul(x, [5, 24], w, [10, 24], { transB: true, bias })[0], tol('f32', 24), 'linear');
  });

  it('rejects bad shapes, naming them', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, new Float32Array(6), [2, 3]);
    const b = Tensor.from(d, new Float32Array(8), [4, 2]);
    expect(() => matmul(a, b)).toThrow('matmul: inner dims differ (K=3 vs 4): a [2, 3] × b [4, 2]');
    const b3 = Tensor.from(d, new Float32Array(2 * 3 * 2), [2, 3, 2]);
    const a3 = Tensor.from(d, new Float32Array(3 * 2 * 3), [3, 2, 3]);
    expect(() => matmul(a3, b3)).toThrow(/batch dims.*\[3, 2, 3\].*\[2, 3, 2\]/);
    expect(() => matmul(a, Tensor.from(d, new Float32Array(6), [3, 2]), { bias: Tensor.from(d, new Float32Array(3), [3]) })).toThrow(/bias \[3\] must be \[2\]/);
  });
});
