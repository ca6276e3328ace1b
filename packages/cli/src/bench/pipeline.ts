/**
 * `fewstep bench pipeline`: one whole text-to-image pass at full size with deterministic random
 * weights in a real config (no download): text encoder → UNet (1 step, or a CFG batch of 2 for
 * configs that use guidance) → decoder. Reports per-stage seconds for a cold run (weights read from
 * safetensors files written beforehand, uploaded, pipelines compiled, first image) and warm runs, peak
 * RSS and peak GPU pool memory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, type DType, type Device, type ProfileEntry } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { writeSafetensorsFile } from '../safetensors_file.js';
import { concat, slice } from '@fewstep/kernels';
import {
  AutoencoderKL, AutoencoderTiny, CLIPTextModel, SafetensorsSource, UNet2DConditionModel, WeightScope, resolveVaeDtype, type CLIPTextConfig, type UNet2DConditionConfig,
} from '@fewstep/models';
import { CLIP_TEXT_SD15, CLIP_TEXT_SD2, RandomSource, SDXS_09, SDXS_DREAMSHAPER, SD15, SD_VAE, TAESD } from '@fewstep/models/testing';

export interface PipelineConfig {
  text: CLIPTextConfig;
  unet: UNet2DConditionConfig;
  vae: 'tiny' | 'large';
  /** UNet batch per step: 2 when the model runs classifier-free guidance. */
  cfg: boolean;
}

export const PIPELINE_CONFIGS: Record<string, PipelineConfig> = {
  'sdxs-512-0.9': { text: CLIP_TEXT_SD2, unet: SDXS_09, vae: 'tiny', cfg: false },
  'sdxs-512-dreamshaper': { text: CLIP_TEXT_SD15, unet: SDXS_DREAMSHAPER, vae: 'tiny', cfg: false },
  sd15: { text: CLIP_TEXT_SD15, unet: SD15, vae: 'large', cfg: true },
};

export interface PipelineBenchResult {
  config: string;
  adapter: string;
  dtype: DType;
  /** The decoder's dtype (default: f32 for TAESD, `dtype` for the SD VAE — see resolveVaeDtype). */
  vae_dtype: DType;
  stages: { text_encoder_s: number; unet_s: number; decode_s: number };
  total_s: number;
  cold_stages: { load_s: number; text_encoder_s: number; unet_s: number; decode_s: number };
  cold_total_s: number;
  peak_rss_mb: number;
  peak_gpu_mb: number;
  output_finite: boolean;
  /** Warm runs timed; `stages`/`total_s` are their medians (by total). */
  warm_runs: number;
  /** 1 / median warm total: images per second at batch 1, stages synced one after another. */
  images_per_s: number;
  /** Kernel dispatches per stage (one run): the CPU-side cost on a fast GPU scales with these. */
  dispatches: { text_encoder: number; unet: number; decode: number };
  /** Share of warm-run dispatches that reused a cached bind group. */
  warm_bind_group_hit_rate: number;
  /** 'sequential': one component resident at a time, every stage cold (see benchPipelineSequential). */
  schedule?: 'resident' | 'sequential' | undefined;
  /** With `profile`: per stage, GPU ms summed over dispatches and the most expensive dispatch labels. */
  profile?: Record<string, { gpu_ms: number; top: ProfileEntry[] }> | undefined;
}

function noise(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * 3.4;
  }
  return a;
}

/**
 * Deterministic random weights written to a safetensors file (in the compute dtype, like a repo's fp16
 * variant), so "cold" measures what a user's first image costs: reading weights from disk, uploading
 * them, compiling pipelines. Writing the file is not timed.
 */
async function weightsOnDisk(dir: string, name: string, shapes: Map<string, number[]>, seed: number, dtype: DType): Promise<string> {
  const src = new RandomSource(shapes, seed);
  const keys = src.keys();
  const st = dtype === 'f16' ? 'F16' : 'F32';
  const path = join(dir, `${name}.safetensors`);
  // Fsynced (by the writer) before the timed load, so the cold run does not compete with the kernel's
  // writeback of the file it is reading (as weights downloaded earlier would not).
  await writeSafetensorsFile(path, keys.map((k) => ({ name: k, dtype: st, shape: src.shape(k) })), async (i) => {
    const v = await src.read(keys[i]!, dtype === 'f16' ? 'f16' : 'f32');
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  });
  return path;
}

