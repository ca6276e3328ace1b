import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16, type Device } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { cast, concat, permute, slice, upsampleNearest2x } from '@fewstep/kernels';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
import { randArray } from '../helpers/compare';

afterAll(closeDevice);

const dtypes = ['f32', 'f16'] as const;
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
// Data movement is exact: f16 inputs are pre-rounded, then the output must match bit for bit.
const input = (shape: readonly number[], seed: number, dtype: 'f32' | 'f16') => {
  const x = randArray(numel(shape), seed, -4, 4);
  return dtype === 'f16' ? roundToF16(x) : x;
};

async function expectExact(y: Tensor, ref: [Float32Array, number[]], what: string) {
  expect(y.shape, `${what}: shape`).toEqual(ref[1]);
  const got = await y.read();
  let bad = -1;
  for (let i = 0; i < ref[0].length && bad < 0; i++) if (!Object.is(got[i], ref[0][i])) bad = i;
  expect(bad, `${what}: first mismatch at ${bad}: got ${got[bad]} want ${ref[0][bad]}`).toBe(-1);
  expect(got.length, `${what}: length`).toBe(ref[0].length);
}

describe('layout', () => {
  for (const dtype of dtypes) {
    for (const shape of [[2, 3, 5, 7], [1, 1, 1, 1], [1, 4, 3, 9], [2, 3, 5, 8], [1, 2, 1, 4]]) { // W % 4 == 0 takes the vec4 kernel
      it(`upsampleNearest2x ${dtype} ${JSON.stringify(shape)}`, async () => {
        const d: Device = await gpuDevice();
        const x = input(shape, 1, dtype);
        const y = upsampleNearest2x(Tensor.from(d, x, shape, dtype));
        await expectExact(y, cpu.cpuUpsampleNearest2x(x, shape), `upsampleNearest2x(${shape},${dtype})`);
      });
    }

    const concatCases: [number[][], number][] = [
      [[[2, 3, 5, 7], [2, 1, 5, 7], [2, 4, 5, 7]], 1], // 3 inputs, different sizes, odd inner
      [[[2, 4, 4, 4], [2, 8, 4, 4], [2, 4, 4, 4]], 1], // vec4 kernel
      [[[20, 4, 4], [20, 8, 4]], 1], // vec4 kernel, many runs
      [[[17, 3, 5], [17, 2, 5]], 1], // scalar kernel, many runs
      [[[3, 64, 32], [3, 40, 32]], 1], // long runs: a buffer copy per run (f16: mixed with the kernel)
      [[[3], [5], [1]], 0], // ragged f16 byte offsets
      [[[2, 3, 5], [4, 3, 5]], 0], // contiguous: buffer copies
      [[[1, 3, 5, 7], [1, 2, 5, 7]], 1], // N = 1: buffer copies at an offset
      [[[2, 3, 5], [2, 3, 2], [2, 3, 1]], -1], // last axis, negative
      [[[2, 3, 5]], 1], // single input
      [[[2, 0, 5], [2, 3, 5]], 1], // empty input
    ];
    for (const [shapes, axis] of concatCases) {
      it(`concat ${dtype} ${JSON.stringify(shapes)} axis ${axis}`, async () => {
        const d = await gpuDevice();
        const xs = shapes.map((s, i) => input(s, 10 + i, dtype));
        const y = concat(xs.map((x, i) => Tensor.from(d, x, shapes[i]!, dtype)), axis);
        const ax = axis < 0 ? axis + shapes[0]!.length : axis;
        await expectExact(y, cpu.cpuConcat(xs, shapes, ax), `concat(${JSON.stringify(shapes)},${axis},${dtype})`);
      });
    }

    const permCases: [number[], number[]][] = [
      [[2, 3, 5, 7], [0, 2, 3, 1]],
      [[3, 5, 7, 9], [0, 2, 1, 3]],
      [[2, 3, 5, 7], [0, 2, 1, 3]],
      [[1, 5, 1, 3], [0, 2, 3, 1]],
      [[2, 3, 2, 3, 2, 3], [5, 3, 1, 4, 2, 0]],
      [[4, 6], [-1, 0]],
      [[2, 3, 4], [0, 1, 2]], // identity: plain copy
    ];
    for (const [shape, perm] of permCases) {
      it(`permute ${dtype} ${JSON.stringify(shape)} by ${JSON.stringify(perm)}`, async () => {
        const d = await gpuDevice();
        const x = input(shape, 3, dtype);
        const y = permute(Tensor.from(d, x, shape, dtype), perm);
        await expectExact(y, cpu.cpuPermute(x, shape, perm.map((p) => (p < 0 ? p + shape.length : p))), `permute(${shape},${perm},${dtype})`);
      });
    }

    const sliceCases: [number[], number, number, number][] = [
      [[2, 3, 5, 7], -1, 2, 5], // last axis
      [[2, 3, 5, 7], 3, 0, 7],
      [[5, 3, 7], 0, 1, 4], // first axis: one contiguous run
      [[5, 3, 7], 0, 4, 5],
      [[3, 9, 5], 1, -4, -1], // negative bounds
      [[2, 8, 8], 2, 4, 8], // vec4 kernel
      [[2, 9, 256], 1, 3, 8], // long runs: buffer copy per run
      [[2, 3, 5], 1, 2, 2], // empty
    ];
    for (const [shape, axis, s, e] of sliceCases) {
      it(`slice ${dtype} ${JSON.stringify(shape)} axis ${axis} [${s}, ${e})`, async () => {
        const d = await gpuDevice();
        const x = input(shape, 4, dtype);
        const y = slice(Tensor.from(d, x, shape, dtype), axis, s, e);
        const ax = axis < 0 ? axis + shape.length : axis;
        const dim = shape[ax]!;
        await expectExact(y, cpu.cpuSlice(x, shape, ax, s < 0 ? s + dim : s, e < 0 ? e + dim : e), `slice(${shape},${axis},${s},${e},${dtype})`);
      });
    }
  }

  it('concat, slice and permute move i32 bit-exactly', async () => {
    const d = await gpuDevice();
    // Includes bit patterns that are signalling NaNs as f32, so a float path would show.
    const a = Int32Array.from({ length: 15 }, (_, i) => (i === 3 ? 0x7f800001 : i === 4 ? -8388607 : (i * 2654435761) | 0));
    const b = Int32Array.from({ length: 6 }, (_, i) => -i - 1);
    // References run on element indices (exact in f32), then map to the i32 values.
    const idx = (n: number, base = 0) => Float32Array.from({ length: n }, (_, i) => base + i);
    const all = [...a, ...b];
    const [refIdx] = cpu.cpuConcat([idx(15), idx(6, 15)], [[3, 5], [3, 2]], 1);
    const ref = [...refIdx].map((k) => all[k]!);
    const y = concat([Tensor.from(d, a, [3, 5], 'i32'), Tensor.from(d, b, [3, 2], 'i32')], 1);
    expect([...(await y.read())]).toEqual(ref);
    const p = permute(y, [1, 0]);
    expect([...(await p.read())]).toEqual([...cpu.cpuPermute(idx(21), [3, 7], [1, 0])[0]].map((k) => ref[k]!));
    const s = slice(y, 1, 1, 6);
    expect([...(await s.read())]).toEqual([...cpu.cpuSlice(idx(21), [3, 7], 1, 1, 6)[0]].map((k) => ref[k]!));
  });

  it('cast f32 → f16 rounds like torch .half(), overflow to ±inf, NaN kept', async () => {
    const d = await gpuDevice();
    const special = [0, -0, 1, -1, 65504, 65519, 65520, -70000, 1e6, Infinity, -Infinity, NaN, 1e-6, -3e-8, 1e-8, 6.1e-5, 0.1, 1 / 3];
    const x = new Float32Array([...special, ...randArray(1001, 5, -1000, 1000)]);
    const y = cast(Tensor.from(d, x, [x.length]), 'f16');
    expect(y.dtype).toBe('f16');
    const got = await y.read();
    const ref = roundToF16(x);
    for (let i = 0; i < x.length; i++) expect(Object.is(got[i], ref[i]) || (Number.isNaN(got[i]!) && Number.isNaN(ref[i]!)), `cast(${x[i]}) = ${got[i]}, want ${ref[i]}`).toBe(true);
  });

  it('cast f16 → f32 is exact; same dtype copies', async () => {
    const d = await gpuDevice();
    const x = roundToF16(randArray(999, 6, -100, 100));
    const h = Tensor.from(d, x, [27, 37], 'f16');
    const y = cast(h, 'f32');
    expect(y.dtype).toBe('f32');
    expect(y.shape).toEqual([27, 37]);
    expect([...(await y.read())]).toEqual([...x]);
    const c = cast(h, 'f16');
    expect(c.buffer).not.toBe(h.buffer);
    expect([...(await c.read())]).toEqual([...x]);
    const i = cast(Tensor.from(d, [1, 2, 3], [3], 'i32'), 'i32');
    expect([...(await i.read())]).toEqual([1, 2, 3]);
  });

  // Upsampling with W % 4 == 0 and permutes that merge to a batched transpose of dims that are multiples
  // of 4 (NCHW ↔ NHWC) take the chunked kernels on CPU adapters; both kinds forced, several chunks each.
  for (const variant of ['chunked', 'flat'] as const)
    for (const dtype of [...dtypes, 'i32'] as const) {
      it(`${variant} kernels ${dtype}: upsampleNearest2x, permute (transposes)`, async () => {
        const d = await gpuDevice();
        await withKernels(d, { streaming: { variant } }, async () => {
          const inp = (shape: number[], seed: number) => (dtype === 'i32' ? Int32Array.from(randArray(shape.reduce((a, b) => a * b, 1), seed, -1e6, 1e6), Math.round) : input(shape, seed, dtype));
          for (const shape of [[2, 3, 5, 8], [1, 3, 4, 2052], [1, 1, 1, 4]]) {
            const x = inp(shape, 31);
            await expectExact(upsampleNearest2x(Tensor.from(d, x, shape, dtype)), cpu.cpuUpsampleNearest2x(x, shape), `${variant} upsampleNearest2x(${shape},${dtype})`);
          }
          const perms: [number[], number[]][] = [
            [[2, 8, 4, 12], [0, 2, 3, 1]], [[1, 12, 4, 4], [0, 2, 3, 1]], [[2, 4, 12, 8], [0, 3, 1, 2]], [[8, 2052], [1, 0]], [[4, 6], [1, 0]], [[3, 4, 8], [0, 2, 1]],
          ];
          for (const [shape, perm] of perms) {
            const x = inp(shape, 32);
            await expectExact(permute(Tensor.from(d, x, shape, dtype), perm), cpu.cpuPermute(x, shape, perm), `${variant} permute(${shape},${perm},${dtype})`);
          }
        });
      });
    }

  // Lengths that are multiples of 4 take the chunked kernels on CPU adapters (vec4s, 512 per
  // workgroup): 4108 = 2 full chunks and a partial one. Both kinds are forced on any adapter.
  for (const variant of ['chunked', 'flat'] as const) {
    it(`cast f32 ↔ f16, ${variant} kernels, 4108 values with the specials`, async () => {
      const d = await gpuDevice();
      await withKernels(d, { streaming: { variant } }, async () => {
        const special = [0, -0, 1, -1, 65504, 65519, 65520, -70000, 1e6, Infinity, -Infinity, NaN, 1e-6, -3e-8, 1e-8, 6.1e-5, 0.1, 1 / 3, -65520, -65519];
        const x = new Float32Array([...randArray(2000, 7, -1000, 1000), ...special, ...randArray(2088, 8, -7e4, 7e4)]);
        const y = cast(Tensor.from(d, x, [4, 1027]), 'f16');
        const got = await y.read();
        const ref = roundToF16(x);
        for (let i = 0; i < x.length; i++) if (!(Object.is(got[i], ref[i]) || (Number.isNaN(got[i]!) && Number.isNaN(ref[i]!)))) expect(got[i], `cast(${x[i]}) at ${i}`).toBe(ref[i]);
        const back = cast(y, 'f32');
        expect(back.dtype).toBe('f32');
        const b = await back.read();
        for (let i = 0; i < x.length; i++) if (!Object.is(b[i], ref[i]) && !(Number.isNaN(b[i]!) && Number.isNaN(ref[i]!))) expect(b[i], `cast back at ${i}`).toBe(ref[i]);
      });
    });
  }

  it('rejects bad input with messages naming the op and shapes', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, new Float32Array(2 * 3 * 4), [2, 3, 4]);
    const b = Tensor.from(d, new Float32Array(2 * 5 * 5), [2, 5, 5]);
    expect(() => concat([a, b], 1)).toThrow('concat: shapes [2, 3, 4], [2, 5, 5] differ outside axis 1');
    expect(() => concat([a, Tensor.from(d, new Float32Array(8), [2, 4])], 0)).toThrow('concat: shapes [2, 3, 4], [2, 4] differ outside axis 0');
    expect(() => concat([], 0)).toThrow('concat: needs at least one tensor');
    expect(() => concat([a], 3)).toThrow('concat: axis 3 is out of range for shape [2, 3, 4]');
    expect(() => concat([a, Tensor.from(d, new Float32Array(24), [2, 3, 4], 'f16')], 0)).toThrow('concat: dtype mismatch (f32, f16)');
    expect(() => permute(a, [0, 2, 2])).toThrow('permute: [0, 2, 2] is not a permutation of the 3 dims of [2, 3, 4]');
    expect(() => permute(a, [0, 1])).toThrow('permute: [0, 1] is not a permutation of the 3 dims of [2, 3, 4]');
    expect(() => permute(a, [0, 1, 3])).toThrow('permute: [0, 1, 3] is not a permutation of the 3 dims of [2, 3, 4]');
    expect(() => slice(a, 2, 1, 5)).toThrow('slice: [1, 5) is out of range for axis 2 (size 4) of [2, 3, 4]');
    expect(() => slice(a, 0, 2, 1)).toThrow('slice: [2, 1) is out of range for axis 0 (size 2) of [2, 3, 4]');
    expect(() => slice(a, -4, 0, 1)).toThrow('slice: axis -4 is out of range for shape [2, 3, 4]');
    expect(() => upsampleNearest2x(a)).toThrow('upsampleNearest2x: expected x [N, C, H, W], got [2, 3, 4]');
    expect(() => cast(a, 'i32')).toThrow('cast: f32 → i32 of [2, 3, 4] is not supported; only f32 ↔ f16 convert (i32 holds ids)');
    expect(() => cast(Tensor.from(d, [1], [1], 'i32'), 'f16')).toThrow('cast: i32 → f16 of [1] is not supported; only f32 ↔ f16 convert (i32 holds ids)');
  });
});
