/**
 * `fewstep bench soak`: many small generations in one process, watching memory. The model (--model, a folder or
 * hub id; the tiny test model is enough) is loaded once; then `images` generations of one image each, with a new
 * prompt and seed every time, either
 *  - in-process: through the server's ImageService (the pipeline's generate() and the PNG encoding, no HTTP), or
 *  - through serve (`--serve`): POST /v1/images/generations to `fewstep serve`'s server on 127.0.0.1, the PNG read
 *    back from the JSON answer.
 * Every `every` images (and after the first) a sample: RSS, the JS heap and external/ArrayBuffer memory after a
 * full garbage collection (V8's gc is exposed at run time for this), and the device's buffer pool
 * (device.pool.stats: bytes in use, pooled, peak, allocations and reuses).
 *
 * Verdict "grows after warm-up" (GROWTH_RULE): the first `warmup` images (default max(10, 10 %, PROMPT_CACHE_ENTRIES + 1),
 * at most half) are warm-up (pipelines compiled, pool filled, allocator settled, the prompt-embedding cache full —
 * each new prompt keeps its embeddings until 16 are kept; from then on each evicts one). The samples after it are split in quarters and the mean of
 * the last quarter compared with the mean of the first: RSS grows if it rose by more than 32 MiB and 10 %; the JS
 * heap if by more than 8 MiB and 10 %; the GPU pool (in use + pooled) if it rose at all — the same shapes come back
 * every time, so a steady pool reuses its buffers and never asks for more. Any of the three → "yes".
 * The least-squares slope of RSS per 100 images after warm-up is reported too (information, not the rule).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { CliIO } from '../command.js';
import type { ModelOptions } from '../generation/flags.js';
import { loadModel, planModel } from '../generation/model.js';
import { createProgressUI } from '../generation/progress.js';
import { imageService } from '../serve/image_service.js';
import type { ImageRequest } from '../serve/openai_request.js';
import { startServer } from '../serve/server.js';
import { PROMPT_CACHE_ENTRIES } from '@fewstep/models';

export const GROWTH_RULE =
  'after warm-up, mean of the last quarter of samples vs the first quarter: RSS +32 MiB and +10 %, JS heap (after GC) +8 MiB and +10 %, or GPU pool (in use + pooled) any increase';

export interface SoakSample {
  /** Images generated when the sample was taken. */
  images: number;
  seconds: number;
  rss_mb: number;
  heap_used_mb: number;
  external_mb: number;
  array_buffers_mb: number;
  gpu_in_use_mb: number;
  gpu_pooled_mb: number;
  gpu_peak_mb: number;
  gpu_allocations: number;
  gpu_reuses: number;
}

export interface SoakGrowth {
  first_mb: number;
  last_mb: number;
  delta_mb: number;
  grows: boolean;
}

export interface SoakResult {
  mode: 'in-process' | 'serve';
  model: string;
  adapter: string;
  size: string;
  images: number;
  warmup_images: number;
  sample_every: number;
  seconds: number;
  images_per_s: number;
  samples: SoakSample[];
  rss: SoakGrowth;
  heap: SoakGrowth;
  gpu_pool: SoakGrowth;
  rss_slope_mb_per_100_images: number;
  rule: string;
  grows_after_warmup: 'yes' | 'no';
}

const MB = 2 ** 20;
const mb = (b: number) => Math.round((b / MB) * 100) / 100;

/** V8's gc(), exposed at run time (like --expose-gc); undefined where that is refused. */
function exposeGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

function growth(samples: readonly SoakSample[], pick: (s: SoakSample) => number, rule: (first: number, last: number) => boolean): SoakGrowth {
  if (samples.length === 0) return { first_mb: 0, last_mb: 0, delta_mb: 0, grows: false };
  const q = Math.max(1, Math.floor(samples.length / 4));
  const first = mean(samples.slice(0, q).map(pick));
  const last = mean(samples.slice(-q).map(pick));
  const r = (x: number) => Math.round(x * 100) / 100;
  return { first_mb: r(first), last_mb: r(last), delta_mb: r(last - first), grows: samples.length >= 2 && rule(first, last) };
}

function slope(samples: readonly SoakSample[]): number {
  if (samples.length < 2) return 0;
  const xs = samples.map((s) => s.images), ys = samples.map((s) => s.rss_mb);
  const mx = mean(xs), my = mean(ys);
  let num = 0, den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den ? Math.round((num / den) * 100 * 100) / 100 : 0;
}

/** The verdict over samples taken after warm-up (exported for tests of the rule). */
export function soakVerdict(afterWarmup: readonly SoakSample[]): Pick<SoakResult, 'rss' | 'heap' | 'gpu_pool' | 'rss_slope_mb_per_100_images' | 'grows_after_warmup'> {
  const rss = growth(afterWarmup, (s) => s.rss_mb, (f, l) => l - f > 32 && l > f * 1.1);
  const heap = growth(afterWarmup, (s) => s.heap_used_mb, (f, l) => l - f > 8 && l > f * 1.1);
  const gpu_pool = growth(afterWarmup, (s) => s.gpu_in_use_mb + s.gpu_pooled_mb, (f, l) => l > f);
  return { rss, heap, gpu_pool, rss_slope_mb_per_100_images: slope(afterWarmup), grows_after_warmup: rss.grows || heap.grows || gpu_pool.grows ? 'yes' : 'no' };
}