/** B copies of a fixed 77-token prompt (BOS, 8 words, EOS, padding) as the text encoder's input ids. */
function promptIds(device: Device, B: number): Tensor {
  const row = Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 9 ? 320 + i * 131 : i === 9 ? 49407 : 0));
  const ids = new Int32Array(B * 77);
  for (let b = 0; b < B; b++) ids.set(row, b * 77);
  return Tensor.from(device, ids, [B, 77], 'i32');
}

/** The config, a seconds-since helper and weight scopes (random, or from files); the pool starts empty so peaks are this run's. */
function prepare(device: Device, name: string, dtype: DType, vaeDtype?: 'f32' | 'f16') {
  const cfg = PIPELINE_CONFIGS[name];
  if (!cfg) throw new Error(`unknown config "${name}" (${Object.keys(PIPELINE_CONFIGS).join(', ')})`);
  const vae_dtype = resolveVaeDtype(cfg.vae === 'tiny' ? 'AutoencoderTiny' : 'AutoencoderKL', dtype === 'f16' ? 'f16' : 'f32', vaeDtype);
  device.pool.trim();
  device.pool.stats.peak = device.pool.stats.inUse;
  const sec = (t: number) => +((performance.now() - t) / 1000).toFixed(3);
  const scope = (shapes: Map<string, number[]>, seed: number, d: DType = dtype) => WeightScope.create(new RandomSource(shapes, seed), device, d);
  return { cfg, sec, scope, vae_dtype };
}

