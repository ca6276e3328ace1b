import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16 } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { groupNorm, layerNorm, softmax } from '@fewstep/kernels';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
import { TOL, expectClose, randArray } from '../helpers/compare';

afterAll(closeDevice);

const dtypes = ['f32', 'f16'] as const;
const input = (n: number, seed: number, dtype: 'f32' | 'f16', lo = -3, hi = 3) => {
  const x = randArray(n, seed, lo, hi);
  return dtype === 'f16' ? roundToF16(x) : x;
};
const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

describe('groupNorm', () => {
  const cases: [number[], number][] = [
    [[2, 6, 5, 7], 3],
    [[1, 32, 3, 4], 32],
    [[2, 4, 9], 2], // 1-D spatial
    [[3, 4], 2], // no spatial dims
    [[1, 8, 33, 33], 2], // 4·1089 values per group: many strides of one workgroup
  ];
  for (const dtype of dtypes)
    for (const [shape, g] of cases)
      for (const [affine, silu] of [[true, false], [false, false], [true, true], [false, true]] as const) {
        it(`${dtype} ${JSON.stringify(shape)} G=${g} affine=${affine} silu=${silu}`, async () => {
          const d = await gpuDevice();
          const c = shape[1]!;
          // An offset mean (|mean| ≫ std) checks the two-pass variance.
          const x = input(prod(shape), 11, dtype, 4, 6);
          const gm = affine ? input(c, 12, dtype, 0.5, 1.5) : null;
          const bt = affine ? input(c, 13, dtype) : null;
          const y = groupNorm(Tensor.from(d, x, shape, dtype), g, gm && Tensor.from(d, gm, [c], dtype), bt && Tensor.from(d, bt, [c], dtype), 1e-5, { silu });
          expect(y.shape).toEqual(shape);
          const tol = dtype === 'f16' ? { atol: 4e-3, rtol: 1e-2 } : { atol: 2e-5, rtol: 2e-4 };
          expectClose(await y.read(), cpu.cpuGroupNorm(x, shape, g, gm, bt, 1e-5, silu), tol, `groupNorm(${shape},G=${g},${dtype})`);
        });
      }
  it('gamma only, beta only', async () => {
    const d = await gpuDevice();
    const shape = [2, 6, 5];
    const x = randArray(60, 3), gm = randArray(6, 4), bt = randArray(6, 5);
    const xt = Tensor.from(d, x, shape);
    expectClose(await groupNorm(xt, 3, Tensor.from(d, gm, [6]), null, 1e-6).read(), cpu.cpuGroupNorm(x, shape, 3, gm, null, 1e-6), TOL.f32, 'groupNorm gamma only');
    expectClose(await groupNorm(xt, 3, null, Tensor.from(d, bt, [6]), 1e-6).read(), cpu.cpuGroupNorm(x, shape, 3, null, bt, 1e-6), TOL.f32, 'groupNorm beta only');
  });
  it('rejects channels not divisible by groups, naming the shape', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, new Float32Array(2 * 6 * 4), [2, 6, 4]);
    expect(() => groupNorm(x, 4, null, null, 1e-5)).toThrow('groupNorm: 6 channels of x [2, 6, 4] are not divisible by 4 groups');
    expect(() => groupNorm(x, 3, Tensor.from(d, new Float32Array(5), [5]), null, 1e-5)).toThrow('groupNorm: gamma [5]');
  });
});

