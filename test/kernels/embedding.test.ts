import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, roundToF16 } from '@fewstep/tensor';
import { cpu } from '@fewstep/tensor/testing';
import { embedding, timestepEmbedding } from '@fewstep/kernels';
import { tableWindows } from '@fewstep/kernels/testing';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { TOL, expectClose, randArray } from '../helpers/compare';

afterAll(closeDevice);

const dtypes = ['f32', 'f16'] as const;
const input = (n: number, seed: number, dtype: 'f32' | 'f16') => {
  const x = randArray(n, seed, -2, 2);
  return dtype === 'f16' ? roundToF16(x) : x;
};
const randIds = (n: number, V: number, seed: number) => Int32Array.from(randArray(n, seed, 0, V), (v) => Math.min(V - 1, Math.floor(v)));

describe('embedding', () => {
  // [B, L, V, D, P, windowRows]: windowRows forces the multi-window path on small tables.
  const cases: [number, number, number, number, number, number | undefined][] = [
    [2, 5, 11, 33, 7, undefined],
    [1, 77, 300, 64, 77, undefined],
    [3, 7, 50, 64, 9, 3], // 256-byte rows (f32): windows of 3 rows, 17 dispatches
    [2, 9, 100, 40, 9, 16], // f16 80-byte rows: windows rounded to 16 rows
    [2, 6, 300, 33, 8, 1], // f16 66-byte rows: 128-row windows (offset alignment)
  ];
  for (const dtype of dtypes) {
    for (const [B, L, V, D, P, windowRows] of cases) {
      for (const withPos of [false, true]) {
        it(`embedding ${dtype} ids [${B}, ${L}] table [${V}, ${D}]${withPos ? ` + positions [${P}, ${D}]` : ''}${windowRows ? ` window ${windowRows}` : ''}`, async () => {
          const d = await gpuDevice();
          const ids = randIds(B * L, V, 1);
          ids[0] = 0;
          ids[ids.length - 1] = V - 1;
          const table = input(V * D, 2, dtype);
          const pos = withPos ? input(P * D, 3, dtype) : undefined;
          const y = embedding(
            Tensor.from(d, ids, [B, L], 'i32'), Tensor.from(d, table, [V, D], dtype),
            pos && Tensor.from(d, pos, [P, D], dtype), { windowRows },
          );
          expect(y.shape).toEqual([B, L, D]);
          expect(y.dtype).toBe(dtype);
          const ref = cpu.cpuEmbedding(ids, L, table, V, D, pos);
          expectClose(await y.read(), dtype === 'f16' ? roundToF16(ref) : ref, { atol: 0, rtol: 0 }, `embedding(${B},${L},${V},${D},${dtype})`);
        });
      }
    }
  }

  it('window planning respects the offset alignment and the binding limit', async () => {
    const d = await gpuDevice();
    expect(tableWindows(d, 300, 66, 1).map((w) => w.row0)).toEqual([0, 128, 256]);
    // CLIP's f32 token table: windows of the largest aligned row count one binding holds.
    const maxRows = Math.floor(d.maxBinding / 4096);
    const clip = tableWindows(d, 49408, 4096);
    if (maxRows >= 49408) expect(clip).toEqual([{ row0: 0, rows: 49408 }]);
    else expect(clip).toEqual([{ row0: 0, rows: maxRows }, { row0: maxRows, rows: 49408 - maxRows }]);
    if (d.maxBinding === 134217728) expect(clip.map((w) => w.rows)).toEqual([32768, 16640]); // lavapipe
    for (const w of tableWindows(d, 100000, 1028)) {
      expect((w.row0 * 1028) % d.limits.minStorageBufferOffsetAlignment).toBe(0);
      expect(w.rows * 1028).toBeLessThanOrEqual(d.maxBinding);
    }
  });

  it('out-of-range ids read zero rows (positions still added)', async () => {
    const d = await gpuDevice();
    const V = 20, D = 8, L = 4;
    const ids = Int32Array.from([3, -1, 20, 2147483647]);
    const table = input(V * D, 4, 'f32'), pos = input(L * D, 5, 'f32');
    for (const windowRows of [undefined, 4]) {
      const y = embedding(Tensor.from(d, ids, [1, L], 'i32'), Tensor.from(d, table, [V, D]), Tensor.from(d, pos, [L, D]), { windowRows });
      expectClose(await y.read(), cpu.cpuEmbedding(ids, L, table, V, D, pos), { atol: 0, rtol: 0 }, `embedding out-of-range window ${windowRows}`);
    }
  });

  it('table larger than one storage binding (33000×1024 f32 = 135 MB) is gathered in windows', async () => {
    const d = await gpuDevice();
    const V = 33000, D = 1024;
    // Adapters with a larger binding limit (discrete GPUs) get lavapipe's window forced instead.
    const opts = V * D * 4 > d.maxBinding ? {} : { windowRows: 32768 };
    const table = Tensor.empty(d, [V, D], 'f32');
    // value(r, c) = r + (c mod 64)/64: exact in f32 and different for every row.
    const chunkRows = 1000;
    const chunk = new Float32Array(chunkRows * D);
    for (let r0 = 0; r0 < V; r0 += chunkRows) {
      const rows = Math.min(chunkRows, V - r0);
      for (let r = 0; r < rows; r++) for (let c = 0; c < D; c++) chunk[r * D + c] = r0 + r + (c % 64) / 64;
      d.write(table.buffer, r0 * D * 4, chunk.subarray(0, rows * D));
    }
    const idsArr = Int32Array.from([0, 1, 32767, 32768, 32999, 12345, 32768, 40000, 5, 32800]);
    const L = 5;
    const P = 6;
    const pos = input(P * D, 6, 'f32');
    const y = embedding(Tensor.from(d, idsArr, [2, L], 'i32'), table, Tensor.from(d, pos, [P, D]), opts);
    const ref = new Float32Array(idsArr.length * D);
    idsArr.forEach((id, t) => {
      for (let c = 0; c < D; c++) ref[t * D + c] = (id < V ? id + (c % 64) / 64 : 0) + pos[(t % L) * D + c]!;
    });
    expectClose(await y.read(), ref, { atol: 0, rtol: 0 }, 'embedding(135 MB table)');
    table.dispose();
  });

  it('rejects bad input with messages naming the shapes', async () => {
    const d = await gpuDevice();
    const table = Tensor.from(d, new Float32Array(40), [10, 4]);
    expect(() => embedding(Tensor.from(d, [1, 2], [1, 2], 'f32'), table)).toThrow('embedding: ids must be i32 (ids [1, 2] f32, table [10, 4] f32)');
    expect(() => embedding(Tensor.from(d, [1, 2], [2], 'i32'), table)).toThrow('embedding: expected ids [B, L] and table [V, D] (ids [2] i32, table [10, 4] f32)');
    expect(() => embedding(Tensor.from(d, [1, 2, 3], [1, 3], 'i32'), table, Tensor.from(d, new Float32Array(8), [2, 4]))).toThrow(
      'embedding: positions must be [P ≥ 3, 4] in f32 (ids [1, 3] i32, table [10, 4] f32, positions [2, 4] f32)',
    );
    expect(() => timestepEmbedding(Tensor.from(d, [1, 2], [2], 'i32'), 8, { flipSinToCos: true, downscaleFreqShift: 0 })).toThrow(
      'timestepEmbedding: timesteps must be f32 [B], got [2] i32',
    );
  });
});

