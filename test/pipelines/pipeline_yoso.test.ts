// StableDiffusionPipeline vs diffusers 0.25.1 on golden case pipeline_yoso: SD1.5 tokenizer, clip_text_quickgelu,
// unet_sd15 with the lora_yoso LoRA fused (kohya keys, alpha/rank = 2), LCMScheduler from the SD1.5 config,
// 2 steps, guidance 1.5 (CFG with the empty negative prompt, one batch of [uncond, cond]), AutoencoderKL and
// TAESD; plus DDIM / Euler / DDPM from the same config. The LoRA goes in through fromPretrained's
// weightTransform hook (loadLora + loraTransform); the other runs reuse that pipeline's components.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny, StableDiffusionPipeline, loadLora, loraTransform, type LoraAdapter, type ProgressEvent } from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { componentDir, goldenRoot, openGolden, type GoldenCase } from '../models/golden';
import { checkRun, type PipelineCase } from './golden_pipeline';

const tokRoot = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;

let d: Device;
let g: GoldenCase;
let c: PipelineCase;
let base: StableDiffusionPipeline;
let taesd: AutoencoderTiny;
let lora: LoraAdapter;
let dir: string;
const events: ProgressEvent[] = [];

beforeAll(async () => {
  d = await gpuDevice();
  g = await openGolden('pipeline_yoso');
  c = g.caseJson as unknown as PipelineCase;
  // A diffusers folder assembled from the golden component folders (vae/ = the AutoencoderKL).
  dir = mkdtempSync(join(tmpdir(), 'fewstep-yoso-'));
  const link = (sub: string, from: string, names: string[], as?: string[]) => {
    mkdirSync(join(dir, sub), { recursive: true });
    names.forEach((n, i) => symlinkSync(join(from, n), join(dir, sub, as?.[i] ?? n)));
  };
  link('tokenizer', tokRoot, ['vocab.json', 'merges.txt']);
  link('tokenizer', join(tokRoot, 'sd15'), ['tokenizer_config.json', 'special_tokens_map.json']);
  link('text_encoder', join(goldenRoot, 'clip_text_quickgelu'), ['config.json', 'model.safetensors']);
  link('unet', join(goldenRoot, 'unet_sd15'), ['config.json', 'model.safetensors'], ['config.json', 'diffusion_pytorch_model.safetensors']);
  link('vae', join(goldenRoot, 'vae_kl'), ['config.json', 'model.safetensors']);
  mkdirSync(join(dir, 'scheduler'));
  // Every run's scheduler_config is the same SD1.5 (PNDM) config; the run names the class.
  writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(Object.values(c.runs)[0]!.scheduler_config));

  lora = await loadLora(nodeFiles, join(goldenRoot, 'lora_yoso', 'lora.safetensors'));
  base = await StableDiffusionPipeline.fromPretrained(dir, {
    device: d,
    io: nodeFiles,
    scheduler: 'LCMScheduler',
    weightTransform: (component) => loraTransform([lora], component),
    onProgress: (e) => events.push(e),
  });
  const [tdir, cleanup] = componentDir('taesd');
  try {
    taesd = await AutoencoderTiny.fromFolder(nodeFiles, tdir, d);
  } finally {
    cleanup();
  }
});

afterAll(async () => {
  base?.dispose();
  taesd?.dispose();
  await g?.io.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await closeDevice();
});

const pipeFor = (run: string) => {
  const r = c.runs[run]!;
  if (r.scheduler === 'LCMScheduler' && r.vae === 'vae_kl') return base;
  return StableDiffusionPipeline.fromComponents(
    { tokenizer: base.tokenizer, textEncoder: base.textEncoder, unet: base.unet, vae: r.vae === 'taesd' ? taesd : base.vae, schedulerConfig: r.scheduler_config },
    { scheduler: r.scheduler },
  );
};