describe('groupNorm, split path (large groups on GPUs: sliced stats, merge, apply)', () => {
  // [1, 4, 130, 130] with 2 groups: 33,800 values per group = 3 slices of ≤16,384, the last partial.
  const cases: [number[], number][] = [[[2, 6, 5, 7], 3], [[1, 4, 130, 130], 2], [[3, 4], 2]];
  for (const dtype of dtypes)
    for (const [shape, g] of cases)
      for (const [affine, silu] of [[true, true], [false, false]] as const) {
        it(`${dtype} ${JSON.stringify(shape)} G=${g} affine=${affine} silu=${silu}`, async () => {
          const d = await gpuDevice();
          const c = shape[1]!;
          const x = input(prod(shape), 21, dtype, 4, 6); // |mean| ≫ std: the merge must not cancel
          const gm = affine ? input(c, 22, dtype, 0.5, 1.5) : null;
          const bt = affine ? input(c, 23, dtype) : null;
          await withKernels(d, { groupNorm: { split: 'always' } }, async () => {
            const y = groupNorm(Tensor.from(d, x, shape, dtype), g, gm && Tensor.from(d, gm, [c], dtype), bt && Tensor.from(d, bt, [c], dtype), 1e-5, { silu });
            const tol = dtype === 'f16' ? { atol: 4e-3, rtol: 1e-2 } : { atol: 2e-5, rtol: 2e-4 };
            expectClose(await y.read(), cpu.cpuGroupNorm(x, shape, g, gm, bt, 1e-5, silu), tol, `groupNorm split(${shape},G=${g},${dtype})`);
          });
        });
      }
});

// On CPU adapters with a fixed subgroup size, spatial % 4 == 0 (GroupNorm) and d % 4 == 0 (LayerNorm)
// take the chunked kernels (one subgroup per unit, vec4s, one-pass shifted statistics). Both kinds are
// forced here, with |mean| ≫ std inputs, row counts that leave a partial block of 8 rows, and units
// longer than many strides of the lanes.
describe('chunked and flat norm kernels (forced)', () => {
  const gn: [number[], number][] = [[[2, 8, 12, 20], 4], [[1, 32, 4, 4], 32], [[1, 4, 130, 132], 2], [[2, 6, 8], 3]];
  const ln: number[][] = [[13, 320], [77, 1024], [3, 4], [9, 2052], [2, 5, 8]];
  for (const variant of ['chunked', 'flat'] as const)
    for (const dtype of dtypes) {
      it(`${variant} ${dtype}: groupNorm ${gn.map(([s, g]) => `${JSON.stringify(s)}/${g}`).join(' ')}, layerNorm ${ln.map((s) => JSON.stringify(s)).join(' ')}`, async () => {
        const d = await gpuDevice();
        const tol = dtype === 'f16' ? { atol: 4e-3, rtol: 1e-2 } : { atol: 2e-5, rtol: 2e-4 };
        await withKernels(d, { streaming: { variant } }, async () => {
          for (const [shape, g] of gn)
            for (const [affine, silu] of [[true, true], [false, false], [true, false]] as const) {
              const c = shape[1]!;
              const x = input(prod(shape), 41, dtype, 4, 6);
              const gm = affine ? input(c, 42, dtype, 0.5, 1.5) : null;
              const bt = affine ? input(c, 43, dtype) : null;
              const y = groupNorm(Tensor.from(d, x, shape, dtype), g, gm && Tensor.from(d, gm, [c], dtype), bt && Tensor.from(d, bt, [c], dtype), 1e-5, { silu });
              expectClose(await y.read(), cpu.cpuGroupNorm(x, shape, g, gm, bt, 1e-5, silu), tol, `${variant} groupNorm(${shape},G=${g},${dtype},affine=${affine},silu=${silu})`);
            }
          for (const shape of ln)
            for (const affine of [true, false]) {
              const dim = shape[shape.length - 1]!;
              const x = input(prod(shape), 44, dtype, 3, 6);
              const gm = affine ? input(dim, 45, dtype) : null;
              const bt = affine ? input(dim, 46, dtype) : null;
              const y = layerNorm(Tensor.from(d, x, shape, dtype), gm && Tensor.from(d, gm, [dim], dtype), bt && Tensor.from(d, bt, [dim], dtype), 1e-5);
              expectClose(await y.read(), cpu.cpuLayerNorm(x, shape, gm, bt, 1e-5), tol, `${variant} layerNorm(${shape},${dtype},affine=${affine})`);
            }
        });
      });
    }
});

