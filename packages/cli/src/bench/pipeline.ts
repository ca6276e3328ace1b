/**
 * `fewstep bench pipeline`: one whole text-to-image pass at full size with deterministic random
 * weights in a real config (no download): text encoder → UNet (1 step, or a CFG batch of 2 for
 * configs that use guidance) → decoder. Reports per-stage seconds for a cold run (weights read from
 * safetensors files written beforehand, uploaded, pipelines compiled, first image) and warm runs, and
 * peak RSS and peak GPU pool memory per stage (loads included). As `fewstep generate` loads: weights read from
 * their files when a kernel first needs them and kept (`preload`: all read at load); `lowMemory` runs the
 * library's low-memory schedule (ComponentResidency): each stage streams its component's weights, then frees them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, type DType, type Device, type ProfileEntry } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { writeSafetensorsFile } from '../safetensors_file.js';
import { concat, slice } from '@fewstep/kernels';
import {
  AutoencoderKL, AutoencoderTiny, CLIPTextModel, ComponentResidency, SafetensorsSource, UNet2DConditionModel, WeightScope, resolveVaeDtype, weightStream, type CLIPTextConfig, type ComponentLoaders,
  type UNet2DConditionConfig, type Vae,
} from '@fewstep/models';
import { StagePeaks, type StagePeak } from './stage_peaks.js';
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
  /** The decoder's dtype (f32 for TAESD under f16 by default, as the pipeline: see resolveVaeDtype). */
  vae_dtype: DType;
  stages: { text_encoder_s: number; unet_s: number; decode_s: number };
  total_s: number;
  cold_stages: { load_s: number; text_encoder_s: number; unet_s: number; decode_s: number };
  cold_total_s: number;
  /** Highest RSS / GPU pool over the stages below (writing the random weights to disk, untimed, not counted). */
  peak_rss_mb: number;
  peak_gpu_mb: number;
  /**
   * Peaks per stage, MiB: load_text_encoder, load_unet, load_decoder (the cold load; low memory: the check pass
   * that loads and frees each), then the cold run's text_encoder, unet, decode (low memory: each with its load).
   */
  cold_peaks: Record<string, StagePeak>;
  /** The same for the warm runs (the highest over them); empty without warm runs. */
  warm_peaks: Record<string, StagePeak>;
  output_finite: boolean;
  /** Warm runs timed; `stages`/`total_s` are their medians (by total). */
  warm_runs: number;
  /** 1 / median warm total: images per second at batch 1, stages synced one after another. */
  images_per_s: number;
  /** Kernel dispatches per stage (one run): the CPU-side cost on a fast GPU scales with these. */
  dispatches: { text_encoder: number; unet: number; decode: number };
  /** Share of warm-run dispatches that reused a cached bind group. */
  warm_bind_group_hit_rate: number;
  /** 'low-memory': one component on the device at a time, loaded from its file by its stage and freed after. */
  /** resident: weights read on first use and kept (generate's default); resident-preload: all read at load. */
  schedule: 'resident' | 'resident-preload' | 'low-memory';
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

export interface PipelineBenchOptions {
  log?: ((s: string) => void) | undefined;
  /** Warm runs (default 1). */
  runs?: number | undefined;
  /** A timed pass per dispatch after the warm runs (resident only). */
  profile?: boolean | undefined;
  /** The low-memory schedule (see the module comment). */
  lowMemory?: boolean | undefined;
  /** Resident: read every weight at load (fromPretrained's `preload`) instead of on first use. */
  preload?: boolean | undefined;
  /** The decoder's dtype (default: the pipeline's rule, resolveVaeDtype). */
  vaeDtype?: 'f32' | 'f16' | undefined;
}

