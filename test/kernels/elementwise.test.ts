import { afterAll, describe, it } from 'vitest';
import { Tensor, roundToF16, type Device } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { add, binary, geglu, unary, type UnaryOp } from '@fewstep/kernels';
import { gpuDevice, closeDevice } from '../helpers/gpu';
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
  it('add rejects shapes that do not broadcast, naming both', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, new Float32Array(6), [2, 3]);
    const b = Tensor.from(d, new Float32Array(4), [4]);
    const { expect } = await import('vitest');
    expect(() => add(a, b)).toThrow('add: shapes [2, 3] and [4] do not broadcast');
  });
});
