import { afterAll, describe, expect, it } from 'vitest';
import { AbortError, Device, DeviceError, FewstepError, InvalidArgumentError, NO_ADAPTER_HELP, ResourceLimitError, ShapeError, Tensor } from '@fewstep/tensor';
import { sizeClass } from '@fewstep/tensor/testing';
import { CPU_TILING, GPU_SMALL_TILING, add, kernelSettings, matmul, unary } from '@fewstep/kernels';
import { getPipeline } from '@fewstep/kernels/testing';
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
    await expect(Device.open({ gpu })).rejects.toMatchObject({ name: 'DeviceError', code: 'no_adapter' });
    expect(NO_ADAPTER_HELP).toContain('apt-get install -y -t bookworm-backports mesa-vulkan-drivers');
  });

  it('f16 kernels fail clearly on a device opened without shader-f16', async () => {
    const d = await Device.open({ gpu: await nodeGPU(), f16: false });
    try {
      expect(d.features.f16).toBe(false);
      const x = Tensor.from(d, [1, 2], [2], 'f16');
      expect(() => unary('silu', x)).toThrow("unary.silu: f16 needs the 'shader-f16' feature");
      expect(() => unary('silu', x)).toThrow(expect.objectContaining({ code: 'feature_missing' }));
      // …and the f32 path still works there.
      expect([...(await unary('relu', Tensor.from(d, [-1, 2], [2])).read())]).toEqual([0, 2]);
    } finally {
      d.destroy();
    }
  });

  it('reports WGSL compile errors with the pipeline key', async () => {
    const d = await gpuDevice();
    getPipeline(d, { family: 'broken', entry: 'main', dtype: 'f32', code: 'alias T = f32; fn main( {', storage: [] });
    const e = await d.sync().then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(DeviceError);
    expect(e).toMatchObject({ code: 'gpu_error', message: expect.stringContaining('pipeline broken:main:f32') });
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

  it('parameters (weights) get buffers of exactly their size, destroyed — not pooled — once freed and submitted', async () => {
    const d = await gpuDevice();
    await d.sync();
    const { inUse, pooled } = d.pool.stats;
    const w = Tensor.parameter(d, [3, 1000], 'f16'); // 6000 bytes: size class 6144
    expect(w.buffer.size).toBe(6000);
    expect(d.pool.stats.inUse - inUse).toBe(6000);
    w.device.write(w.buffer, 0, new Uint16Array(3000).fill(0x3c00)); // 1.0
    // Freed while a dispatch that reads it is recorded but not submitted: the buffer must outlive the submit.
    const y = unary('silu', w);
    w.dispose();
    expect(d.pool.stats.inUse).toBe(inUse + y.buffer.size);
    expect(d.pool.stats.pooled).toBe(pooled);
    const v = await y.read();
    expect(v[0]).toBeCloseTo(0.7310586, 3);
    expect(v[2999]).toBeCloseTo(0.7310586, 3);
    y.dispose();
    await d.sync();
    expect(d.pool.stats.inUse).toBe(inUse);
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
    expect(() => unary('silu', big)).toThrow(ResourceLimitError);
    big.dispose();
  });
});

describe('typed errors', () => {
  it('a kernel shape mismatch is a ShapeError (code shape_mismatch), an InvalidArgumentError and a FewstepError', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, new Float32Array(6), [2, 3]);
    const b = Tensor.from(d, new Float32Array(8), [4, 2]);
    let e: unknown;
    try {
      matmul(a, b);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(ShapeError);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e).toBeInstanceOf(FewstepError);
    expect(e).toMatchObject({ name: 'ShapeError', code: 'shape_mismatch', message: 'matmul: inner dims differ (K=3 vs 4): a [2, 3] × b [4, 2]' });
    expect(() => a.reshape([5])).toThrow(expect.objectContaining({ code: 'shape_mismatch' }));
    a.dispose();
    b.dispose();
  });
});

