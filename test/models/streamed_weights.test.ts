// Streamed weights (low memory): a model whose weights stay in their safetensors file and are uploaded when a
// kernel binds them, through a ParameterCache with a byte budget. The golden SDXS UNet streamed through caches
// far smaller than the model gives bit-exactly the resident model's output in f32 and f16 (run straight through
// and paced between its resnets and attentions), the cache never holds
// more than its budget (plus the most recent few, by design), a warm cache large enough answers from memory, the
// file closes only once the model is freed, and what cannot stream (a transform, a file without synchronous
// reads) loads as before. An abort between paced segments frees what the forward made; a file that changed on
// disk under a streamed model fails with the file's name.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, FileFormatError, MemoryFile, ParameterCache, Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { UNet2DConditionModel } from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';

const golden = new URL('../fixtures/golden/unet_sdxs/', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'fewstep-streamed-'));
let d: Device;

beforeAll(async () => {
  d = await gpuDevice();
});
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

/** A fresh copy of the golden UNet folder (one test truncates its file). */
function unetDir(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(golden, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(golden, 'model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
  return dir;
}

/** nodeFiles, counting opens and closes. */
function countingFiles(): FileSource & { open_: number; closed: number } {
  const io = {
    ...nodeFiles,
    open_: 0,
    closed: 0,
    async open(path: string) {
      const f = await nodeFiles.open(path);
      io.open_++;
      const close = f.close.bind(f);
      f.close = async () => {
        io.closed++;
        await close();
      };
      return f;
    },
  };
  return io;
}

/** The golden UNet streamed from a fresh folder through a `budget`-byte cache, with a small input kept for it. */
async function streamedUNet(name: string, budget: number) {
  const dir = unetDir(name);
  await d.trimMemory();
  const before = d.pool.stats.inUse;
  const cache = new ParameterCache(d, budget);
  const m = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d, { stream: cache });
  const cfg = m.config;
  const ctxDim = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0]! : cfg.cross_attention_dim!;
  const sample = Tensor.from(d, new Float32Array(4 * 8 * 8).fill(0.5), [1, 4, 8, 8]).keep();
  const ctx = Tensor.from(d, new Float32Array(3 * ctxDim).fill(0.25), [1, 3, ctxDim]).keep();
  const dispose = () => {
    m.dispose();
    sample.dispose();
    ctx.dispose();
  };
  return { dir, before, cache, m, sample, ctx, dispose };
}