export async function benchSoak(
  options: ModelOptions,
  b: { images: number; serve: boolean; every: number; size: string; warmup?: number | undefined },
  io: CliIO,
  onSample: (s: SoakSample) => void = () => {},
): Promise<SoakResult> {
  const gc = exposeGc();
  const ui = createProgressUI(io, { quiet: true });
  const ctx = { ui, signal: io.signal };
  const loaded = await loadModel(await planModel(options, {}, ctx), ctx);
  const service = imageService(loaded, options);
  const [width, height] = b.size.split('x').map(Number) as [number, number];
  const server = b.serve ? await startServer(service, { host: '127.0.0.1', port: 0, maxQueue: 1 }) : undefined;
  const warmup = b.warmup ?? Math.min(Math.max(10, Math.ceil(b.images / 10), PROMPT_CACHE_ENTRIES + 1), Math.floor(b.images / 2));
  const stats = loaded.device.pool.stats;
  const samples: SoakSample[] = [];
  const t0 = performance.now();
  const sample = (images: number) => {
    gc?.();
    const m = process.memoryUsage();
    const s: SoakSample = {
      images,
      seconds: Math.round(performance.now() - t0) / 1000,
      rss_mb: mb(m.rss),
      heap_used_mb: mb(m.heapUsed),
      external_mb: mb(m.external),
      array_buffers_mb: mb(m.arrayBuffers),
      gpu_in_use_mb: mb(stats.inUse),
      gpu_pooled_mb: mb(stats.pooled),
      gpu_peak_mb: mb(stats.peak),
      gpu_allocations: stats.allocations,
      gpu_reuses: stats.reuses,
    };
    samples.push(s);
    onSample(s);
  };
  const one = async (i: number): Promise<void> => {
    const prompt = `a photo of a lighthouse at dusk, variant ${i}`;
    if (server) {
      const res = await fetch(`${server.url}/v1/images/generations`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt, size: b.size, n: 1, seed: i, response_format: 'b64_json' }),
        ...(io.signal ? { signal: io.signal } : {}),
      });
      const body = (await res.json()) as { data?: { b64_json?: string }[]; error?: { message?: string } };
      if (!res.ok || !body.data?.[0]?.b64_json) throw new Error(`bench soak: request ${i} failed: HTTP ${res.status} ${body.error?.message ?? ''}`.trim());
      return;
    }
    const request: ImageRequest = { prompt, n: 1, width, height, responseFormat: 'b64_json', model: undefined, seed: i, steps: undefined, guidance: undefined, negativePrompt: undefined };
    const images = await service.generate(request, io.signal ?? new AbortController().signal);
    if (images.length !== 1 || images[0]!.png.length === 0) throw new Error(`bench soak: generation ${i} gave no image`);
  };
  try {
    sample(0);
    for (let i = 1; i <= b.images; i++) {
      io.signal?.throwIfAborted();
      await one(i);
      if (i === 1 || i % b.every === 0 || i === b.images) sample(i);
    }
  } finally {
    await server?.close();
    loaded.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = samples.filter((s) => s.images >= warmup);
  return {
    mode: b.serve ? 'serve' : 'in-process',
    model: options.model,
    adapter: loaded.device.adapter.name,
    size: b.size,
    images: b.images,
    warmup_images: warmup,
    sample_every: b.every,
    seconds: Math.round(seconds * 1000) / 1000,
    images_per_s: Math.round((b.images / seconds) * 1000) / 1000,
    samples,
    ...soakVerdict(after),
    rule: GROWTH_RULE,
  };
}

/** `fewstep bench soak` from bench's flags: checks them, runs, prints a line per sample (or JSON). */
export async function runSoakCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const { UsageError } = await import('../args.js');
  const { modelOptions } = await import('../generation/flags.js');
  if (flags['model'] === undefined) throw new UsageError('bench soak needs --model <dir|id> (e.g. the tiny test model folder, or a folder from `fewstep bench write-model`)');
  const images = flags['images'] as number, every = flags['every'] as number, size = flags['size'] as string;
  if (!Number.isInteger(images) || images < 1) throw new UsageError(`--images must be ≥ 1, got ${images}`);
  if (!Number.isInteger(every) || every < 1) throw new UsageError(`--every must be ≥ 1, got ${every}`);
  if (!/^\d+x\d+$/.test(size)) throw new UsageError(`--size must be WIDTHxHEIGHT, got "${size}"`);
  const options = modelOptions({ ...flags, dtype: flags['dtype'] ?? 'f32', lora: [] });
  const json = Boolean(flags['json']);
  const res = await benchSoak(options, { images, serve: Boolean(flags['serve']), every, size }, io, (s) => {
    if (!json) io.stderr(`${String(s.images).padStart(5)} images  ${s.seconds.toFixed(1).padStart(7)} s  RSS ${s.rss_mb.toFixed(1)} MB  heap ${s.heap_used_mb.toFixed(1)} MB  GPU pool ${(s.gpu_in_use_mb + s.gpu_pooled_mb).toFixed(2)} MB (peak ${s.gpu_peak_mb.toFixed(2)}, ${s.gpu_allocations} allocations, ${s.gpu_reuses} reuses)\n`);
  });
  if (json) io.stdout(JSON.stringify(res, null, 2) + '\n');
  else {
    const g = (x: SoakGrowth) => `${x.first_mb} → ${x.last_mb} MB (${x.delta_mb >= 0 ? '+' : ''}${x.delta_mb})`;
    io.stdout(
      `${res.mode}: ${res.images} images of ${res.size} with ${res.model} on ${res.adapter} in ${res.seconds} s (${res.images_per_s} images/s); after ${res.warmup_images} warm-up images: ` +
        `RSS ${g(res.rss)}, heap ${g(res.heap)}, GPU pool ${g(res.gpu_pool)}, RSS slope ${res.rss_slope_mb_per_100_images} MB/100 images\n` +
        `grows after warm-up: ${res.grows_after_warmup} (rule: ${res.rule})\n`,
    );
  }
  return 0;
}
