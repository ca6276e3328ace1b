// The pipeline API beyond the goldens' own runs, on the tiny SDXS-style model (golden components):
// clip_skip against transformers, promptEmbeds, images of another size (fit as diffusers' image processor
// does), YOSO's informative init from reference images, and cancellation through an AbortSignal (loading and
// generating), which must leave nothing allocated on the GPU.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AbortError, ResourceLimitError, Tensor, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny, GeneratorList, StableDiffusionPipeline, TorchGenerator, fitImage, type ProgressEvent, type RGBImage } from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';
import { openGolden } from '../models/golden';

const work = mkdtempSync(join(tmpdir(), 'fewstep-pipe-api-'));
const model = buildTinyModel(join(work, 'model'));
let d: Device;
let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  d = await gpuDevice();
  pipe = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
});
afterAll(async () => {
  pipe?.dispose();
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

/** A deterministic test picture (smooth gradients and a few edges). */
function picture(w: number, h: number, seed = 1): RGBImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      data[o] = (x * 255) / w;
      data[o + 1] = (y * 255) / h;
      data[o + 2] = ((x + y * seed) % 32) * 8;
    }
  }
  return { width: w, height: h, data };
}
const same = (a: RGBImage, b: RGBImage) => a.width === b.width && a.height === b.height && Buffer.from(a.data).equals(Buffer.from(b.data));

