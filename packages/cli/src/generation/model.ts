/**
 * Model loading for generate and batch, in two steps so that a request that cannot work fails in a second,
 * not after a 2.7 GB download:
 *
 * 1. `planModel`: only the model's small JSON files — a local folder's, or a hub repo's file list plus
 *    model_index.json, scheduler/scheduler_config.json and the text_encoder/, unet/ and VAE config.json files
 *    (downloaded into the HF cache like everything else) — read by @fewstep/models' readPipelineConfigs, and
 *    the ModelInfo resolveGenerateOptions checks a request against. LoRA repos are listed and a ControlNet's
 *    config.json is checked here too.
 * 2. `loadModel`: the weights (only the files the pipeline reads), the LoRAs, the ControlNet, the device, the
 *    pipeline — all under the command's AbortSignal.
 */
import { stat } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { DeviceError, Device, type FileSource } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node';
import {
  StableDiffusionPipeline,
  loadLora,
  loraTransform,
  modelInfoFromConfigs,
  readPipelineConfigs,
  resolveVaeDtype,
  type LoraAdapter,
  type ModelInfo,
  type PipelineConfigs,
  type PipelineDefaults,
} from '@fewstep/models';
import { listRepoFiles, parseRepoSpec, pipelineComponents, resolveModel, selectModelFiles, snapshotDownload, type VaeChoice } from '@fewstep/weights-tools';
import { fetchLoraSource, looksLikeRepo, planLoraSource, type LoraPlan, type LoraSpec } from '../lora_source.js';
import { fetchControlNet, planControlNet, type ControlNetPlan } from './controlnet_source.js';
import type { ModelOptions } from './flags.js';
import type { ProgressUI } from './progress.js';

export interface ModelContext {
  ui: ProgressUI;
  signal?: AbortSignal | undefined;
}

/** What step 1 found: enough to check requests, and what step 2 will load. */
export interface ModelPlan {
  options: ModelOptions;
  configs: PipelineConfigs;
  /** What resolveGenerateOptions checks requests against (YOSO defaults and the scheduler flag applied). */
  info: ModelInfo;
  /** The scheduler override and default overrides the pipeline is loaded with. */
  scheduler: string | undefined;
  defaults: Partial<PipelineDefaults> | undefined;
  /** A YOSO LoRA was recognised by its name (see yosoSettings). */
  yoso: boolean;
  loras: LoraPlan[];
  controlnet: ControlNetPlan | undefined;
  /** The VAE's dtype (--vae-dtype, or the default for the model's VAE class). */
  vaeDtype: 'f32' | 'f16';
}

/**
 * YOSO's LoRA carries no marker of its own: a LoRA whose name says yoso gets its recommended settings (LCM,
 * 2 steps, CFG 1.5 — models.md §3.1) unless the flags say otherwise.
 */
export function yosoSettings(loras: readonly LoraSpec[]): { scheduler: string; defaults: Partial<PipelineDefaults> } | null {
  return loras.some((l) => /yoso/i.test(l.source)) ? { scheduler: 'LCMScheduler', defaults: { steps: 2, guidance: 1.5 } } : null;
}

export const YOSO_NOTE = 'YOSO LoRA: LCMScheduler, 2 steps, guidance 1.5 by default (its recommended settings; --scheduler/--steps/--guidance override)';

/**
 * The config files step 1 fetches from a hub repo: model_index.json, the scheduler's, and the config.json of the
 * component folders the pipeline loads (weights-tools' pipelineComponents picks the VAE folder) and of vae/ (which
 * readPipelineConfigs looks at first for any --vae).
 */
function configFiles(files: readonly string[], vae: VaeChoice | undefined): string[] {
  const want = new Set(['model_index.json', 'scheduler/scheduler_config.json', 'vae/config.json', ...pipelineComponents(files, vae).map((c) => `${c}/config.json`)]);
  return files.filter((f) => want.has(f));
}

/**
 * A FileSource over a snapshot folder that so far holds only the config files: what exists and what a folder
 * lists come from the repo's file list, reads from the folder.
 */
function listedFiles(dir: string, files: readonly string[]): FileSource {
  const known = new Set(files);
  for (const f of files) for (let i = f.indexOf('/'); i > 0; i = f.indexOf('/', i + 1)) known.add(f.slice(0, i));
  const rel = (p: string) => relative(dir, p).split(sep).join('/');
  return {
    ...nodeFiles,
    exists: async (p) => rel(p) === '' || known.has(rel(p)),
    list: async (d) => {
      const prefix = rel(d) === '' ? '' : `${rel(d)}/`;
      return files.filter((f) => f.startsWith(prefix) && !f.slice(prefix.length).includes('/')).map((f) => f.slice(prefix.length));
    },
  };
}