describe('StableDiffusionPipeline golden pipeline_yoso', () => {
  it('loads through fromPretrained with the LoRA fused into every targeted UNet weight', async () => {
    lora.assertAllApplied('unet');
    expect(events.filter((e) => e.type === 'load' && e.status === 'end').map((e) => e.type === 'load' && e.component)).toEqual(['tokenizer', 'text_encoder', 'unet', 'vae']);
    expect(base.defaults).toEqual({ steps: 4, guidance: 1, width: 128, height: 128 });
    const want = await g.io.read('negative_input_ids', 'i32');
    expect(base.tokenizer.encode('').inputIds).toEqual([...want]);
    expect(c.prompts.flatMap((p) => base.tokenizer.encode(p).inputIds)).toEqual([...(await g.io.read('prompt_input_ids', 'i32'))]);
  });

  for (const run of ['lcm_2step_cfg1.5_vaekl', 'lcm_2step_cfg1.5_taesd', 'ddim_2step_cfg1.5_vaekl', 'euler_2step_cfg1.5_vaekl', 'ddpm_2step_cfg1.5_vaekl']) {
    it(run, async () => {
      const report = await checkRun(pipeFor(run), g.io, c, run);
      console.log(report.join('\n'));
    });
  }
});

describe('YOSO one-step informative initialisation', () => {
  // Reference: the model card's arithmetic in float64 — mean over the reference batch + unbiased std ·
  // ε₁, then add_noise(x, ε₂, T) = sqrt(ᾱ_T)·x + sqrt(1 − ᾱ_T)·ε₂ with LCM's ᾱ (SD1.5 betas).
  it('starts the 1-step LCM run from mean + std·noise noised to t=999, using the seed generator', async () => {
    const { TorchGenerator, LCMScheduler } = await import('@fewstep/models');
    const shape = [3, 4, 8, 8];
    const n = 3 * 256;
    const ref = new Float32Array(n);
    const rg = new TorchGenerator(11).randn(shape, 'f32') as Float32Array;
    for (let i = 0; i < n; i++) ref[i] = 0.7 * rg[i]! + (i % 256) / 256 - 0.5;
    const B = 2, seed = 99;
    let unetIn: Float32Array | undefined;
    await base.generate({
      prompt: ['a cat', 'a dog'].slice(0, B), seed, steps: 1, guidance: 1.5, init: { kind: 'informative', reference: { latents: { data: ref, shape } } },
      onStep: (s) => void (unetIn ??= Float32Array.from(s.unetSample.subarray(0, B * 256))),
    });
    // Expected, independently.
    const gen = new TorchGenerator(seed);
    const e1 = gen.randn([B, 4, 8, 8], 'f32') as Float32Array, e2 = gen.randn([B, 4, 8, 8], 'f32') as Float32Array;
    let m = 0;
    for (const v of ref) m += v;
    m /= n;
    let v2 = 0;
    for (const v of ref) v2 += (v - m) ** 2;
    const std = Math.sqrt(v2 / (n - 1));
    const sched = new LCMScheduler(c.runs[Object.keys(c.runs).find((k) => c.runs[k]!.scheduler === 'LCMScheduler')!]!.scheduler_config);
    sched.setTimesteps(1);
    expect(sched.timesteps).toEqual([999]);
    const ab = sched.alphasCumprod[999]!;
    let maxErr = 0;
    for (let i = 0; i < B * 256; i++) {
      const p = i % 256;
      const mean = (ref[p]! + ref[256 + p]! + ref[512 + p]!) / 3;
      const want = Math.sqrt(ab) * (mean + std * e1[i]!) + Math.sqrt(1 - ab) * e2[i]!;
      maxErr = Math.max(maxErr, Math.abs(unetIn![i]! - want));
    }
    // The CFG batch is [uncond…, cond…]; both halves get the same latents (LCM: scale_model_input is the identity).
    expect(maxErr).toBeLessThan(2e-6);
  });

  it('rejects a reference of the wrong shape or size', async () => {
    await expect(base.generate({ prompt: 'x', init: { kind: 'informative', reference: { latents: { data: new Float32Array(256), shape: [1, 4, 8, 8] } } } })).rejects.toThrow(
      'init.reference.latents: holds 1 latent; the informative init needs at least 2 (their mean and std)',
    );
    await expect(base.generate({ prompt: 'x', width: 128, init: { kind: 'informative', reference: { latents: { data: new Float32Array(512), shape: [2, 4, 8, 8] } } } })).rejects.toThrow(
      'width: 128 does not match init.reference.latents (8 × 8 = 64)',
    );
  });
});