describe('layerNorm', () => {
  for (const dtype of dtypes)
    for (const shape of [[7, 45], [2, 3, 1], [3, 300], [2, 1281]])
      for (const affine of [true, false]) {
        it(`${dtype} ${JSON.stringify(shape)} affine=${affine}`, async () => {
          const d = await gpuDevice();
          const dim = shape[shape.length - 1]!;
          const x = input(prod(shape), 21, dtype, -2, 4);
          const gm = affine ? input(dim, 22, dtype) : null;
          const bt = affine ? input(dim, 23, dtype) : null;
          const y = layerNorm(Tensor.from(d, x, shape, dtype), gm && Tensor.from(d, gm, [dim], dtype), bt && Tensor.from(d, bt, [dim], dtype), 1e-5);
          const tol = dtype === 'f16' ? { atol: 4e-3, rtol: 1e-2 } : { atol: 2e-5, rtol: 2e-4 };
          expectClose(await y.read(), cpu.cpuLayerNorm(x, shape, gm, bt, 1e-5), tol, `layerNorm(${shape},${dtype})`);
        });
      }
  it('rejects a gamma of the wrong length', async () => {
    const d = await gpuDevice();
    expect(() => layerNorm(Tensor.from(d, new Float32Array(14), [2, 7]), Tensor.from(d, new Float32Array(6), [6]), null, 1e-5)).toThrow('layerNorm: gamma [6] does not match 7 features of x [2, 7]');
  });
});

describe('softmax', () => {
  // CPU adapters with a fixed subgroup size take the chunked kernel (8 rows per subgroup); both forced.
  for (const variant of ['chunked', 'flat'] as const)
    for (const dtype of dtypes)
      it(`${variant} ${dtype}: rows of 1, 7, 77, 301 (partial blocks of 8 rows), large spreads`, async () => {
        const d = await gpuDevice();
        await withKernels(d, { streaming: { variant } }, async () => {
          for (const [shape, lo, hi] of [[[5, 1], -3, 3], [[3, 7], -3, 3], [[19, 77], -8, 8], [[2, 5, 301], -5, 5], [[9, 129], -3e4, 3e4], [[2, 1000], 1e4, 1.001e4]] as [number[], number, number][]) {
            const x = input(prod(shape), 51, dtype, lo, hi);
            const got = await softmax(Tensor.from(d, x, shape, dtype)).read();
            expect(got.some(Number.isNaN)).toBe(false);
            const tol = dtype === 'f16' ? { atol: 1e-3, rtol: 1e-2 } : { atol: 1e-6, rtol: 1e-4 };
            expectClose(got, cpu.cpuSoftmax(x, shape), tol, `${variant} softmax(${shape},${dtype})`);
          }
        });
      });
  for (const dtype of dtypes)
    for (const [shape, lo, hi] of [[[5, 1], -3, 3], [[3, 7], -3, 3], [[4, 77], -8, 8], [[2, 3, 301], -5, 5], [[3, 129], -3e4, 3e4], [[2, 1000], 1e4, 1.001e4]] as [number[], number, number][]) {
      it(`${dtype} ${JSON.stringify(shape)} in [${lo}, ${hi}]`, async () => {
        const d = await gpuDevice();
        // f16 cannot hold 3e4 spread finely, but the reference sees the same rounded inputs.
        const x = input(prod(shape), 31, dtype, lo, hi);
        const y = softmax(Tensor.from(d, x, shape, dtype));
        const got = await y.read();
        expect(got.some(Number.isNaN)).toBe(false);
        const tol = dtype === 'f16' ? { atol: 1e-3, rtol: 1e-2 } : { atol: 1e-6, rtol: 1e-4 };
        expectClose(got, cpu.cpuSoftmax(x, shape), tol, `softmax(${shape},${dtype})`);
      });
    }
});