/** Step 1: the model's configs and ModelInfo, the LoRA sources, the ControlNet's config — no weights. */
export async function planModel(options: ModelOptions, extra: { controlnet?: string | undefined }, ctx: ModelContext): Promise<ModelPlan> {
  const { signal, ui } = ctx;
  const { model, dtype, vae } = options;
  let configs: PipelineConfigs;
  if ((await isFolder(model)) || !looksLikeRepo(model)) {
    // A folder (or something that is neither: resolveModel says what is wrong). Nothing is downloaded.
    const local = await resolveModel(model, { revision: options.revision, dtype, vae, signal });
    configs = await readPipelineConfigs(nodeFiles, local.dir, vae);
  } else {
    const { repoId, revision } = parseRepoSpec(model, options.revision);
    const files = await listRepoFiles(repoId, { revision, signal });
    selectModelFiles(files, { dtype, vae, name: model }); // the repo is a pipeline fewstep can load
    const want = configFiles(files, vae);
    const dir = await snapshotDownload(repoId, { revision, filter: (p) => want.includes(p), required: want, onProgress: ui.onProgress, signal });
    configs = await readPipelineConfigs(listedFiles(dir, files), dir, vae);
  }
  const yoso = yosoSettings(options.loras);
  const scheduler = options.scheduler ?? yoso?.scheduler;
  const defaults = yoso?.defaults;
  const info = modelInfoFromConfigs({
    unet: configs.unet,
    scheduler: configs.scheduler,
    schedulerOverride: scheduler,
    vae: configs.vae ?? undefined,
    textEncoder: configs.textEncoder,
    hasControlNet: extra.controlnet !== undefined,
    defaults,
  });
  const loras: LoraPlan[] = [];
  for (const l of options.loras) loras.push(await planLoraSource(l, signal));
  const controlnet = extra.controlnet !== undefined ? await planControlNet(extra.controlnet, dtype, { signal, onProgress: ui.onProgress }) : undefined;
  const vaeDtype = resolveVaeDtype(configs.vaeClass, dtype, options.vaeDtype);
  return { options, configs, info, scheduler, defaults, yoso: yoso !== null, loras, controlnet, vaeDtype };
}

async function isFolder(p: string): Promise<boolean> {
  return Boolean((await stat(p).catch(() => undefined))?.isDirectory());
}

export interface LoadedModel {
  pipe: StableDiffusionPipeline;
  device: Device;
  /** The local model folder (a hub model's snapshot folder). */
  dir: string;
  /** The scheduler class the pipeline runs. */
  sampler: string;
  /** The dtype its VAE runs in. */
  vaeDtype: 'f32' | 'f16';
  dispose(): void;
}

/**
 * Step 2: downloads what the pipeline reads (if not cached), the LoRAs and the ControlNet, opens the device and
 * loads the pipeline. Its progress (downloads, loads, then every generate()'s stages) goes to `ctx.ui`.
 */
export async function loadModel(plan: ModelPlan, ctx: ModelContext): Promise<LoadedModel> {
  const { signal, ui } = ctx;
  const { options } = plan;
  const model = await resolveModel(options.model, { revision: options.revision, dtype: options.dtype, vae: options.vae, onProgress: ui.onProgress, signal });
  const adapters: LoraAdapter[] = [];
  for (const l of plan.loras) adapters.push(await loadLora(nodeFiles, await fetchLoraSource(l, ui.onProgress, signal), { scale: l.spec.scale }));
  const controlnetDir = plan.controlnet ? await fetchControlNet(plan.controlnet, { signal, onProgress: ui.onProgress }) : undefined;
  signal?.throwIfAborted();
  const device = await Device.open({ gpu: await nodeGPU() });
  try {
    if (options.dtype === 'f16' && !device.features.f16) {
      throw new DeviceError('feature_missing', `--dtype f16 needs the shader-f16 feature, which ${device.adapter.name} does not offer; use --dtype f32`);
    }
    if (plan.vaeDtype === 'f16' && !device.features.f16) {
      throw new DeviceError('feature_missing', `--vae-dtype f16 needs the shader-f16 feature, which ${device.adapter.name} does not offer; use --vae-dtype f32`);
    }
    const pipe = await StableDiffusionPipeline.fromPretrained(model.dir, {
      device,
      io: nodeFiles,
      dtype: options.dtype,
      vae: options.vae,
      vaeDtype: plan.vaeDtype,
      scheduler: plan.scheduler,
      defaults: plan.defaults,
      variant: model.variant,
      controlnet: controlnetDir,
      lowMemory: options.lowMemory,
      weightTransform: adapters.length
        ? (component, req) => {
            const mine = adapters.filter((a) => a.has(component));
            for (const a of mine) a.check(component, req.source.keys());
            return loraTransform(mine, component);
          }
        : undefined,
      onProgress: ui.onProgress,
      signal,
    });
    try {
      for (const a of adapters) a.assertAllApplied();
    } catch (e) {
      pipe.dispose();
      throw e;
    }
    return {
      pipe,
      device,
      dir: model.dir,
      sampler: pipe.createScheduler().className,
      vaeDtype: pipe.vae.dtype,
      dispose() {
        pipe.dispose();
        device.destroy();
      },
    };
  } catch (e) {
    device.destroy();
    throw e;
  }
}
