// StableDiffusionPipeline vs diffusers 0.25.1 on golden case pipeline_sdxs: SD2-style tokenizer (pad "!"),
// clip_text_gelu, unet_sdxs (no mid block), TAESD / AutoencoderKL, 1 step, guidance 0, for Euler (SDXS's
// own scheduler) and DDIM / DDPM / LCM built from the SDXS config. Every run of case.json is checked step
// by step (see golden_pipeline.ts for the tolerances); one run goes through fromPretrained on a
// diffusers-layout folder assembled from the golden component folders.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  AutoencoderKL, AutoencoderTiny, CLIPTextModel, CLIPTokenizer, StableDiffusionPipeline, TorchGenerator, UNet2DConditionModel, readConfig,
  type RGBImage,
} from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { componentDir, goldenRoot, openGolden, type GoldenCase } from '../models/golden';
import { checkRun, type PipelineCase } from './golden_pipeline';

const tokRoot = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;

let d: Device;
let g: GoldenCase;
let c: PipelineCase;
let tokenizer: CLIPTokenizer;
let textEncoder: CLIPTextModel;
let unet: UNet2DConditionModel;
let taesd: AutoencoderTiny;
let vaeKL: AutoencoderKL;
let unetConfig: Record<string, unknown>;

async function load<T>(name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const [dir, cleanup] = componentDir(name);
  try {
    return await fn(dir);
  } finally {
    cleanup();
  }
}

beforeAll(async () => {
  d = await gpuDevice();
  g = await openGolden('pipeline_sdxs');
  c = g.caseJson as unknown as PipelineCase;
  tokenizer = await CLIPTokenizer.fromFolder(nodeFiles, tokRoot, { configDir: join(tokRoot, 'sd2') });
  textEncoder = await load('clip_text_gelu', (dir) => CLIPTextModel.fromFolder(nodeFiles, dir, d));
  unet = await load('unet_sdxs', (dir) => UNet2DConditionModel.fromFolder(nodeFiles, dir, d));
  unetConfig = await readConfig(nodeFiles, join(goldenRoot, 'unet_sdxs'));
  taesd = await load('taesd', (dir) => AutoencoderTiny.fromFolder(nodeFiles, dir, d));
  vaeKL = await load('vae_kl', (dir) => AutoencoderKL.fromFolder(nodeFiles, dir, d));
});

afterAll(async () => {
  for (const m of [textEncoder, unet, taesd, vaeKL]) m?.dispose();
  await g?.io.close();
  await closeDevice();
});

const pipeFor = (run: string) => {
  const r = c.runs[run]!;
  return StableDiffusionPipeline.fromComponents(
    { tokenizer, textEncoder, unet, vae: r.vae === 'taesd' ? taesd : vaeKL, schedulerConfig: r.scheduler_config, unetConfig },
    { scheduler: r.scheduler },
  );
};