describe('streamed weights', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`UNet through a cache smaller than the model: bit-exact to resident, memory bounded (${dtype})`, async () => {
      const dir = unetDir(`unet-${dtype}`);
      const resident = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d, { dtype });
      const cfg = resident.config;
      const ctxDim = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0]! : cfg.cross_attention_dim!;
      const rnd = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
      const sample = Tensor.from(d, rnd(2 * 4 * 16 * 16, 1), [2, cfg.in_channels!, 16, 16], dtype).keep();
      const ctx = Tensor.from(d, rnd(2 * 7 * ctxDim, 2), [2, 7, ctxDim], dtype).keep();
      let want: Uint8Array;
      const modelBytes = d.pool.stats.inUse;
      try {
        const y = resident.forward(sample, 500, ctx);
        want = new Uint8Array((await y.readRaw()).buffer);
        y.dispose();
      } finally {
        resident.dispose();
      }
      await d.trimMemory();
      const before = d.pool.stats.inUse;
      expect(modelBytes - before).toBeGreaterThan(0);
      const io = countingFiles();
      const budget = 64 * 1024;
      const cache = new ParameterCache(d, budget);
      const streamed = await UNet2DConditionModel.fromFolder(io, dir, d, { dtype, stream: cache });
      try {
        // Nothing was read or uploaded at load; the file stays open for the streamed weights.
        expect(d.pool.stats.inUse).toBe(before);
        expect(cache.stats.loads).toBe(0);
        expect(io.closed).toBe(0);
        // Straight through, then paced (forwardAsync pauses between resnets and attentions for cache.pace()).
        let pauses = 0;
        const pace = () => {
          pauses++;
          return cache.pace();
        };
        for (let run = 0; run < 2; run++) {
          const y = run === 0 ? streamed.forward(sample, 500, ctx) : await streamed.forwardAsync(sample, 500, ctx, {}, pace);
          const got = new Uint8Array((await y.readRaw()).buffer);
          y.dispose();
          expect(Buffer.from(got).equals(Buffer.from(want)), `run ${run}`).toBe(true);
        }
        expect(pauses).toBeGreaterThanOrEqual(4);
        // Every weight was read at least once per run, some more often (the budget is a fraction of the model).
        const shapes = [...UNet2DConditionModel.describe(cfg).values()];
        expect(cache.stats.loads).toBeGreaterThanOrEqual(2 * shapes.length);
        // At most the budget, plus the protected most recent few and the one loading.
        const largest = Math.max(...shapes.map((sh) => sh.reduce((a, b) => a * b, 1))) * (dtype === 'f16' ? 2 : 4);
        expect(cache.stats.peakBytes).toBeLessThanOrEqual(budget + (cache.protect + 1) * largest);
        expect(cache.stats.peakBytes).toBeLessThan((modelBytes - before) / 4);
      } finally {
        streamed.dispose();
      }
      // Freed: no weight left in the cache or the pool, and the file closed.
      expect(cache.residentBytes).toBe(0);
      expect(d.pool.stats.inUse).toBe(before);
      await new Promise((r) => setTimeout(r, 10));
      expect(io.closed).toBe(io.open_);
      sample.dispose();
      ctx.dispose();
    });
  }

  it('a cache as large as the model answers the second run from memory', async () => {
    const { cache, m, sample, ctx, dispose } = await streamedUNet('unet-warm', 1 << 30);
    try {
      m.forward(sample, 10, ctx).dispose();
      const loads = cache.stats.loads;
      expect(loads).toBe(UNet2DConditionModel.describe(m.config).size);
      m.forward(sample, 10, ctx).dispose();
      expect(cache.stats.loads).toBe(loads);
      expect(cache.stats.hits).toBeGreaterThanOrEqual(loads);
    } finally {
      dispose();
    }
    expect(cache.residentBytes).toBe(0);
  });

  it('what cannot stream loads as before: a weight transform, a file without synchronous reads', async () => {
    const dir = unetDir('unet-plain');
    await d.trimMemory();
    const before = d.pool.stats.inUse;
    const cache = new ParameterCache(d, 64 * 1024);
    const withTransform = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d, { stream: cache, transform: (_k, v) => v });
    const loadedBytes = d.pool.stats.inUse - before;
    withTransform.dispose();
    expect(loadedBytes).toBeGreaterThan(0);
    const inMemory: FileSource = {
      ...nodeFiles,
      async open(path) {
        const f = await nodeFiles.open(path);
        const bytes = new Uint8Array(f.size);
        bytes.set(await f.read(0, f.size));
        await f.close();
        return new MemoryFile(path, bytes);
      },
    };
    const fromMemory = await UNet2DConditionModel.fromFolder(inMemory, dir, d, { stream: cache });
    expect(d.pool.stats.inUse - before).toBe(loadedBytes);
    fromMemory.dispose();
    expect(cache.stats.loads).toBe(0);
  });

  it('an abort between paced segments ends the forward with an AbortError and frees what it made', async () => {
    const { before, cache, m, sample, ctx, dispose } = await streamedUNet('unet-abort', 64 * 1024);
    const ac = new AbortController();
    let pauses = 0;
    const pace = () => {
      if (++pauses === 3) ac.abort();
      return cache.pace();
    };
    try {
      await expect(d.withSignal(ac.signal, () => m.forwardAsync(sample, 10, ctx, {}, pace))).rejects.toThrow(AbortError);
      expect(pauses).toBe(3);
    } finally {
      dispose();
    }
    await d.trimMemory();
    expect(d.pool.stats.inUse).toBe(before);
  });

  it('a weight file truncated under a streamed model fails naming the file, and leaks nothing', async () => {
    const { dir, before, cache, m, sample, ctx, dispose } = await streamedUNet('unet-truncated', 64 * 1024);
    const file = join(dir, 'diffusion_pytorch_model.safetensors');
    truncateSync(file, 4096);
    try {
      let err: unknown;
      try {
        d.scope(() => m.forward(sample, 10, ctx));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FileFormatError);
      expect((err as Error).message).toContain(file);
      expect((err as Error).message).toMatch(/past the end|unexpected end of file/);
    } finally {
      dispose();
    }
    await d.sync();
    expect(cache.residentBytes).toBe(0);
    expect(d.pool.stats.inUse).toBe(before);
  });
});
