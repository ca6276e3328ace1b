import { afterAll, describe, it } from 'vitest';
import { Tensor, roundToF16, type Device } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { add, binary, geglu, unary, type UnaryOp } from '@fewstep/kernels';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
import { TOL, expectClose, randArray } from '../helpers/compare';

afterAll(closeDevice);

const dtypes = ['f32', 'f16'] as const;
// f16 inputs are rounded to half first so the reference sees what the GPU sees.
const input = (n: number, seed: number, dtype: 'f32' | 'f16', lo = -4, hi = 4) => {
  const x = randArray(n, seed, lo, hi);
  return dtype === 'f16' ? roundToF16(x) : x;
};

describe('elementwise', () => {
  for (const dtype of dtypes) {
    for (const op of ['scale', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'tanh', 'relu'] as UnaryOp[]) {
      it(`unary.${op} ${dtype}`, async () => {
        const d: Device = await gpuDevice();
        const n = op === 'scale' ? 70_001 : 1_003;
        const x = input(n, 7, dtype, -6, 6);
        const t = Tensor.from(d, x, [n], dtype);
        const y = unary(op, t, 0.5, 0.25);
        expectClose(await y.read(), cpu.cpuUnary(op, x, 0.5, 0.25), TOL[dtype], `unary.${op}(n=${n},${dtype})`);
        t.dispose();
        y.dispose();
      });
    }
    for (const [as, bs] of [
      [[2, 3, 5, 7], [2, 3, 5, 7]],
      [[2, 3, 5, 7], [3, 1, 1]],
      [[2, 3, 5, 7], [2, 3, 1, 1]],
      [[1, 5, 1], [4, 1, 3]],
      [[3, 77, 33], [33]],
    ] as number[][][]) {
      for (const op of ['add', 'mul', 'div'] as const) {
        it(`${op} ${dtype} ${JSON.stringify(as)} ⊕ ${JSON.stringify(bs)}`, async () => {
          const d = await gpuDevice();
          const na = as.reduce((x, y) => x * y, 1), nb = bs.reduce((x, y) => x * y, 1);
          const a = input(na, 1, dtype), b = op === 'div' ? input(nb, 2, dtype, 0.5, 2) : input(nb, 2, dtype);
          const y = binary(op, Tensor.from(d, a, as, dtype), Tensor.from(d, b, bs, dtype), op === 'add' ? -0.5 : 1);
          const [ref, shape] = cpu.cpuBinary(op, a, as, b, bs, op === 'add' ? -0.5 : 1);
          if (JSON.stringify(y.shape) !== JSON.stringify(shape)) throw new Error(`shape ${y.shape} != ${shape}`);
          expectClose(await y.read(), ref, TOL[dtype], `${op}(${as}|${bs},${dtype})`);
        });
      }
    }
    it(`geglu ${dtype} [2, 37, 2*45]`, async () => {
      const d = await gpuDevice();
      const shape = [2, 37, 90];
      const x = input(2 * 37 * 90, 3, dtype);
      const y = geglu(Tensor.from(d, x, shape, dtype));
      expectClose(await y.read(), cpu.cpuGeglu(x, shape), TOL[dtype], `geglu(${shape},${dtype})`);
    });
  }
  // Shapes whose sizes are multiples of 4 take the chunked kernels on CPU adapters (vec4s, 512 per
  // workgroup; broadcasts that collapse to rows × inner with inner % 4 == 0). Both kinds are forced
  // here: 4108 values = 2 full chunks and a partial one; rows of 2052 = 2 chunks per row.
  for (const variant of ['chunked', 'flat'] as const)
    for (const dtype of dtypes) {
      it(`${variant} kernels ${dtype}: unary ops, broadcasts, geglu`, async () => {
        const d: Device = await gpuDevice();
        await withKernels(d, { streaming: { variant } }, async () => {
          for (const op of ['scale', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'tanh', 'relu'] as UnaryOp[]) {
            const x = input(4108, 17, dtype, -6, 6);
            expectClose(await unary(op, Tensor.from(d, x, [4108], dtype), 0.5, 0.25).read(), cpu.cpuUnary(op, x, 0.5, 0.25), TOL[dtype], `${variant} unary.${op}(${dtype})`);
          }
          const cases: [number[], number[]][] = [
            [[4108], [4108]], [[2, 6, 8, 12], [2, 6, 1, 1]], [[2, 6, 8, 12], [6, 1, 1]], [[5, 2052], [2052]], [[3, 1], [3, 2052]],
            [[5, 1, 8], [1, 3, 8]], [[4], [1]], [[2, 3, 4], [2, 3, 1]],
          ];
          for (const op of ['add', 'mul', 'div'] as const)
            for (const [as, bs] of cases) {
              const a = input(as.reduce((p, q) => p * q, 1), 18, dtype, 0.5, 4);
              const b = input(bs.reduce((p, q) => p * q, 1), 19, dtype, 0.5, 4);
              const y = binary(op, Tensor.from(d, a, as, dtype), Tensor.from(d, b, bs, dtype), op === 'add' ? -0.5 : 1);
              const [ref, shape] = cpu.cpuBinary(op, a, as, b, bs, op === 'add' ? -0.5 : 1);
              if (JSON.stringify(y.shape) !== JSON.stringify(shape)) throw new Error(`shape ${y.shape} != ${shape}`);
              expectClose(await y.read(), ref, TOL[dtype], `${variant} ${op}(${as} ⊕ ${bs},${dtype})`);
            }
          const shape = [3, 2, 2 * 2056];
          const x = input(3 * 2 * 2 * 2056, 20, dtype);
          expectClose(await geglu(Tensor.from(d, x, shape, dtype)).read(), cpu.cpuGeglu(x, shape), TOL[dtype], `${variant} geglu(${shape},${dtype})`);
        });
      });
    }

  it('add rejects shapes that do not broadcast, naming both', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, new Float32Array(6), [2, 3]);
    const b = Tensor.from(d, new Float32Array(4), [4]);
    const { expect } = await import('vitest');
    expect(() => add(a, b)).toThrow('add: shapes [2, 3] and [4] do not broadcast');
  });
});
