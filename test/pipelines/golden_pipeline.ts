// Shared driver for the pipeline goldens (pipeline_sdxs, pipeline_yoso): runs one case.json `run`
// through StableDiffusionPipeline.generate and compares every step (UNet input/output, timestep,
// latents after step), the stored scheduler noise against our TorchGenerator, the final latents,
// the float image and the uint8 image.
import { expect } from 'vitest';
import { TorchGenerator, type GenerateOptions, type StableDiffusionPipeline, type StepTrace } from '@fewstep/models';
import type { SafetensorsFile } from '@fewstep/tensor';
import { expectClose, type Tol } from '../helpers/compare';

export interface ErrStats {
  max_abs_err_f32_vs_f64: number;
  max_rel_err_f32_vs_f64: number;
  ref_max_abs: number;
}

export interface PipelineRun {
  scheduler: string;
  scheduler_config: Record<string, unknown>;
  timesteps: number[];
  init_noise_sigma: number;
  num_inference_steps: number;
  guidance_scale: number;
  do_classifier_free_guidance: boolean;
  vae: 'taesd' | 'vae_kl';
  vae_scaling_factor: number;
  generator_seed: number;
  scheduler_noise_tensors: number;
  unet_calls: number;
  image_f32_vs_f64: ErrStats;
  final_latents_f32_vs_f64: ErrStats;
}

export interface PipelineCase {
  prompts: string[];
  latent_shape: number[];
  image_size: [number, number];
  runs: Record<string, PipelineRun>;
}

/**
 * Tolerances, all derived from case.json's f32-vs-f64 columns (PyTorch's own float32 error on this
 * very run, measured against a float64 replay):
 *  - final latents: |got − ref| ≤ max(10 × max_abs_err_f32_vs_f64, 1e-5). Our GPU float32 differs
 *    from torch's CPU float32 by accumulation order only, i.e. an error of the same kind and size as
 *    torch's own f32-vs-f64 error; 10× is the margin the component goldens use (`suggested`).
 *  - per-step tensors (UNet input/output, latents after step): the same relative budget scaled to the
 *    tensor, max(10 × max_rel_err(final latents) × max|ref|, 1e-5).
 *  - float image: max(10 × image max_abs_err_f32_vs_f64, 1e-5) — images are in [0, 1] so 1e-5 is
 *    ~1/400 of a uint8 step.
 *  - uint8: within ±1 on ≥ 99.5 % of values (a float within 1e-5 of a .5 boundary may round the other way).
 */
export function tolerances(run: PipelineRun) {
  const lat = run.final_latents_f32_vs_f64;
  return {
    latents: { atol: Math.max(10 * lat.max_abs_err_f32_vs_f64, 1e-5), rtol: 0 } as Tol,
    perStep: (ref: Float32Array): Tol => {
      let m = 0;
      for (const v of ref) m = Math.max(m, Math.abs(v));
      return { atol: Math.max(10 * lat.max_rel_err_f32_vs_f64 * m, 1e-5), rtol: 0 };
    },
    image: { atol: Math.max(10 * run.image_f32_vs_f64.max_abs_err_f32_vs_f64, 1e-5), rtol: 0 } as Tol,
  };
}

const readF32 = async (io: SafetensorsFile, k: string) => (await io.read(k, 'f32')) as Float32Array;

export interface CheckRunOptions {
  /** The io.safetensors key of the latents passed as `latents=` (default 'latents_in'). */
  latentsKey?: string;
  /** Extra generate() options (e.g. a control image). */
  generate?: Partial<GenerateOptions>;
  /** Receives every step's trace (for case-specific checks). */
  traces?: StepTrace[];
}