describe('timestepEmbedding', () => {
  const ts = [0, 1, 999, 500.5];
  for (const dim of [320, 33]) {
    for (const flipSinToCos of [true, false]) {
      for (const downscaleFreqShift of [0, 1]) {
        it(`dim ${dim} flip ${flipSinToCos} shift ${downscaleFreqShift} f32`, async () => {
          const d = await gpuDevice();
          const opts = { flipSinToCos, downscaleFreqShift };
          const y = timestepEmbedding(Tensor.from(d, ts, [ts.length]), dim, opts);
          expect(y.shape).toEqual([ts.length, dim]);
          expectClose(await y.read(), cpu.cpuTimestepEmbedding(ts, dim, opts), { atol: 1e-5, rtol: 0 }, `timestepEmbedding(${dim},${flipSinToCos},${downscaleFreqShift})`);
        });
      }
    }
  }
  it('scale, maxPeriod and f16 output', async () => {
    const d = await gpuDevice();
    const t = [3, 750, 999, 0.25, 12];
    const opts = { flipSinToCos: false, downscaleFreqShift: 1, scale: 3, maxPeriod: 5000 };
    const ref = cpu.cpuTimestepEmbedding(t, 256, opts);
    const y32 = timestepEmbedding(Tensor.from(d, t, [t.length]), 256, opts);
    expectClose(await y32.read(), ref, { atol: 1e-5, rtol: 0 }, 'timestepEmbedding(scale 3, maxPeriod 5000)');
    const y16 = timestepEmbedding(Tensor.from(d, t, [t.length]), 256, opts, 'f16');
    expect(y16.dtype).toBe('f16');
    expectClose(await y16.read(), roundToF16(ref), TOL.f16, 'timestepEmbedding(f16 out)');
  });
});