describe('clip_skip and promptEmbeds', () => {
  it('clipSkip 1 gives final_layer_norm(hidden_states[-2]) for the prompt, as diffusers 0.25.1 (golden clip_text_gelu)', async () => {
    const g = await openGolden('clip_text_gelu');
    try {
      const names: string[] = JSON.parse(readFileSync(join(g.dir, 'case.json'), 'utf8')).what.match(/\[(.*?)\]/)[1].split(', ').map((s: string) => s.replace(/'/g, ''));
      const cases = JSON.parse(readFileSync(new URL('../fixtures/golden/tokenizer_clip/tokenizer_clip.json', import.meta.url), 'utf8')).cases as { id: string; prompt: string }[];
      const prompts = names.map((n) => cases.find((c) => c.id === n)!.prompt);
      const ids = await g.io.read('in.input_ids', 'i32');
      expect(prompts.flatMap((p) => pipe.tokenizer.encode(p).inputIds)).toEqual([...ids]);
      const want = (await g.io.read('out.clip_skip_1_prompt_embeds', 'f32')) as Float32Array;
      const tol = g.caseJson.outputs['out.clip_skip_1_prompt_embeds']!.suggested;
      const embeds = await pipe.encodePrompt(pipe.plan({ prompt: prompts, clipSkip: 1 }));
      try {
        expectClose(await embeds.readF32(), want, tol, 'clip_skip 1 prompt embeds');
      } finally {
        embeds.dispose();
      }
      // With CFG the negative half is last_hidden_state (diffusers applies clip_skip to the prompt only).
      const cfg = await pipe.encodePrompt(pipe.plan({ prompt: prompts, negativePrompt: prompts, clipSkip: 1, guidance: 2 }));
      try {
        const all = await cfg.readF32();
        expectClose(all.subarray(0, want.length), (await g.io.read('out.last_hidden_state', 'f32')) as Float32Array, g.caseJson.outputs['out.last_hidden_state']!.suggested, 'uncond half');
        expectClose(all.subarray(want.length), want, tol, 'cond half');
      } finally {
        cfg.dispose();
      }
    } finally {
      await g.io.close();
    }
  });

  it('promptEmbeds (diffusers prompt_embeds) give the same image as the prompt they came from', async () => {
    const t = await pipe.encodePrompt(pipe.plan({ prompt: 'a red boat' }));
    const embeds = { data: await t.readF32(), shape: [...t.shape] };
    t.dispose();
    const a = await pipe.generate({ prompt: 'a red boat', seed: 3, width: 64, height: 64 });
    const b = await pipe.generate({ promptEmbeds: embeds, seed: 3, width: 64, height: 64 });
    expect(same(a.images[0]!, b.images[0]!)).toBe(true);
  });
});

describe('prompt-embedding cache', () => {
  /** Runs `fn` counting text-encoder forward calls and the text_encoder end events' `cached`. */
  async function counting<T>(p: StableDiffusionPipeline, fn: (onProgress: (e: ProgressEvent) => void) => Promise<T>): Promise<{ r: T; calls: number; cached: (boolean | undefined)[] }> {
    const spy = vi.spyOn(p.textEncoder, 'forward');
    const cached: (boolean | undefined)[] = [];
    try {
      const r = await fn((e) => {
        if (e.type === 'stage' && e.stage === 'text_encoder' && e.status === 'end') cached.push(e.cached);
      });
      return { r, calls: spy.mock.calls.length, cached };
    } finally {
      spy.mockRestore();
    }
  }

  it('a repeated prompt skips the text encoder and gives the identical image; another prompt runs it', async () => {
    const p = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
    try {
      const gen = (prompt: string, seed: number) => (onProgress: (e: ProgressEvent) => void) => p.generate({ prompt, seed, width: 64, height: 64, onProgress });
      const first = await counting(p, gen('a lighthouse at dusk', 5));
      expect([first.calls, first.cached]).toEqual([1, [false]]);
      const d0 = d.dispatchCount;
      const again = await counting(p, gen('a lighthouse at dusk', 5));
      expect([again.calls, again.cached]).toEqual([0, [true]]);
      expect(same(first.r.images[0]!, again.r.images[0]!)).toBe(true);
      // Fewer dispatches than the first run by the encoder's (the first run's count includes them).
      const d1 = d.dispatchCount;
      const other = await counting(p, gen('a lighthouse at dawn', 5));
      expect([other.calls, other.cached]).toEqual([1, [false]]);
      expect(d.dispatchCount - d1).toBeGreaterThan(d1 - d0);
      expect(same(first.r.images[0]!, other.r.images[0]!)).toBe(false);
      // Another seed, same prompt: still cached (the key is the token ids, not the request).
      expect((await counting(p, gen('a lighthouse at dusk', 6))).calls).toBe(0);
      expect(p.promptCache.stats).toEqual({ hits: 2, misses: 2 });
    } finally {
      p.dispose();
    }
  });

  it('with CFG the prompt and negative prompt are cached apart; clip_skip is part of the key; results equal an uncached pipeline', async () => {
    const p = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
    const off = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, promptCacheSize: 0 });
    try {
      const req = (negativePrompt: string, clipSkip = 0) => ({ prompt: 'a red boat', negativePrompt, guidance: 3, clipSkip, seed: 2, width: 64, height: 64 });
      const gen = (o: ReturnType<typeof req>) => (onProgress: (e: ProgressEvent) => void) => p.generate({ ...o, onProgress });
      expect((await counting(p, gen(req('blurry')))).calls).toBe(2); // uncond, cond
      const hit = await counting(p, gen(req('blurry')));
      expect([hit.calls, hit.cached]).toEqual([0, [true]]);
      const neg = await counting(p, gen(req('dark')));
      expect([neg.calls, neg.cached]).toEqual([1, [false]]); // the prompt half came from the cache
      const skip = await counting(p, gen(req('dark', 1)));
      expect(skip.calls).toBe(1); // clip_skip changes the prompt half only (diffusers 0.25.1)
      for (const [r, o] of [[hit.r, req('blurry')], [neg.r, req('dark')], [skip.r, req('dark', 1)]] as const) {
        const ref = await off.generate(o);
        expect(same(ref.images[0]!, r.images[0]!), `${o.negativePrompt} ${o.clipSkip}`).toBe(true);
      }
      // The uncached pipeline ran its encoder every time and kept nothing.
      expect(off.promptCache.size).toBe(0);
      expect((await counting(off, (onProgress) => off.generate({ ...req('dark'), onProgress }))).calls).toBe(2);
      // A batch repeats each prompt: its rows are another key.
      expect((await counting(p, (onProgress) => p.generate({ ...req('dark'), batchSize: 2, onProgress }))).calls).toBe(2);
    } finally {
      p.dispose();
      off.dispose();
    }
  });

  it('is a bounded LRU whose tensors it owns: evicted entries and dispose() free their GPU memory', async () => {
    const before = d.pool.stats.inUse;
    // Preloaded, so what the pool holds after loading is the weights alone (by default they arrive at first use).
    const p = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, promptCacheSize: 2, preload: true });
    const loaded = d.pool.stats.inUse;
    const calls = async (prompt: string) => (await counting(p, () => p.encodePrompt(p.plan({ prompt })).then((t) => t.dispose()))).calls;
    expect([await calls('one'), await calls('two'), await calls('one')]).toEqual([1, 1, 0]);
    expect(p.promptCache.size).toBe(2);
    const two = p.promptCache.bytes;
    expect(d.pool.stats.inUse - loaded).toBe(two);
    expect(await calls('three')).toBe(1); // evicts 'two', the least recently used
    expect([p.promptCache.size, p.promptCache.bytes]).toEqual([2, two]);
    expect(d.pool.stats.inUse - loaded).toBe(two);
    expect([await calls('one'), await calls('two')]).toEqual([0, 1]);
    // A view handed out outlives eviction and clearing.
    const kept = await p.encodePrompt(p.plan({ prompt: 'two' }));
    p.clearPromptCache();
    expect(p.promptCache.size).toBe(0);
    expect(d.pool.stats.inUse - loaded).toBe(kept.buffer.size);
    expect((await kept.readF32()).every(Number.isFinite)).toBe(true);
    kept.dispose();
    expect(await calls('one')).toBe(1);
    p.dispose();
    expect(p.promptCache.size).toBe(0);
    expect(d.pool.stats.inUse).toBe(before);
    expect(() => StableDiffusionPipeline.fromComponents({ tokenizer: p.tokenizer, textEncoder: p.textEncoder, unet: p.unet, vae: p.vae, schedulerConfig: p.schedulerConfig }, { promptCacheSize: -1 })).toThrow(/promptCacheSize/);
  });
});