/** Runs `name` on `pipe` and checks everything; returns a one-line-per-tensor error report. */
export async function checkRun(pipe: StableDiffusionPipeline, io: SafetensorsFile, c: PipelineCase, name: string, opts: CheckRunOptions = {}): Promise<string[]> {
  const run = c.runs[name]!;
  const tol = tolerances(run);
  const report: string[] = [];
  const latentsKey = opts.latentsKey ?? 'latents_in';
  const latentsIn = await readF32(io, latentsKey);
  const shape = io.info(latentsKey).shape;

  // The torch generator reproduces every noise tensor the scheduler drew (latents are given, so the
  // scheduler's draws are the generator's first ones).
  const g = new TorchGenerator(run.generator_seed);
  for (let j = 0; j < run.scheduler_noise_tensors; j++) {
    const want = await readF32(io, `${name}.scheduler_noise${j}`);
    const got = g.randn(io.info(`${name}.scheduler_noise${j}`).shape, 'f32');
    const bad = want.findIndex((v, i) => v !== got[i]);
    expect(bad, `${name}: TorchGenerator(${run.generator_seed}) draw ${j} differs from scheduler_noise${j} at [${bad}]`).toBe(-1);
  }

  const traces: StepTrace[] = [];
  const res = await pipe.generate({
    ...opts.generate,
    prompt: c.prompts,
    steps: run.num_inference_steps,
    guidance: run.guidance_scale,
    width: c.image_size[1],
    height: c.image_size[0],
    seed: run.generator_seed,
    init: { kind: 'latents', latents: { data: latentsIn, shape } },
    onStep: (s) => {
      traces.push(s);
      opts.traces?.push(s);
    },
  });

  // Per step first, so a failure names the first step (and tensor) that went wrong.
  expect(traces.length, `${name}: UNet calls`).toBe(run.unet_calls);
  for (const [i, s] of traces.entries()) {
    const pre = `${name}.step${i}`;
    const ts = (await io.read(`${pre}.unet_timestep`, 'f32'))[0]!;
    expect(s.timestep, `${pre}.unet_timestep`).toBe(ts);
    expect(s.timestep, `${pre}: case.json timesteps`).toBe(run.timesteps[i]);
    for (const [key, got] of [['unet_sample', s.unetSample], ['unet_out', s.unetOut], ['latents_after', s.latents]] as const) {
      const ref = await readF32(io, `${pre}.${key}`);
      const t = tol.perStep(ref);
      const r = expectClose(got, ref, t, `${pre}.${key}`);
      report.push(`${pre}.${key}: max abs ${r.maxAbs.toExponential(2)} (atol ${t.atol.toExponential(2)})`);
    }
  }

  const last = await readF32(io, `${name}.step${run.unet_calls - 1}.latents_after`);
  expect(res.latents.shape).toEqual(shape);
  const rl = expectClose(res.latents.data, last, tol.latents, `${name} final latents`);
  report.push(`${name} final latents: max abs ${rl.maxAbs.toExponential(2)} (atol ${tol.latents.atol.toExponential(2)})`);

  const imgRef = await readF32(io, `${name}.image`);
  expect(res.imageFloat.shape).toEqual(io.info(`${name}.image`).shape);
  const ri = expectClose(res.imageFloat.data, imgRef, tol.image, `${name} image (float)`);
  report.push(`${name} image: max abs ${ri.maxAbs.toExponential(2)} (atol ${tol.image.atol.toExponential(2)})`);

  const u8 = await io.readBytes(`${name}.image_uint8`);
  const [B, H, W] = io.info(`${name}.image_uint8`).shape as [number, number, number];
  expect(res.images.length).toBe(B);
  let off1 = 0, exact = 0, maxDiff = 0;
  for (let b = 0; b < B; b++) {
    const img = res.images[b]!;
    expect([img.width, img.height]).toEqual([W, H]);
    for (let i = 0; i < H * W * 3; i++) {
      const d = Math.abs(img.data[i]! - u8[b * H * W * 3 + i]!);
      if (d === 0) exact++;
      if (d > 1) off1++;
      maxDiff = Math.max(maxDiff, d);
    }
  }
  const n = B * H * W * 3;
  report.push(`${name} uint8: ${exact}/${n} equal, ${off1} off by more than 1 (max ${maxDiff})`);
  expect((n - off1) / n, `${name} uint8: fraction within ±1`).toBeGreaterThanOrEqual(0.995);
  expect(res.seed).toBe(String(run.generator_seed));
  expect(Object.keys(res.timings)).toEqual(expect.arrayContaining(['tokenize', 'text_encoder', 'denoise', 'denoise.0', 'decode']));
  return report;
}