export async function benchPipeline(device: Device, name: string, dtype: DType, opts: PipelineBenchOptions = {}): Promise<PipelineBenchResult> {
  const { log = () => {}, runs = 1, profile = false, lowMemory = false, preload = false } = opts;
  const cfg = PIPELINE_CONFIGS[name];
  if (!cfg) throw new Error(`unknown config "${name}" (${Object.keys(PIPELINE_CONFIGS).join(', ')})`);
  if (lowMemory && profile) throw new Error('--profile times the resident schedule; it cannot be combined with --low-memory');
  const vae_dtype = resolveVaeDtype(cfg.vae === 'tiny' ? 'AutoencoderTiny' : 'AutoencoderKL', dtype === 'f16' ? 'f16' : 'f32', opts.vaeDtype);
  device.pool.trim();
  const sec = (t: number) => +((performance.now() - t) / 1000).toFixed(3);
  const peaks = new StagePeaks(device);
  // Weights go to disk first (untimed), so the cold run loads them the way `fewstep generate` does.
  const dir = await mkdtemp(join(tmpdir(), 'fewstep-bench-'));
  let residency: ComponentResidency | undefined;
  const keep: Tensor[] = [];
  try {
    log(`writing random ${name} weights to ${dir} (not timed)`);
    const vaeShapes = cfg.vae === 'tiny' ? AutoencoderTiny.describe(TAESD) : AutoencoderKL.describe(SD_VAE);
    const files = {
      text: await weightsOnDisk(dir, 'text_encoder', CLIPTextModel.describe(cfg.text), 1, dtype),
      unet: await weightsOnDisk(dir, 'unet', UNet2DConditionModel.describe(cfg.unet), 2, dtype),
      vae: await weightsOnDisk(dir, 'vae', vaeShapes, 3, dtype),
    };
    // Streamed as fromPretrained streams them.
    const stream = weightStream(device, { lowMemory, preload });
    const fromFile = async <M>(path: string, load: (w: WeightScope) => Promise<M>, d: DType = dtype): Promise<M> => {
      const file = await SafetensorsSource.open(nodeFiles, [path]);
      try {
        return await load(WeightScope.create(file, device, d, undefined, stream));
      } finally {
        await file.close();
      }
    };
    const loaders: ComponentLoaders = {
      textEncoder: () => fromFile(files.text, (w) => CLIPTextModel.load(w, cfg.text)),
      unet: () => fromFile(files.unet, (w) => UNet2DConditionModel.load(w, cfg.unet)),
      // The decoder's file is in the model dtype (a repo's fp16 variant), loaded in vae_dtype as the pipeline does.
      vae: (): Promise<Vae> => (cfg.vae === 'tiny' ? fromFile(files.vae, (w) => AutoencoderTiny.load(w, TAESD), vae_dtype) : fromFile(files.vae, (w) => AutoencoderKL.loadDecoder(w, SD_VAE), vae_dtype)),
    };
    // Low memory loads each component once and frees it (as fromPretrained's check pass), then every stage loads its own.
    const loaded = async <M extends { dispose(): void }>(stage: string, load: () => Promise<M>): Promise<M> =>
      peaks.measure(stage, async () => {
        const m = await load();
        await device.sync();
        if (lowMemory) {
          m.dispose();
          await device.trimMemory();
        }
        return m;
      });
    const t0 = performance.now();
    const models = {
      text_encoder: await loaded('load_text_encoder', loaders.textEncoder),
      unet: await loaded('load_unet', loaders.unet),
      vae: await loaded('load_decoder', loaders.vae),
    };
    const load_s = sec(t0);
    residency = new ComponentResidency(device, models, lowMemory ? loaders : undefined, stream);
    log(`loaded ${name} (${dtype}, decoder ${vae_dtype})${lowMemory ? ' (low memory: each component loaded, checked and freed)' : preload ? ' (preloaded)' : ' (weights read on first use)'} in ${load_s} s`);
    const r = residency;
    const B = cfg.cfg ? 2 : 1;
    const ids = promptIds(device, B).keep();
    const latents = Tensor.from(device, noise(4 * 64 * 64, 7), [1, 4, 64, 64], dtype).keep();
    keep.push(ids, latents);
    let dispatches = { text_encoder: 0, unet: 0, decode: 0 };
    const profiled: Record<string, ProfileEntry[]> = {};
    const stageProfile = (stage: string) => {
      if (profile) profiled[stage] = device.profile(true);
    };
    type Stages = { text_encoder_s: number; unet_s: number; decode_s: number };
    const run = async (measure: (stage: string, fn: () => Promise<Tensor>) => Promise<Tensor>) => {
      const s: Stages = { text_encoder_s: 0, unet_s: 0, decode_s: 0 };
      const d0 = device.dispatchCount;
      let t0 = performance.now();
      const ctx = await measure('text_encoder', () => r.use(['text_encoder'], async () => {
        const c = await device.scope(async () => (await r.model('text_encoder')!.forward(ids, { pooler: false, pause: r.pause })).lastHiddenState);
        await device.sync();
        return c;
      }));
      s.text_encoder_s = sec(t0);
      stageProfile('text_encoder');
      const d1 = device.dispatchCount;
      t0 = performance.now();
      const z = await measure('unet', () => r.use(['unet'], async () => {
        const out = await device.scope(async () => {
          // CFG configs run [uncond, cond] as one batch of 2, as the pipeline does.
          const x = B === 2 ? concat([latents, latents], 0) : latents;
          const unet = r.model('unet')!;
          const eps = await unet.forwardAsync(x, 999, ctx, {}, r.pause);
          return B === 2 ? slice(eps.reshape([2, 4, 64, 64]), 0, 0, 1) : eps;
        });
        await device.sync();
        return out;
      }));
      s.unet_s = sec(t0);
      stageProfile('unet');
      const d2 = device.dispatchCount;
      ctx.dispose();
      t0 = performance.now();
      const img = await measure('decode', () => r.use(['vae'], async () => {
        const out = device.scope(() => r.model('vae')!.decode(z));
        await device.sync();
        return out;
      }));
      s.decode_s = sec(t0);
      stageProfile('decode');
      dispatches = { text_encoder: d1 - d0, unet: d2 - d1, decode: device.dispatchCount - d2 };
      z.dispose();
      return { s, img };
    };
    const cold = await run((stage, fn) => peaks.measure(stage, fn));
    const values = await cold.img.read();
    const finite = values.every((v) => Number.isFinite(v));
    cold.img.dispose();
    const coldPeaks = { ...peaks.stages };
    log(`cold: text encoder ${cold.s.text_encoder_s} s, unet ${cold.s.unet_s} s, decode ${cold.s.decode_s} s`);
    const sum = (x: Stages) => +(x.text_encoder_s + x.unet_s + x.decode_s).toFixed(3);
    const warms: Stages[] = [];
    const bg0 = { ...device.bindGroupStats };
    const warmPeaks = new StagePeaks(device);
    try {
      for (let i = 0; i < runs; i++) {
        const w = await run((stage, fn) => warmPeaks.measure(stage, fn));
        w.img.dispose();
        warms.push(w.s);
        log(`warm ${i + 1}/${runs}: text encoder ${w.s.text_encoder_s} s, unet ${w.s.unet_s} s, decode ${w.s.decode_s} s`);
      }
    } finally {
      warmPeaks.stop();
    }
    const warm = warms.length ? [...warms].sort((a, b) => sum(a) - sum(b))[Math.floor((runs - 1) / 2)]! : cold.s;
    let profileOut: PipelineBenchResult['profile'];
    if (profile) {
      // One more run with a timed pass per dispatch (slower; its times are not reported above).
      device.setProfiling(true);
      try {
        (await run((_stage, fn) => fn())).img.dispose();
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
      stages: warm, total_s: sum(warm),
      cold_stages: { load_s, ...cold.s }, cold_total_s: +(load_s + sum(cold.s)).toFixed(3),
      peak_rss_mb: Math.max(peaks.peakRssMb, warmPeaks.peakRssMb), peak_gpu_mb: Math.max(peaks.peakGpuMb, warmPeaks.peakGpuMb),
      cold_peaks: coldPeaks, warm_peaks: warmPeaks.stages,
      output_finite: finite,
      ...(profileOut ? { profile: profileOut } : {}),
      warm_runs: runs, images_per_s: +(1 / sum(warm)).toFixed(3), dispatches,
      warm_bind_group_hit_rate: +((device.bindGroupStats.hits - bg0.hits) / Math.max(1, device.bindGroupStats.hits - bg0.hits + device.bindGroupStats.misses - bg0.misses)).toFixed(4),
      schedule: lowMemory ? 'low-memory' : preload ? 'resident-preload' : 'resident',
    };
  } finally {
    peaks.stop();
    residency?.dispose();
    for (const t of keep) t.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