describe('one seed per image (diffusers generator=[…])', () => {
  it('image i of a batch with seeds [s0, s1, …] is the batch-of-one image for seed i, also with a stochastic scheduler', async () => {
    const ddpm = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, scheduler: 'DDPMScheduler' });
    try {
      for (const p of [pipe, ddpm]) {
        const prompts = ['a red boat', 'a green tree', 'a blue house'];
        const batch = await p.generate({ prompt: prompts, seed: [11, 12, 13], steps: 2, width: 64, height: 64 });
        for (const [i, prompt] of prompts.entries()) {
          const one = await p.generate({ prompt, seed: 11 + i, steps: 2, width: 64, height: 64 });
          expect(same(batch.images[i]!, one.images[0]!), `${p.createScheduler().className} image ${i}`).toBe(true);
        }
      }
    } finally {
      ddpm.dispose();
    }
    expect(() => pipe.plan({ prompt: ['a', 'b'], seed: [1] })).toThrow('seed: a list of seeds needs one per image: 2 images, 1 seeds');
  });
});

describe('batches larger than a binding', () => {
  it('a batch whose tensors exceed maxStorageBufferBindingSize runs in parts (UNet, decoder), with the same results', async () => {
    /** The largest binding one image needs in `stage` (at this size the activations outgrow the weights). */
    const largestBinding = async (stage: 'denoise' | 'decode', size: number) => {
      let largest = 0, tracking = false;
      const binding = Tensor.prototype.binding;
      Tensor.prototype.binding = function (this: Tensor, what?: string) {
        const b = binding.call(this, what);
        if (tracking) largest = Math.max(largest, b.size ?? 0);
        return b;
      };
      try {
        await pipe.generate({ prompt: 'a red boat', seed: 21, width: size, height: size, onProgress: (e) => void (e.type === 'stage' && e.stage === stage && (tracking = e.status === 'start')) });
      } finally {
        Tensor.prototype.binding = binding;
      }
      return largest;
    };
    const limit = (bytes: number) => Object.defineProperty(d, 'maxBinding', { value: Math.floor(bytes), configurable: true });
    const unlimit = () => delete (d as unknown as { maxBinding?: number }).maxBinding;
    const prompts = ['a red boat', 'a green tree', 'a blue house'], seeds = [21, 22, 23];
    const small = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
    const rows = (small as unknown as { partRows: { unet: number; decode: number } }).partRows;
    try {
      // UNet at 256² (32² latents): room for 1.5 images' activations; the text encoder runs first, unrestricted.
      const opts = { prompt: prompts, seed: seeds, width: 256, height: 256 };
      const wholeUnet: Float32Array[] = [];
      const whole = await pipe.generate({ ...opts, onStep: (t) => void wholeUnet.push(t.unetOut) });
      const plan = small.plan(opts);
      const unetLimit = 1.5 * (await largestBinding('denoise', 256));
      const context = await small.encodePrompt(plan);
      try {
        const scheduler = small.createScheduler();
        const generator = new GeneratorList(plan.seeds!);
        const start = await small.prepareLatents(plan, scheduler, generator);
        limit(unetLimit);
        const parts: Float32Array[] = [];
        const latents = await small.denoise(plan, { ...start, context, scheduler, generator }, undefined, (t) => void parts.push(t.unetOut));
        expect(rows.unet).toBeLessThan(3);
        parts.forEach((p, i) => expect(Buffer.from(p.buffer).equals(Buffer.from(wholeUnet[i]!.buffer)), `UNet output, step ${i}`).toBe(true));
        expect(Buffer.from(latents.buffer).equals(Buffer.from(whole.latents.data.buffer))).toBe(true);
      } finally {
        unlimit();
        context.dispose();
      }
      // The decoder at 64²: room for 1.5 decoded images.
      const opts64 = { prompt: prompts, seed: seeds, width: 64, height: 64 };
      const whole64 = await pipe.generate(opts64);
      limit(1.5 * (await largestBinding('decode', 64)));
      const out = await small.generate(opts64);
      expect(rows.decode).toBeLessThan(3);
      for (let i = 0; i < 3; i++) expect(same(out.images[i]!, whole64.images[i]!), `image ${i}`).toBe(true);
      // A limit no single image fits: one clear error naming the tensor.
      limit(1000);
      await expect(small.decode(whole64.latents.data, whole64.latents.shape)).rejects.toThrow(/more than this adapter's maxStorageBufferBindingSize \(1000\)/);
    } finally {
      unlimit();
      small.dispose();
    }
  });
});

describe('images of another size', () => {
  it('an init image is fit to width × height (crop by default; fit and stretch on request), as if resized first', async () => {
    const src = picture(100, 72);
    for (const mode of ['crop', 'fit', 'stretch'] as const) {
      const a = await pipe.generate({ prompt: 'a cat', seed: 4, width: 64, height: 64, init: { kind: 'image', image: src }, ...(mode === 'crop' ? {} : { resize: mode }) });
      const b = await pipe.generate({ prompt: 'a cat', seed: 4, init: { kind: 'image', image: fitImage(src, 64, 64, mode) } });
      expect(same(a.images[0]!, b.images[0]!), mode).toBe(true);
    }
    // Without width/height the output takes the image's size, floored to a multiple of 8.
    const own = await pipe.generate({ prompt: 'a cat', seed: 4, init: { kind: 'image', image: picture(70, 51) } });
    expect([own.images[0]!.width, own.images[0]!.height]).toEqual([64, 48]);
  });

  it("YOSO's informative init from reference images = from their VAE latents (× scaling_factor)", async () => {
    const imgs = [picture(64, 64, 1), picture(64, 64, 3), picture(64, 64, 5)];
    const vae = pipe.vae as AutoencoderTiny;
    const lat: number[] = [];
    for (const img of imgs) {
      const x = new Float32Array(3 * 64 * 64);
      for (let p = 0; p < 64 * 64; p++) for (let c = 0; c < 3; c++) x[c * 4096 + p] = Math.fround(Math.fround(2 * Math.fround(img.data[p * 3 + c]! / 255)) - 1);
      const z = await d.scope(async () => vae.encode(Tensor.from(d, x, [1, 3, 64, 64])).readF32());
      lat.push(...z.map((v) => Math.fround(v * pipe.scalingFactor)));
    }
    const a = await pipe.generate({ prompt: 'a cat', seed: 9, init: { kind: 'informative', reference: { images: imgs } } });
    const b = await pipe.generate({ prompt: 'a cat', seed: 9, init: { kind: 'informative', reference: { latents: { data: Float32Array.from(lat), shape: [3, 4, 8, 8] } } } });
    expect(same(a.images[0]!, b.images[0]!)).toBe(true);
    const plain = await pipe.generate({ prompt: 'a cat', seed: 9, width: 64, height: 64 });
    expect(same(a.images[0]!, plain.images[0]!)).toBe(false);
  });
});

describe('cancellation', () => {
  it('generate: an aborted signal stops at the next stage or dispatch with AbortError, frees its tensors, and the pipeline still works', async () => {
    const before = d.pool.stats.inUse;
    const cacheBefore = pipe.promptCache.bytes;
    const pre = new AbortController();
    pre.abort();
    await expect(pipe.generate({ prompt: 'x', seed: 1, width: 64, height: 64, signal: pre.signal })).rejects.toBeInstanceOf(AbortError);
    for (const at of ['text_encoder', 'denoise', 'decode']) {
      const ctl = new AbortController();
      const seen: string[] = [];
      const onProgress = (e: ProgressEvent) => {
        if (e.type !== 'stage') return;
        seen.push(`${e.status} ${e.stage}`);
        if (e.status === 'start' && e.stage === at) ctl.abort();
      };
      const err = await pipe.generate({ prompt: 'x', seed: 1, width: 64, height: 64, signal: ctl.signal, onProgress }).catch((e: unknown) => e);
      expect(err, at).toBeInstanceOf(AbortError);
      expect((err as AbortError).code).toBe('aborted');
      expect(seen.at(-1), at).toBe(`start ${at}`);
      // What the text encoder made before the abort stays in the prompt cache (its own memory); nothing else.
      expect(d.pool.stats.inUse - pipe.promptCache.bytes, `GPU memory in use after aborting at ${at}`).toBe(before - cacheBefore);
    }
    const ok = await pipe.generate({ prompt: 'x', seed: 1, width: 64, height: 64 });
    expect(ok.images.length).toBe(1);
  });

  it('fromPretrained: aborting between components frees what was loaded', async () => {
    const before = d.pool.stats.inUse;
    const ctl = new AbortController();
    const loaded: string[] = [];
    const onProgress = (e: ProgressEvent) => {
      if (e.type === 'load' && e.status === 'end') {
        loaded.push(e.component);
        if (e.component === 'unet') ctl.abort();
      }
    };
    await expect(StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, signal: ctl.signal, onProgress })).rejects.toBeInstanceOf(AbortError);
    expect(loaded).toEqual(['tokenizer', 'text_encoder', 'unet']);
    expect(d.pool.stats.inUse).toBe(before);
    // Aborted while the UNet's weights upload: stops at the next upload, the partial UNet is freed too.
    const mid = new AbortController();
    const started: string[] = [];
    const onStart = (e: ProgressEvent) => {
      if (e.type === 'load' && e.status === 'start') {
        started.push(e.component);
        if (e.component === 'unet') mid.abort();
      }
    };
    await expect(StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, signal: mid.signal, onProgress: onStart })).rejects.toBeInstanceOf(AbortError);
    expect(started).toEqual(['tokenizer', 'text_encoder', 'unet']);
    expect(d.pool.stats.inUse).toBe(before);
  });

  it('the seed generator is torch-exact whatever was aborted before', async () => {
    const z = new TorchGenerator(1).randn([1, 4, 8, 8], 'f32') as Float32Array;
    const r = await pipe.generate({ prompt: 'x', seed: 1, width: 64, height: 64, init: { kind: 'latents', latents: { data: z, shape: [1, 4, 8, 8] } } });
    const s = await pipe.generate({ prompt: 'x', seed: 1, width: 64, height: 64 });
    expect(same(r.images[0]!, s.images[0]!)).toBe(true);
  });
});

