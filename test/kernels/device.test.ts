import { afterAll, describe, expect, it } from 'vitest';
import { Device, NO_ADAPTER_HELP, Tensor, sizeClass } from '@fewstep/tensor';
import { add, getPipeline, unary } from '@fewstep/kernels';
import { nodeGPU } from '@fewstep/tensor/node';
import { closeDevice, gpuDevice } from '../helpers/gpu';

afterAll(closeDevice);

describe('Device', () => {
  it('opens lavapipe with its real limits and optional features', async () => {
    const d = await gpuDevice();
    expect(d.adapter.name.length).toBeGreaterThan(0);
    expect(d.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(typeof d.features.f16).toBe('boolean');
  });

  it('fails with install instructions when no adapter exists', async () => {
    const gpu = { requestAdapter: async () => null } as unknown as GPU;
    await expect(Device.open({ gpu })).rejects.toThrow(NO_ADAPTER_HELP);
    expect(NO_ADAPTER_HELP).toContain('apt-get install -y -t bookworm-backports mesa-vulkan-drivers');
  });

  it('f16 kernels fail clearly on a device opened without shader-f16', async () => {
    const d = await Device.open({ gpu: await nodeGPU(), f16: false });
    try {
      expect(d.features.f16).toBe(false);
      const x = Tensor.from(d, [1, 2], [2], 'f16');
      expect(() => unary('silu', x)).toThrow("unary.silu: f16 needs the 'shader-f16' feature");
      // …and the f32 path still works there.
      expect([...(await unary('relu', Tensor.from(d, [-1, 2], [2])).read())]).toEqual([0, 2]);
    } finally {
      d.destroy();
    }
  });

  it('reports WGSL compile errors with the pipeline key', async () => {
    const d = await gpuDevice();
    getPipeline(d, { family: 'broken', entry: 'main', dtype: 'f32', code: 'alias T = f32; fn main( {', storage: [] });
    await expect(d.sync()).rejects.toThrow('pipeline broken:main:f32');
  });
});

describe('Tensor and buffer pool', () => {
  it('round-trips f32, f16 and i32 data', async () => {
    const d = await gpuDevice();
    expect([...(await Tensor.from(d, [1.5, -2, 3], [3]).read())]).toEqual([1.5, -2, 3]);
    expect([...(await Tensor.from(d, [1.5, -2, 65504], [3], 'f16').read())]).toEqual([1.5, -2, 65504]);
    expect([...(await Tensor.from(d, [7, -8, 9], [3], 'i32').read())]).toEqual([7, -8, 9]);
  });

  it('reshape is a view; storage is freed after the last view is disposed', async () => {
    const d = await gpuDevice();
    const t = Tensor.from(d, [1, 2, 3, 4, 5, 6], [2, 3]);
    const v = t.reshape([3, -1]);
    expect(v.shape).toEqual([3, 2]);
    expect(v.buffer).toBe(t.buffer);
    const before = d.pool.stats.inUse;
    t.dispose();
    expect(d.pool.stats.inUse).toBe(before);
    expect([...(await v.read())]).toEqual([1, 2, 3, 4, 5, 6]);
    v.dispose();
    expect(d.pool.stats.inUse).toBe(before - sizeClass(24));
    expect(() => v.buffer).toThrow('tensor [3, 2] f32 used after dispose()');
    expect(() => t.reshape([5])).toThrow('cannot reshape [2, 3] to [5]');
  });

  it('repeated shapes reuse pooled buffers', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, new Float32Array(1000), [1000]);
    const { allocations } = d.pool.stats;
    for (let i = 0; i < 5; i++) unary('silu', x).dispose();
    expect(d.pool.stats.allocations - allocations).toBeLessThanOrEqual(1);
  });

  it("wait: 'sleep' (Node default: blocking 1 ms naps between event-loop turns) and 'spin' read the same results", async () => {
    const gpu = await nodeGPU();
    for (const wait of ['sleep', 'spin'] as const) {
      const d = await Device.open({ gpu, wait });
      try {
        // Long enough on lavapipe (tens of ms) that the sleeping loop runs many turns before the GPU is done.
        const n = 192;
        const a = Tensor.from(d, Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3), [n, n]);
        let x = a;
        for (let i = 0; i < 6; i++) x = unary('scale', x, 0.5, 1);
        const v = await x.read();
        const ref = (t: number) => { for (let i = 0; i < 6; i++) t = t * 0.5 + 1; return t; };
        expect(v[0]).toBeCloseTo(ref(-3), 6);
        expect(v[n * n - 1]).toBeCloseTo(ref(((n * n - 1) % 7) - 3), 6);
        await d.sync();
      } finally {
        d.destroy();
      }
    }
  });

  it('profiles GPU time per dispatch label without changing results', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, [1, -2, 3, 4], [4]);
    d.setProfiling(true);
    const y = d.scope(() => add(add(x, x), unary('silu', x)));
    const v = [...(await y.read())];
    d.setProfiling(false);
    const silu = (t: number) => t / (1 + Math.exp(-t));
    [1, -2, 3, 4].forEach((t, i) => expect(v[i]).toBeCloseTo(2 * t + silu(t), 5));
    const p = d.profile(true);
    expect(p.map((e) => [e.label, e.count]).sort()).toEqual([['add', 2], ['unary.silu', 1]]);
    for (const e of p) expect(e.ms).toBeGreaterThanOrEqual(0);
    // Off again: dispatches are no longer timed.
    add(x, x).dispose();
    await d.sync();
    expect(d.profile()).toEqual([]);
    y.dispose();
    x.dispose();
  });

  it('cached bind groups carry each dispatch its own params (dynamic uniform offsets)', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, [1, -2, 3], [3]);
    const hits = d.bindGroupStats.hits;
    // Same pipeline, same pooled output buffer, different alpha each time: every dispatch after the
    // first reuses one bind group, and each must still read its own params.
    for (const alpha of [2, 3, -0.5, 10]) {
      const y = d.scope(() => unary('scale', unary('scale', x, alpha), 1, 1));
      expect([...(await y.read())]).toEqual([1 * alpha + 1, -2 * alpha + 1, 3 * alpha + 1]);
      y.dispose();
    }
    expect(d.bindGroupStats.hits - hits).toBeGreaterThanOrEqual(4);
    x.dispose();
  });

  it('scope() disposes intermediates and keeps what is returned', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, [1, 2], [2]);
    const inUse = d.pool.stats.inUse;
    let inner: Tensor | undefined;
    const out = d.scope(() => {
      inner = add(a, a);
      return add(inner, a);
    });
    expect(inner!.disposed).toBe(true);
    expect(out.disposed).toBe(false);
    expect(a.disposed).toBe(false);
    expect([...(await out.read())]).toEqual([3, 6]);
    out.dispose();
    expect(d.pool.stats.inUse).toBe(inUse);
    const r = await d.scope(async () => ({ y: add(a, a), junk: [add(a, a)].length }));
    expect([...(await r.y.read())]).toEqual([2, 4]);
  });

  it('a tensor larger than one binding fails clearly in kernels that cannot split it', async () => {
    const d = await gpuDevice();
    const n = d.maxBinding / 4 + 64;
    const big = Tensor.empty(d, [n]);
    expect(() => unary('silu', big)).toThrow(`tensor [${n}] f32 is ${n * 4} bytes, more than this adapter's maxStorageBufferBindingSize (${d.maxBinding})`);
    big.dispose();
  });
});