describe('kernel settings per device', () => {
  it('Device.open takes them; device.kernels reads them (a frozen copy); kernelSettings fills in defaults', async () => {
    const given = { gemm: { splitK: 3, splitKTuning: { below: 64 } } };
    const d = await Device.open({ gpu: await nodeGPU(), kernels: given });
    try {
      given.gemm.splitK = 5; // the device kept its own copy
      expect(d.kernels.gemm).toEqual({ splitK: 3, splitKTuning: { below: 64 } });
      expect(Object.isFrozen(d.kernels.gemm)).toBe(true);
      const r = kernelSettings(d);
      expect(r.gemm).toEqual({ tiling: null, sg: null, splitK: 3, splitKTuning: { below: 64, target: 1024, minK: 1024 } });
      expect(r.attention).toEqual({ variant: null, tq: null });
      expect(r.groupNorm.split).toBe('auto');
      expect(r.upsample.vec4).toBe(true);
      // Another device is not affected.
      expect(kernelSettings(await gpuDevice()).gemm.splitK).toBeNull();
      // Bad values: an InvalidArgumentError naming the field, at the first kernel call.
      d.kernels = { gemm: { splitK: 0 } };
      const x = Tensor.from(d, new Float32Array(4), [2, 2]);
      expect(() => matmul(x, x)).toThrow(expect.objectContaining({ code: 'invalid_argument', field: 'kernels.gemm.splitK' }));
      d.kernels = { gemm: { tiling: { TX: 8, TY: 8, TM: 6, TN: 4, BK: 8 } } };
      expect(() => matmul(x, x)).toThrow('kernels.gemm.tiling: TM and TN must be multiples of 4, got TM=6, TN=4');
    } finally {
      d.destroy();
    }
  });

  it('switching settings switches pipelines (each tiling its own cache entry) and gives the same results', async () => {
    const d = await gpuDevice();
    const a = Tensor.from(d, Float32Array.from({ length: 40 * 24 }, (_, i) => (i % 5) - 2), [40, 24]);
    const b = Tensor.from(d, Float32Array.from({ length: 24 * 30 }, (_, i) => (i % 3) - 1), [24, 30]);
    const run = async (kernels: object) => {
      d.kernels = kernels;
      const y = matmul(a, b);
      const v = await y.read();
      y.dispose();
      return v;
    };
    const prev = d.kernels;
    try {
      const ref = await run({ gemm: { tiling: CPU_TILING } });
      const n = d.pipelineCount;
      expect(await run({ gemm: { tiling: GPU_SMALL_TILING } })).toEqual(ref);
      expect(d.pipelineCount).toBe(n + 1);
      expect(await run({ gemm: { tiling: GPU_SMALL_TILING, splitK: 2 } })).toEqual(ref);
      expect(d.pipelineCount).toBe(n + 3); // split-K: main and reduce entries
      expect(await run({ gemm: { tiling: CPU_TILING } })).toEqual(ref);
      expect(d.pipelineCount).toBe(n + 3); // back to a cached one
    } finally {
      d.kernels = prev;
      a.dispose();
      b.dispose();
    }
  });

  it('a pipeline key reused for different WGSL is refused', async () => {
    const d = await gpuDevice();
    const code = (n: number) => `alias T = f32;\n@compute @workgroup_size(${n}) fn main() {}`;
    getPipeline(d, { family: 'keytest', entry: 'main', dtype: 'f32', code: code(1), storage: [] });
    expect(getPipeline(d, { family: 'keytest', entry: 'main', dtype: 'f32', code: code(1), storage: [] })).toBeDefined();
    expect(() => getPipeline(d, { family: 'keytest', entry: 'main', dtype: 'f32', code: code(2), storage: [] })).toThrow('pipeline keytest:main:f32: the key was reused for different WGSL');
    await d.sync();
  });
});

describe('cancellation: device.withSignal', () => {
  it('abort between dispatches: AbortError, unsubmitted commands dropped, scope tensors freed, the device still works', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, [1, 2, 3, 4], [4]);
    const target = Tensor.from(d, [9, 9, 9, 9], [4]);
    await d.sync();
    const inUse = d.pool.stats.inUse;
    const made: Tensor[] = [];
    const ac = new AbortController();
    const run = d.withSignal(ac.signal, () =>
      d.scope(async () => {
        made.push(add(x, x));
        made.push(unary('silu', made[0]!));
        // Recorded, not yet submitted: dropped by the abort, so target keeps its values.
        d.copy(made[0]!.buffer, 0, target.buffer, 0, 16);
        ac.abort();
        made.push(unary('relu', made[1]!)); // the next dispatch throws
        return made[2]!;
      }),
    );
    const e = await run.then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(AbortError);
    expect(e).toMatchObject({ name: 'AbortError', code: 'aborted' });
    expect(made.length).toBe(2);
    expect(made.every((t) => t.disposed)).toBe(true);
    expect(d.pool.stats.inUse).toBe(inUse);
    // Outside the signal again: the dropped copy never ran, and new work runs.
    expect([...(await target.read())]).toEqual([9, 9, 9, 9]);
    expect([...(await add(x, x).read())]).toEqual([2, 4, 6, 8]);
    x.dispose();
    target.dispose();
  });

  it('sync() and read() throw once aborted; an aborted signal refuses at once; nesting restores the outer signal', async () => {
    const d = await gpuDevice();
    const x = Tensor.from(d, [1, -1], [2]);
    const pre = new AbortController();
    pre.abort();
    expect(() => d.withSignal(pre.signal, () => 1)).toThrow(AbortError);

    const outer = new AbortController();
    await d.withSignal(outer.signal, async () => {
      const inner = new AbortController();
      await d.withSignal(inner.signal, async () => {
        const y = add(x, x);
        inner.abort();
        await expect(d.sync()).rejects.toBeInstanceOf(AbortError);
        await expect(y.read()).rejects.toBeInstanceOf(AbortError);
        expect(() => Tensor.from(d, [1], [1])).toThrow(AbortError);
        y.dispose();
      });
      // Back under the outer signal, which has not aborted.
      const z = unary('relu', x);
      expect([...(await z.read())]).toEqual([1, 0]);
      z.dispose();
    });
    // An abort reason that is a FewstepError is thrown as is.
    const custom = new AbortController();
    custom.abort(new DeviceError('device_lost', 'gone'));
    expect(() => d.withSignal(custom.signal, () => 1)).toThrow('gone');
    x.dispose();
  });

  it('an abort while sync() waits returns at once; the device keeps working', async () => {
    const d = await gpuDevice();
    const n = 512;
    const a = Tensor.from(d, Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3), [n, n]);
    await d.sync();
    const inUse = d.pool.stats.inUse;
    const ac = new AbortController();
    const run = d.withSignal(ac.signal, () =>
      d.scope(async () => {
        let y = a;
        for (let i = 0; i < 6; i++) y = matmul(y, a, { alpha: 1 / n });
        const waiting = d.sync();
        setTimeout(() => ac.abort(), 0);
        await waiting;
        return y;
      }),
    );
    // Either the abort lands during the wait (AbortError) or lavapipe was faster (the result).
    const r = await run.then((y) => y, (err: unknown) => err);
    if (r instanceof Tensor) r.dispose();
    else expect(r).toBeInstanceOf(AbortError);
    expect(d.pool.stats.inUse).toBe(inUse);
    const y = unary('relu', Tensor.from(d, [-1, 1], [2]));
    expect([...(await y.read())]).toEqual([0, 1]);
    a.dispose();
  });
});