export async function benchPipeline(device: Device, name: string, dtype: DType, log: (s: string) => void = () => {}, runs = 1, profile = false, vaeDtype?: 'f32' | 'f16'): Promise<PipelineBenchResult> {
  const { cfg, sec, vae_dtype } = prepare(device, name, dtype, vaeDtype);
  // Weights go to disk first (untimed), so the cold run loads them the way `fewstep generate` does.
  const dir = await mkdtemp(join(tmpdir(), 'fewstep-bench-'));
  let text: CLIPTextModel, unet: UNet2DConditionModel, vae: AutoencoderTiny | AutoencoderKL, load_s: number;
  try {
    log(`writing random ${name} weights to ${dir} (not timed)`);
    const vaeShapes = cfg.vae === 'tiny' ? AutoencoderTiny.describe(TAESD) : AutoencoderKL.describe(SD_VAE);
    const files = {
      text: await weightsOnDisk(dir, 'text_encoder', CLIPTextModel.describe(cfg.text), 1, dtype),
      unet: await weightsOnDisk(dir, 'unet', UNet2DConditionModel.describe(cfg.unet), 2, dtype),
      vae: await weightsOnDisk(dir, 'vae', vaeShapes, 3, dtype),
    };
    const fromFile = async <M>(path: string, load: (w: WeightScope) => Promise<M>, d: DType = dtype): Promise<M> => {
      const file = await SafetensorsSource.open(nodeFiles, [path]);
      try {
        return await load(WeightScope.create(file, device, d));
      } finally {
        await file.close();
      }
    };
    const t0 = performance.now();
    text = await fromFile(files.text, (w) => CLIPTextModel.load(w, cfg.text));
    unet = await fromFile(files.unet, (w) => UNet2DConditionModel.load(w, cfg.unet));
    // The decoder's file is in the model dtype (a repo's fp16 variant), loaded in vae_dtype as the pipeline does.
    vae = cfg.vae === 'tiny'
      ? await fromFile(files.vae, (w) => AutoencoderTiny.load(w, TAESD), vae_dtype)
      : await fromFile(files.vae, (w) => AutoencoderKL.loadDecoder(w, SD_VAE), vae_dtype);
    await device.sync();
    load_s = sec(t0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  log(`loaded ${name} (${dtype}, decoder ${vae_dtype}) in ${load_s} s`);
  const B = cfg.cfg ? 2 : 1;
  const ids = promptIds(device, B).keep();
  const latents = Tensor.from(device, noise(4 * 64 * 64, 7), [1, 4, 64, 64], dtype).keep();
  let dispatches = { text_encoder: 0, unet: 0, decode: 0 };
  const profiled: Record<string, ProfileEntry[]> = {};
  const stageProfile = (stage: string) => {
    if (profile) profiled[stage] = device.profile(true);
  };
  const run = async () => {
    const s: { text_encoder_s: number; unet_s: number; decode_s: number } = { text_encoder_s: 0, unet_s: 0, decode_s: 0 };
    const d0 = device.dispatchCount;
    let t0 = performance.now();
    const ctx = await device.scope(async () => (await text.forward(ids, { pooler: false })).lastHiddenState);
    await device.sync();
    s.text_encoder_s = sec(t0);
    stageProfile('text_encoder');
    const d1 = device.dispatchCount;
    t0 = performance.now();
    const z = device.scope(() => {
      // CFG configs run [uncond, cond] as one batch of 2, as the pipeline does.
      const x = B === 2 ? concat([latents, latents], 0) : latents;
      const eps = unet.forward(x, 999, ctx);
      return B === 2 ? eps.reshape([2, 4, 64, 64]) : eps;
    });
    await device.sync();
    s.unet_s = sec(t0);
    stageProfile('unet');
    const d2 = device.dispatchCount;
    ctx.dispose();
    t0 = performance.now();
    const img = device.scope(() => vae.decode(B === 2 ? slice(z, 0, 0, 1) : z));
    await device.sync();
    s.decode_s = sec(t0);
    stageProfile('decode');
    dispatches = { text_encoder: d1 - d0, unet: d2 - d1, decode: device.dispatchCount - d2 };
    z.dispose();
    return { s, img };
  };
  try {
    const cold = await run();
    const values = await cold.img.read();
    const finite = values.every((v) => Number.isFinite(v));
    cold.img.dispose();
    log(`cold: text encoder ${cold.s.text_encoder_s} s, unet ${cold.s.unet_s} s, decode ${cold.s.decode_s} s`);
    const sum = (x: { text_encoder_s: number; unet_s: number; decode_s: number }) => +(x.text_encoder_s + x.unet_s + x.decode_s).toFixed(3);
    const warms: { text_encoder_s: number; unet_s: number; decode_s: number }[] = [];
    const bg0 = { ...device.bindGroupStats };
    for (let i = 0; i < runs; i++) {
      const w = await run();
      w.img.dispose();
      warms.push(w.s);
      log(`warm ${i + 1}/${runs}: text encoder ${w.s.text_encoder_s} s, unet ${w.s.unet_s} s, decode ${w.s.decode_s} s`);
    }
    const warm = { s: [...warms].sort((a, b) => sum(a) - sum(b))[Math.floor((runs - 1) / 2)]! };
    let profileOut: PipelineBenchResult['profile'];
    if (profile) {
      // One more run with a timed pass per dispatch (slower; its times are not reported above).
      device.setProfiling(true);
      try {
        (await run()).img.dispose();
      } finally {
        device.setProfiling(false);
      }
      profileOut = {};
      for (const [stage, entries] of Object.entries(profiled)) {
        profileOut[stage] = { gpu_ms: +entries.reduce((a, e) => a + e.ms, 0).toFixed(3), top: entries.slice(0, 15) };
      }
    }
    return {
      config: name, adapter: device.adapter.name, dtype, vae_dtype,
      stages: warm.s, total_s: sum(warm.s),
      cold_stages: { load_s, ...cold.s }, cold_total_s: +(load_s + sum(cold.s)).toFixed(3),
      peak_rss_mb: 0, peak_gpu_mb: 0, output_finite: finite, // peaks: see benchPipelineWithPeaks
      ...(profileOut ? { profile: profileOut } : {}),
      warm_runs: runs, images_per_s: +(1 / sum(warm.s)).toFixed(3), dispatches,
      warm_bind_group_hit_rate: +((device.bindGroupStats.hits - bg0.hits) / Math.max(1, device.bindGroupStats.hits - bg0.hits + device.bindGroupStats.misses - bg0.misses)).toFixed(4),
    };
  } finally {
    text.dispose();
    unet.dispose();
    vae.dispose();
    ids.dispose();
    latents.dispose();
  }
}

/**
 * The low-memory schedule: one component on the device at a time (text encoder → free → UNet → free →
 * decoder), every stage cold. It measures the memory floor of a single image when the models do not all
 * stay resident; times include each stage's load.
 */
export async function benchPipelineSequential(device: Device, name: string, dtype: DType, log: (s: string) => void = () => {}, vaeDtype?: 'f32' | 'f16'): Promise<PipelineBenchResult> {
  const { cfg, sec, scope, vae_dtype } = prepare(device, name, dtype, vaeDtype);
  const B = cfg.cfg ? 2 : 1;
  const free = async (m: { dispose(): void }) => {
    m.dispose();
    await device.sync();
    device.pool.trim();
  };
  let t = performance.now();
  const text = await CLIPTextModel.load(scope(CLIPTextModel.describe(cfg.text), 1), cfg.text);
  const ids = promptIds(device, B);
  const ctx = await device.scope(async () => (await text.forward(ids, { pooler: false })).lastHiddenState);
  ids.dispose();
  await free(text);
  const text_encoder_s = sec(t);
  const rss = () => `RSS now ${Math.round(process.memoryUsage().rss / 2 ** 20)} MB`;
  log(`text encoder (load + run + free): ${text_encoder_s} s, ${rss()}`);
  t = performance.now();
  const unet = await UNet2DConditionModel.load(scope(UNet2DConditionModel.describe(cfg.unet), 2), cfg.unet);
  const latents = Tensor.from(device, noise(4 * 64 * 64, 7), [1, 4, 64, 64], dtype);
  const z = device.scope(() => {
    const x = B === 2 ? concat([latents, latents], 0) : latents;
    const eps = unet.forward(x, 999, ctx);
    return B === 2 ? slice(eps.reshape([2, 4, 64, 64]), 0, 0, 1) : eps;
  });
  latents.dispose();
  ctx.dispose();
  await free(unet);
  const unet_s = sec(t);
  log(`unet (load + step + free): ${unet_s} s, ${rss()}`);
  t = performance.now();
  const vae = cfg.vae === 'tiny'
    ? await AutoencoderTiny.load(scope(AutoencoderTiny.describe(TAESD), 3, vae_dtype), TAESD)
    : await AutoencoderKL.loadDecoder(scope(AutoencoderKL.describe(SD_VAE), 3, vae_dtype), SD_VAE);
  const img = device.scope(() => vae.decode(z));
  const finite = (await img.read()).every((v) => Number.isFinite(v));
  img.dispose();
  z.dispose();
  await free(vae);
  const decode_s = sec(t);
  log(`decoder (load + run + free): ${decode_s} s, ${rss()}`);
  const total = +(text_encoder_s + unet_s + decode_s).toFixed(3);
  return {
    config: name, adapter: device.adapter.name, dtype, vae_dtype,
    stages: { text_encoder_s, unet_s, decode_s }, total_s: total,
    cold_stages: { load_s: 0, text_encoder_s, unet_s, decode_s }, cold_total_s: total,
    peak_rss_mb: 0, peak_gpu_mb: 0, output_finite: finite,
    warm_runs: 0, images_per_s: +(1 / total).toFixed(3), dispatches: { text_encoder: 0, unet: 0, decode: 0 }, warm_bind_group_hit_rate: 0,
    schedule: 'sequential',
  };
}

/** Runs `benchPipeline` and fills in the peak memory figures. */
export async function benchPipelineWithPeaks(device: Device, name: string, dtype: DType, log?: (s: string) => void, runs = 1, profile = false, sequential = false, vaeDtype?: 'f32' | 'f16'): Promise<PipelineBenchResult> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
  try {
    const r = sequential ? await benchPipelineSequential(device, name, dtype, log, vaeDtype) : await benchPipeline(device, name, dtype, log, runs, profile, vaeDtype);
    r.peak_rss_mb = Math.round(Math.max(peak, process.memoryUsage().rss) / 2 ** 20);
    r.peak_gpu_mb = Math.round(device.pool.stats.peak / 2 ** 20);
    return r;
  } finally {
    clearInterval(timer);
  }
}