// By default fromPretrained reads no weights: each is read from its file when a kernel first needs it and kept
// (ParameterCache with no budget, paced against the GPU on the first image). The images are the preloaded
// pipeline's, the second image reads nothing more, weights never used are never read, and freeing the pipeline
// gives everything back.
describe('weights read on first use (the default) and preload', () => {
  it('loads nothing up front, reads each weight once, and gives the preloaded images', async () => {
    const req = { prompt: ['a red boat', 'a cat'], guidance: 2, steps: 2, width: 64, height: 48, seed: 5 };
    const pre = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, preload: true });
    const preloaded = d.pool.stats.inUse;
    let want;
    try {
      want = await pre.generate(req);
    } finally {
      pre.dispose();
    }
    await d.trimMemory();
    const before = d.pool.stats.inUse;
    const weightBytes = preloaded - before;
    expect(weightBytes).toBeGreaterThan(1 << 20);
    const lazy = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
    try {
      expect(d.pool.stats.inUse).toBe(before); // nothing read yet
      const held: number[] = [];
      for (let run = 0; run < 2; run++) {
        const got = await lazy.generate(req);
        expect(got.images.map((im, i) => same(im, want.images[i]!))).toEqual([true, true]);
        expect(Buffer.from(got.latents.data.buffer).equals(Buffer.from(want.latents.data.buffer))).toBe(true);
        held.push(d.pool.stats.inUse - before - lazy.promptCache.bytes);
      }
      // The weights the first image needed stay (the second reads nothing more); the ones text-to-image never
      // uses (TAESD's encoder) are never read.
      expect(held[1]).toBe(held[0]);
      expect(held[0]).toBeGreaterThan(weightBytes / 2);
      expect(held[0]).toBeLessThan(weightBytes);
    } finally {
      lazy.dispose();
    }
    await d.trimMemory();
    expect(d.pool.stats.inUse).toBe(before);
    await expect(StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, preload: 'yes' as never })).rejects.toThrow('StableDiffusionPipeline.fromPretrained: preload must be true or false, got "yes"');
  });
});
