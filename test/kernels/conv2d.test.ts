import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16 } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { CPU_SG_TILE, CPU_TILING, GPU_SMALL_TILING, GPU_TILING, conv2d, type GemmTiling, type SgTile } from '@fewstep/kernels';
import { conv2dDirect, conv2dPath, fixedSubgroupSize, isCpuAdapter } from '@fewstep/kernels/testing';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { withKernels } from './kernel_settings';
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
    for (const variant of ['tiled', 'naive'] as const) {
      for (const c of cases) {
        const name = `${variant} ${dtype} x${JSON.stringify(c.x)} O=${c.o} k=${c.k} s=${c.stride ?? 1} p=${c.padding ?? 0}${c.bias ? ' +bias' : ''}`;
        it(name, async () => {
          const d = await gpuDevice();
          const ws = [c.o, c.x[1], c.k, c.k];
          const nx = c.x.reduce((a, b) => a * b, 1), nw = ws.reduce((a, b) => a * b, 1);
          const x = input(nx, 41, dtype), w = input(nw, 42, dtype), bias = c.bias ? input(c.o, 43, dtype) : undefined;
          const tx = Tensor.from(d, x, c.x, dtype), tw = Tensor.from(d, w, ws, dtype);
          const tb = bias ? Tensor.from(d, bias, [c.o], dtype) : undefined;
          const y = (variant === 'naive' ? conv2dDirect : conv2d)(tx, tw, { stride: c.stride, padding: c.padding, bias: tb });
          const [ref, shape] = cpu.cpuConv2d(x, c.x, w, ws, { stride: c.stride, padding: c.padding, bias });
          expect(y.shape).toEqual(shape);
          expectClose(await y.read(), ref, tol(dtype, c.x[1] * c.k * c.k), `conv2d ${name}`);
          for (const t of [tx, tw, tb, y]) t?.dispose();
        });
      }
    }
  }

  // The default tiling differs per adapter: check each shared-memory tiling (each uses the per-thread-row
  // a4 loader), one where the a4 walk does not fit (4·TX % TM ≠ 0: the generic loader), and the subgroup
  // GEMM (CPU adapters with a fixed subgroup size) with its default tile and an awkward one, on an
  // awkward shape.
  const tilings: (GemmTiling | SgTile)[] = [GPU_TILING, GPU_SMALL_TILING, CPU_TILING, { TX: 1, TY: 16, TM: 8, TN: 4, BK: 8 }, CPU_SG_TILE, { R: 5, C: 3 }];
  for (const tiling of tilings) {
    const sg = 'R' in tiling;
    for (const stride of [1, 2]) {
      it(`${sg ? 'subgroup tile' : 'tiling'} ${JSON.stringify(tiling)} stride ${stride}`, async (ctx) => {
        const d = await gpuDevice();
        if (sg && fixedSubgroupSize(d) === null) ctx.skip();
        const xs: [number, number, number, number] = [2, 16, 17, 13], ws = [70, 16, 3, 3];
        const x = input(2 * 16 * 17 * 13, 51, 'f32'), w = input(70 * 16 * 9, 52, 'f32'), bias = input(70, 53, 'f32');
        await withKernels(d, { gemm: sg ? { sg: tiling } : { tiling }, conv: { winograd: 'off' } }, async () => {
          const y = conv2d(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { stride, padding: 1, bias: Tensor.from(d, bias, [70]) });
          const [ref] = cpu.cpuConv2d(x, xs, w, ws, { stride, padding: 1, bias });
          expectClose(await y.read(), ref, tol('f32', 16 * 9), `conv2d tiling ${JSON.stringify(tiling)} stride ${stride}`);
        });
      });
    }
  }

  // Fused ReLU: max(conv + bias, 0) from every kernel variant (default, shared-memory tiling, split-K, naive).
  it('relu: fused after the bias in every variant', async () => {
    const d = await gpuDevice();
    const xs: [number, number, number, number] = [1, 5, 11, 9], ws = [7, 5, 3, 3];
    const x = input(5 * 11 * 9, 71, 'f32'), w = input(7 * 5 * 9, 72, 'f32'), bias = input(7, 73, 'f32');
    const [ref] = cpu.cpuConv2d(x, xs, w, ws, { padding: 1, bias });
    const want = ref.map((v) => Math.max(v, 0));
    expect(ref.some((v) => v < 0)).toBe(true); // the ReLU has something to clamp
    const variants = [['default', {}, {}], ['implicit GEMM', {}, { winograd: 'off' }], ['gpu tiling', { tiling: GPU_TILING }, { winograd: 'off' }], ['split-K', { tiling: GPU_TILING, splitK: 3 }, { winograd: 'off' }],
      ['winograd F(2×2)', {}, { winograd: 2 }], ['winograd F(4×4)', {}, { winograd: 4 }]] as const;
    for (const [name, gemm, conv] of variants) {
      await withKernels(d, { gemm, conv }, async () => {
        const y = conv2d(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { padding: 1, bias: Tensor.from(d, bias, [7]), relu: true });
        expectClose(await y.read(), want, tol('f32', 45), `conv2d relu ${name}`);
      });
    }
    const yn = conv2dDirect(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { padding: 1, bias: Tensor.from(d, bias, [7]), relu: true });
    expectClose(await yn.read(), want, tol('f32', 45), 'conv2d relu naive');
  });

  // Split-K through conv's gather (K = 16·9 = 144 → chunks of 48 and 32): partial sums reduced, then bias.
  for (const splitK of [3, 5]) {
    it(`split-K ×${splitK} with the GPU tiling, stride 1 and 2, bias`, async () => {
      const d = await gpuDevice();
      const xs: [number, number, number, number] = [2, 16, 17, 13], ws = [70, 16, 3, 3];
      const x = input(2 * 16 * 17 * 13, 61, 'f32'), w = input(70 * 16 * 9, 62, 'f32'), bias = input(70, 63, 'f32');
      await withKernels(d, { gemm: { tiling: GPU_TILING, splitK }, conv: { winograd: 'off' } }, async () => {
        for (const stride of [1, 2]) {
          const y = conv2d(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { stride, padding: 1, bias: Tensor.from(d, bias, [70]) });
          const [ref] = cpu.cpuConv2d(x, xs, w, ws, { stride, padding: 1, bias });
          expectClose(await y.read(), ref, tol('f32', 16 * 9), `conv2d split-K ${splitK} stride ${stride}`);
        }
      });
    });
  }

  // Every case under the awkward subgroup tile (kernel sizes 1 and 4, no padding, batch 2).
  it('subgroup tile {"R":5,"C":3}, every case', async (ctx) => {
    const d = await gpuDevice();
    if (fixedSubgroupSize(d) === null) ctx.skip();
    await withKernels(d, { gemm: { sg: { R: 5, C: 3 } }, conv: { winograd: 'off' } }, async () => {
      for (const c of cases) {
        const ws = [c.o, c.x[1], c.k, c.k];
        const x = input(c.x.reduce((a, b) => a * b, 1), 41, 'f32'), w = input(ws.reduce((a, b) => a * b, 1), 42, 'f32'), bias = c.bias ? input(c.o, 43, 'f32') : undefined;
        const y = conv2d(Tensor.from(d, x, c.x), Tensor.from(d, w, ws), { stride: c.stride, padding: c.padding, bias: bias && Tensor.from(d, bias, [c.o]) });
        const [ref] = cpu.cpuConv2d(x, c.x, w, ws, { stride: c.stride, padding: c.padding, bias });
        expectClose(await y.read(), ref, tol('f32', c.x[1] * c.k * c.k), `conv2d subgroup {R:5,C:3} ${JSON.stringify(c)}`);
      }
    });
  });

  // Winograd F(2×2, 3×3) and F(4×4, 3×3) (the default for 3×3 stride-1 convs on CPU adapters): every
  // 3×3 stride-1 case, plus output sizes that leave partial tiles at the right and bottom edges,
  // padding 0 and 2, one channel, batch 3 with tiles split over several chunks (chunk boundaries inside
  // an image and between images), output channels in chunks.
  const winoCases: (Case & { chunk?: number; chunkO?: number })[] = [
    ...cases.filter((c) => c.k === 3 && (c.stride ?? 1) === 1),
    { x: [1, 1, 5, 3], o: 1, k: 3, padding: 1, bias: true },
    { x: [1, 7, 13, 11], o: 9, k: 3, padding: 2 },
    { x: [3, 6, 10, 9], o: 11, k: 3, padding: 1, bias: true, chunk: 5 },
    { x: [1, 64, 24, 20], o: 64, k: 3, padding: 1, bias: true, chunk: 7 },
    { x: [2, 5, 11, 10], o: 13, k: 3, padding: 1, bias: true, chunk: 4, chunkO: 5 }, // output channels in chunks 5, 5, 3
  ];
  for (const m of [2, 4] as const) {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`winograd F(${m}×${m}, 3×3) ${dtype}: every 3×3 stride-1 case, edge tiles, padding 0–2, chunked`, async () => {
        const d = await gpuDevice();
        for (const c of winoCases) {
          await withKernels(d, { conv: { winograd: m, winogradChunkTiles: c.chunk ?? null, winogradChunkChannels: c.chunkO ?? null } }, async () => {
            const ws = [c.o, c.x[1], 3, 3];
            const x = input(c.x.reduce((a, b) => a * b, 1), 81, dtype), w = input(ws.reduce((a, b) => a * b, 1), 82, dtype), bias = c.bias ? input(c.o, 83, dtype) : undefined;
            const y = conv2d(Tensor.from(d, x, c.x, dtype), Tensor.from(d, w, ws, dtype), { padding: c.padding, bias: bias && Tensor.from(d, bias, [c.o], dtype) });
            const [ref, shape] = cpu.cpuConv2d(x, c.x, w, ws, { padding: c.padding, bias });
            expect(y.shape).toEqual(shape);
            expectClose(await y.read(), ref, tol(dtype, c.x[1] * 9), `conv2d winograd F(${m}) ${dtype} ${JSON.stringify(c)}`);
          });
        }
      });
    }
  }

  // residual: relu(conv + bias + r) (TAESD's block ending), fused in the Winograd output pass and added
  // in a second pass elsewhere; also without the ReLU, and a wrong shape is one clear error.
  it('residual: added before the ReLU on every path', async () => {
    const d = await gpuDevice();
    const xs: [number, number, number, number] = [2, 6, 9, 11], ws = [5, 6, 3, 3], ys = [2, 5, 9, 11];
    const x = input(2 * 6 * 9 * 11, 91, 'f32'), w = input(5 * 6 * 9, 92, 'f32'), bias = input(5, 93, 'f32'), r = input(2 * 5 * 9 * 11, 94, 'f32');
    const [ref] = cpu.cpuConv2d(x, xs, w, ws, { padding: 1, bias });
    const sum = ref.map((v, i) => v + r[i]!);
    for (const [name, conv] of [['winograd F(4×4)', { winograd: 4 }], ['winograd F(2×2)', { winograd: 2 }], ['implicit GEMM', { winograd: 'off' }]] as const) {
      await withKernels(d, { conv }, async () => {
        for (const reluOn of [true, false]) {
          const y = conv2d(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { padding: 1, bias: Tensor.from(d, bias, [5]), residual: Tensor.from(d, r, ys), relu: reluOn });
          expectClose(await y.read(), reluOn ? sum.map((v) => Math.max(v, 0)) : sum, tol('f32', 54), `conv2d residual ${name} relu ${reluOn}`);
        }
      });
    }
    const yn = conv2dDirect(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { padding: 1, bias: Tensor.from(d, bias, [5]), residual: Tensor.from(d, r, ys), relu: true });
    expectClose(await yn.read(), sum.map((v) => Math.max(v, 0)), tol('f32', 54), 'conv2d residual naive');
    expect(() => conv2d(Tensor.from(d, x, xs), Tensor.from(d, w, ws), { padding: 1, residual: Tensor.from(d, r.subarray(0, 5 * 9 * 11), [1, 5, 9, 11]) }))
      .toThrow('conv2d: residual [1, 5, 9, 11] f32 must match the output [2, 5, 9, 11] f32: x [2, 6, 9, 11] ⊛ w [5, 6, 3, 3] (stride 1, padding 1)');
  });

  // The automatic choice on CPU adapters: F(4×4) for 3×3 stride-1 convs with ≥ 64 output tiles; the
  // implicit GEMM otherwise and on real GPUs; the setting overrides.
  it('conv2dPath: Winograd where it pays on CPU adapters, the setting overrides', async () => {
    const d = await gpuDevice();
    const cpuAd = isCpuAdapter(d);
    expect(conv2dPath(d, [1, 64, 32, 32], [64, 64, 3, 3], 1, 1)).toBe(cpuAd ? 'winograd4' : 'implicit-gemm');
    expect(conv2dPath(d, [1, 64, 31, 32], [64, 64, 3, 3], 1, 1)).toBe(cpuAd ? 'winograd4' : 'implicit-gemm'); // 8·8 tiles with a partial row
    expect(conv2dPath(d, [1, 64, 28, 32], [64, 64, 3, 3], 1, 1)).toBe('implicit-gemm'); // 7·8 = 56 tiles
    expect(conv2dPath(d, [1, 1280, 32, 32], [1280, 1280, 3, 3], 1, 1)).toBe(cpuAd ? 'winograd4' : 'implicit-gemm'); // filter in 4 chunks of output channels
    expect(conv2dPath(d, [1, 1280, 16, 16], [1280, 1280, 3, 3], 1, 1)).toBe('implicit-gemm'); // 16 tiles
    expect(conv2dPath(d, [1, 64, 64, 64], [64, 64, 3, 3], 2, 1)).toBe('implicit-gemm');
    expect(conv2dPath(d, [1, 64, 64, 64], [64, 64, 1, 1], 1, 0)).toBe('implicit-gemm');
    await withKernels(d, { conv: { winograd: 'off' } }, () => expect(conv2dPath(d, [1, 64, 32, 32], [64, 64, 3, 3], 1, 1)).toBe('implicit-gemm'));
    await withKernels(d, { conv: { winograd: 2 } }, () => expect(conv2dPath(d, [1, 1280, 8, 8], [1280, 1280, 3, 3], 1, 1)).toBe('winograd2'));
  });

  it('kernels.conv settings are checked, naming the field', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, new Float32Array(16), [1, 1, 4, 4]), w = Tensor.from(d, new Float32Array(9), [1, 1, 3, 3]);
    await withKernels(d, { conv: { winograd: 3 as never } }, () => {
      expect(() => conv2d(x, w)).toThrow("kernels.conv.winograd: expected 2, 4, 'off' or null, got 3");
    });
    await withKernels(d, { conv: { winogradChunkTiles: 0 } }, () => {
      expect(() => conv2d(x, w)).toThrow('kernels.conv.winogradChunkTiles: expected a positive integer, got 0');
    });
  });

  it('rejects a channel mismatch, naming both shapes', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, new Float32Array(1 * 3 * 4 * 4), [1, 3, 4, 4]);
    const w = Tensor.from(d, new Float32Array(2 * 4 * 3 * 3), [2, 4, 3, 3]);
    expect(() => conv2d(x, w, { padding: 1 })).toThrow('conv2d: input has 3 channels but the weight expects 4: x [1, 3, 4, 4] ⊛ w [2, 4, 3, 3]');
  });
});