describe('StableDiffusionPipeline golden pipeline_sdxs', () => {
  it('tokenizes the prompts as diffusers (pad "!")', async () => {
    const want = await g.io.read('prompt_input_ids', 'i32');
    const got = c.prompts.flatMap((p) => tokenizer.encode(p).inputIds);
    expect(got).toEqual([...want]);
  });

  it('defaults: SDXS (no mid block) → 1 step, guidance 0, sample_size 16 × 8', () => {
    expect(pipeFor('euler_1step_cfg0_taesd').defaults).toEqual({ steps: 1, guidance: 0, width: 128, height: 128 });
  });

  // euler_1step_cfg0_vaekl runs through fromPretrained below.
  for (const run of ['euler_1step_cfg0_taesd', 'ddim_1step_cfg0_taesd', 'lcm_1step_cfg0_taesd', 'ddpm_1step_cfg0_taesd']) {
    it(run, async () => {
      const report = await checkRun(pipeFor(run), g.io, c, run);
      console.log(report.join('\n'));
    });
  }

  it('euler_1step_cfg0_vaekl via fromPretrained (diffusers folder, vae: "large" picks vae_large/)', async () => {
    const run = 'euler_1step_cfg0_vaekl';
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-sdxs-'));
    try {
      const link = (sub: string, from: string, names: string[]) => {
        mkdirSync(join(dir, sub), { recursive: true });
        for (const n of names) symlinkSync(join(from, n), join(dir, sub, n));
      };
      link('tokenizer', tokRoot, ['vocab.json', 'merges.txt']);
      link('tokenizer', join(tokRoot, 'sd2'), ['tokenizer_config.json', 'special_tokens_map.json']);
      link('text_encoder', join(goldenRoot, 'clip_text_gelu'), ['config.json', 'model.safetensors']);
      link('unet', join(goldenRoot, 'unet_sdxs'), ['config.json']);
      symlinkSync(join(goldenRoot, 'unet_sdxs', 'model.safetensors'), join(dir, 'unet', 'diffusion_pytorch_model.safetensors'));
      link('vae', join(goldenRoot, 'taesd'), ['config.json', 'model.safetensors']);
      link('vae_large', join(goldenRoot, 'vae_kl'), ['config.json', 'model.safetensors']);
      mkdirSync(join(dir, 'scheduler'));
      writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(c.runs[run]!.scheduler_config));
      writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.25.1' }));
      const stages: string[] = [];
      const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, vae: 'large', onProgress: (e) => void (e.type !== 'download' && e.status === 'end' && stages.push(e.type === 'load' ? `load ${e.component}` : e.stage)) });
      try {
        expect(pipe.vae).toBeInstanceOf(AutoencoderKL);
        expect(pipe.defaults).toEqual({ steps: 1, guidance: 0, width: 128, height: 128 });
        const report = await checkRun(pipe, g.io, c, run);
        console.log(report.join('\n'));
        expect(stages).toEqual(['load tokenizer', 'load text_encoder', 'load unet', 'load vae', 'tokenize', 'text_encoder', 'denoise', 'decode']);
        // Without latents the pipeline draws them from the seed: same as passing randn(seed) explicitly.
        await expect(pipe.generate({ prompt: 'x', width: 12 })).rejects.toThrow(/width: must be a multiple of 8 from 8 to 4096, got 12/);
      } finally {
        pipe.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('StableDiffusionPipeline behaviour (SDXS golden components)', () => {
  it('without latents, draws randn([B, 4, h, w]) from TorchGenerator(seed) × initNoiseSigma; batchSize repeats each prompt', async () => {
    const pipe = pipeFor('euler_1step_cfg0_taesd');
    const seed = 1234;
    const a = await pipe.generate({ prompt: 'a photo of a cat', batchSize: 2, seed });
    expect(a.images.length).toBe(2);
    expect(a.latents.shape).toEqual([2, 4, 16, 16]);
    expect(a.seed).toBe('1234');
    const z = new TorchGenerator(seed).randn([2, 4, 16, 16], 'f32') as Float32Array;
    const b = await pipe.generate({ prompt: ['a photo of a cat'], batchSize: 2, seed: 99n, init: { kind: 'latents', latents: { data: z, shape: [2, 4, 16, 16] } } });
    expect(b.latents.data).toEqual(a.latents.data);
    expect(b.images[1]!.data).toEqual(a.images[1]!.data);
    // Different noise per batch item → different images.
    expect(a.images[0]!.data).not.toEqual(a.images[1]!.data);
    const r = await pipe.generate({ prompt: 'x' });
    expect(Number(r.seed)).toBeGreaterThanOrEqual(0);
  });

  it('rejects bad options before any GPU work, as InvalidArgumentError naming the option (rules: null/generate-options.test.ts)', async () => {
    const pipe = pipeFor('euler_1step_cfg0_taesd');
    const err = await pipe.generate({ prompt: 'x', steps: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).field).toBe('steps');
    expect(pipe.plan({ prompt: 'x' })).toMatchObject({ steps: 1, guidance: 0, width: 128, height: 128 });
  });

  it('img2img: strength cuts the schedule (get_timesteps), encodes with the VAE (KL samples from the seed)', async () => {
    const u8 = await g.io.readBytes('euler_1step_cfg0_taesd.image_uint8');
    const img: RGBImage = { width: 128, height: 128, data: u8.slice(0, 128 * 128 * 3) };
    const tiny = pipeFor('ddim_1step_cfg0_taesd');
    const ts: number[] = [];
    const events: string[] = [];
    const a = await tiny.generate({
      prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 0.5 }, steps: 2, seed: 5, onStep: (s) => ts.push(s.timestep),
      onProgress: (e) => void (e.type === 'stage' && events.push(`${e.status} ${e.stage}${e.step !== undefined ? ` ${e.step + 1}/${e.steps}` : ''}`)),
    });
    // trailing spacing, 2 steps: [999, 499]; strength 0.5 → ⌊2·0.5⌋ = 1 step from index 1.
    expect(ts).toEqual([499]);
    // Each stage is announced when it starts (so a long UNet step shows as running) and again when it ends.
    expect(events).toEqual(['start tokenize', 'end tokenize', 'start text_encoder', 'end text_encoder', 'start encode_image', 'end encode_image', 'start denoise 1/1', 'end denoise 1/1', 'start decode', 'end decode']);
    expect([a.images[0]!.width, a.images[0]!.height]).toEqual([128, 128]);
    await tiny.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 1 }, steps: 2, seed: 5, onStep: (s) => ts.push(s.timestep) });
    expect(ts).toEqual([499, 999, 499]);
    // Neither steps nor strength: a one-step model runs its one step at strength 1 (SDXS's authors: only
    // steps = strength = 1 works for v0.9); strength alone gets the smallest schedule that runs one step.
    ts.length = 0;
    await tiny.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img }, seed: 5, onStep: (s) => ts.push(s.timestep) });
    expect(ts).toEqual([999]);
    ts.length = 0;
    await tiny.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 0.8 }, seed: 5, onStep: (s) => ts.push(s.timestep) });
    expect(ts).toEqual([499]);

    const kl = pipeFor('euler_1step_cfg0_vaekl');
    const k1 = await kl.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 0.5 }, steps: 2, seed: 5 });
    const k2 = await kl.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 0.5 }, steps: 2, seed: 5 });
    const k3 = await kl.generate({ prompt: 'a lighthouse', init: { kind: 'image', image: img, strength: 0.5 }, steps: 2, seed: 6 });
    expect(k2.latents.data).toEqual(k1.latents.data);
    expect(k3.latents.data).not.toEqual(k1.latents.data);
  });

  it('f16 (fromPretrained dtype f16): euler_1step_cfg0_taesd close to the f32 golden, TAESD in f32 by default and in f16 with vaeDtype f16', async () => {
    if (!d.features.f16) return console.log('f16: adapter has no shader-f16, skipped');
    const run = 'euler_1step_cfg0_taesd';
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-sdxs16-'));
    try {
      const link = (sub: string, from: string, names: string[]) => {
        mkdirSync(join(dir, sub), { recursive: true });
        for (const n of names) symlinkSync(join(from, n), join(dir, sub, n));
      };
      link('tokenizer', tokRoot, ['vocab.json', 'merges.txt']);
      link('tokenizer', join(tokRoot, 'sd2'), ['tokenizer_config.json', 'special_tokens_map.json']);
      link('text_encoder', join(goldenRoot, 'clip_text_gelu'), ['config.json', 'model.safetensors']);
      link('unet', join(goldenRoot, 'unet_sdxs'), ['config.json', 'model.safetensors']);
      link('vae', join(goldenRoot, 'taesd'), ['config.json', 'model.safetensors']);
      mkdirSync(join(dir, 'scheduler'));
      writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(c.runs[run]!.scheduler_config));
      const latentsIn = (await g.io.read('latents_in', 'f32')) as Float32Array;
      const ref = (await g.io.read(`${run}.step0.latents_after`, 'f32')) as Float32Array;
      const img = (await g.io.read(`${run}.image`, 'f32')) as Float32Array;
      const results: { latents: Float32Array; image: Float32Array; u8: Uint8Array }[] = [];
      // The default (TAESD kept in f32 under dtype f16), then vaeDtype 'f16' (the whole pipeline in f16, as before).
      for (const vaeDtype of [undefined, 'f16'] as const) {
        const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, dtype: 'f16', vaeDtype });
        try {
          expect([pipe.textEncoder.dtype, pipe.unet.dtype, pipe.vae.className, pipe.vae.dtype]).toEqual(['f16', 'f16', 'AutoencoderTiny', vaeDtype ?? 'f32']);
          const res = await pipe.generate({ prompt: c.prompts, seed: 0, init: { kind: 'latents', latents: { data: latentsIn, shape: c.latent_shape } } });
          // f16 weights/activations (f32 accumulation): eps error ~2e-3 (unet f16 golden) × σ = 14.6 → measured
          // 3.1e-2 max abs on latents of magnitude ≤ 67, 9.4e-3 on the image (lavapipe); ~3× headroom.
          const r = expectClose(res.latents.data, ref, { atol: 0.1, rtol: 1e-2 }, `${run} f16 final latents`);
          const ri = expectClose(res.imageFloat.data, img, { atol: 3e-2, rtol: 0 }, `${run} f16 image (decoder ${vaeDtype ?? 'f32'})`);
          console.log(`f16, decoder ${vaeDtype ?? 'f32'}: latents max abs ${r.maxAbs.toExponential(2)}, image max abs ${ri.maxAbs.toExponential(2)}`);
          results.push({ latents: res.latents.data, image: res.imageFloat.data, u8: Uint8Array.from(res.images.flatMap((i) => [...i.data])) });
        } finally {
          pipe.dispose();
        }
      }
      // Same latents (the UNet is f16 both times); the decoders differ.
      expect(results[1]!.latents).toEqual(results[0]!.latents);
      let maxAbs = 0, changed = 0;
      results[0]!.image.forEach((v, i) => (maxAbs = Math.max(maxAbs, Math.abs(v - results[1]!.image[i]!))));
      results[0]!.u8.forEach((v, i) => (changed += v !== results[1]!.u8[i]! ? 1 : 0));
      expect(maxAbs).toBeGreaterThan(0);
      console.log(`f16 pipeline, TAESD f32 vs f16: image max abs diff ${maxAbs.toExponential(2)}, uint8 values changed ${changed}/${results[0]!.u8.length}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
