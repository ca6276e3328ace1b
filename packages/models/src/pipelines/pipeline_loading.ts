/**
 * Loading a diffusers Stable Diffusion folder for StableDiffusionPipeline: the folder checks, which VAE
 * folder to use, each component through the weight-transform hook (LoRA), an optional ControlNet — with a
 * load event per component, cancellation between components, and every component already on the GPU freed
 * when a later one fails. `readPipelineConfigs` reads only the small JSON files (what `modelInfoFromConfigs`
 * needs), so callers can check a request before any weights are read. Browser-safe: all IO goes through
 * the FileSource seam.
 */
import { InvalidArgumentError, throwIfAborted, type Device, type FileSource, type ParameterCache } from '@fewstep/tensor';
import { CLIPTokenizer } from '../clip/tokenization_clip.js';
import { CLIPTextModel } from '../clip/modeling_clip.js';
import { UNet2DConditionModel, type UNet2DConditionConfig } from '../unets/unet_2d_condition.js';
import { ControlNetModel } from '../controlnets/controlnet.js';
import { AutoencoderTiny } from '../autoencoders/autoencoder_tiny.js';
import { AutoencoderKL } from '../autoencoders/autoencoder_kl.js';
import type { Vae } from '../autoencoders/autoencoder.js';
import { WeightScope, disposeAll, type TensorSource, type WeightTransform } from '../modeling/weights.js';
import { openComponentWeights, readConfig } from '../modeling/component.js';
import { componentInfo } from '../modeling/registry.js';
import type { PipelineDefaults } from './generation_options.js';
import type { ProgressCallback } from './progress.js';
import { weightStream, type ComponentLoaders } from './low_memory.js';

/** Which component a weight transform is asked for. */
export type TransformableComponent = 'unet' | 'text_encoder';

export interface WeightTransformRequest {
  /** The component folder's config.json. */
  config: Record<string, unknown>;
  /** Its weights (keys and shapes), e.g. to check which LoRA keys apply. */
  source: TensorSource;
}

/** What `resolve` / `resolveControlNet` get besides the id: the load's dtype, VAE choice, progress and signal. */
export interface ResolveRequest {
  dtype: 'f32' | 'f16';
  vae?: 'tiny' | 'large' | undefined;
  /** Download events (type 'download') go here. */
  onProgress?: ProgressCallback | undefined;
  signal?: AbortSignal | undefined;
}

export interface PipelineLoadOptions {
  device: Device;
  io: FileSource;
  dtype?: 'f32' | 'f16' | undefined;
  /** 'tiny': an AutoencoderTiny in vae/ (or vae_tiny/, taesd/); 'large': vae_large/ (or an AutoencoderKL vae/). Default: vae/ as it is. */
  vae?: 'tiny' | 'large' | undefined;
  /**
   * The VAE's dtype (its decoder and, for img2img, its encoder). Default (see `resolveVaeDtype`): f32 for an
   * AutoencoderTiny under dtype f16 — TAESD in float16 can give low-quality images (SDXS' model card); it has
   * ~2.4 M parameters, so f32 costs little — and `dtype` for an AutoencoderKL.
   */
  vaeDtype?: 'f32' | 'f16' | undefined;
  /** Scheduler class name (e.g. 'LCMScheduler') or an override object (`_class_name` and/or config keys) applied to scheduler/scheduler_config.json. */
  scheduler?: string | Record<string, unknown> | undefined;
  /** Weight-file variant, e.g. 'fp16'. */
  variant?: string | undefined;
  /** Hook for LoRA: a transform applied to the named component's weights as they load. */
  weightTransform?: ((component: TransformableComponent, req: WeightTransformRequest) => WeightTransform | undefined | Promise<WeightTransform | undefined>) | undefined;
  /** Overrides of the model's defaults (e.g. YOSO: { steps: 2, guidance: 1.5 }). */
  defaults?: Partial<PipelineDefaults> | undefined;
  /** Text-encoder outputs the pipeline keeps for repeated prompts (default 16; 0: none). */
  promptCacheSize?: number | undefined;
  /** Download and load events while loading, then every generate()'s stage events. */
  onProgress?: ProgressCallback | undefined;
  /** Stops loading between components (and downloads, through `resolve`): AbortError, nothing left on the GPU. */
  signal?: AbortSignal | undefined;
  /**
   * Turns a hub id (or anything that is not a local folder) into a local diffusers folder. This package does
   * no network IO itself; in Node pass `hubResolver()` from `@fewstep/weights-tools` (downloads only what the
   * pipeline reads into the Hugging Face cache).
   */
  resolve?: ((idOrDir: string, req: ResolveRequest) => Promise<string>) | undefined;
  /**
   * A ControlNetModel to load with the pipeline (diffusers `controlnet=`): a local folder with config.json and
   * its weights, or — through `resolveControlNet` — a hub id such as IDKiro/sdxs-512-dreamshaper-sketch.
   */
  controlnet?: string | undefined;
  /** Turns a `controlnet` that is not a local folder into one (Node: `hubResolver()` handles ControlNet repos too). */
  resolveControlNet?: ((idOrDir: string, req: ResolveRequest) => Promise<string>) | undefined;
  /**
   * Almost no weights on the device: each component is built (and checked) once here and freed, then built again
   * by every stage that needs it — text encoder, UNet (with the ControlNet), VAE — with its weights streamed from
   * its files as the kernels bind them (a ParameterCache; safetensors read through a FileSource with synchronous
   * reads, such as Node's), and freed after it. Weights that cannot stream (a LoRA fused in, `.bin` checkpoints,
   * a browser's files) are read whole for their stage. Outputs are bit-exact to the default (resident) mode;
   * every image re-reads the weights.
   */
  lowMemory?: boolean | undefined;
  /**
   * Read every weight now (true), instead of the default: each weight is read from its file the first time a
   * kernel needs it (safetensors through a FileSource with synchronous reads, such as Node's; others are read
   * now anyway), and stays. Loading then takes no time, and the first image overlaps reading the weights with
   * the GPU's work — the first image sooner, the same images. Preload to find an unreadable file at load rather
   * than at the first image. Ignored with `lowMemory`.
   */
  preload?: boolean | undefined;
}

/** The small JSON files of a pipeline folder (no weights read). */
export interface PipelineConfigs {
  dir: string;
  unet: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  /** null for an original TAESD folder (taesd_*.pth without config.json). */
  vae: Record<string, unknown> | null;
  vaeDir: string;
  vaeClass: string;
  textEncoder: Record<string, unknown>;
}

export interface PipelineComponents {
  tokenizer: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: Vae;
  /** scheduler_config.json (any class; `opts.scheduler` may override the class). */
  schedulerConfig: Record<string, unknown>;
  /** The UNet's config.json, for `sample_size` (default width/height) and model detection. */
  unetConfig?: Record<string, unknown> | undefined;
  /** Optional ControlNet (used when generate() gets a control image). */
  controlnet?: ControlNetModel | undefined;
  /**
   * Low-memory mode: how to load each component again. The models above are then freed instances (their configs
   * are read); each stage loads its component through these and frees it after (see low_memory.ts).
   */
  lowMemory?: ComponentLoaders | undefined;
  /**
   * The cache the components' weights stream through, if they do (read on first use; see PipelineLoadOptions.preload
   * and `lowMemory`): the pipeline's forwards then pause between layers for it to pace the uploads.
   */
  stream?: ParameterCache | undefined;
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Reads and checks a pipeline folder's configs: model_index.json's class, the components present, the VAE choice. */
export async function readPipelineConfigs(io: FileSource, dir: string, vae?: 'tiny' | 'large'): Promise<PipelineConfigs> {
  const sub = (name: string) => io.join(dir, name);
  const indexPath = sub('model_index.json');
  if (await io.exists(indexPath)) {
    const index = JSON.parse(await io.readText(indexPath)) as Record<string, unknown>;
    const cls = index['_class_name'];
    // Other SD1/SD2-structured pipelines (e.g. LatentConsistencyModelPipeline) load the same components.
    if (typeof cls === 'string' && !/^StableDiffusion(Img2Img|ControlNet)?Pipeline$|^LatentConsistencyModelPipeline$/.test(cls)) {
      throw new InvalidArgumentError(`${indexPath}: _class_name "${cls}" is not a Stable Diffusion 1.x/2.x pipeline fewstep can run`, 'model');
    }
  }
  for (const c of ['tokenizer', 'text_encoder', 'unet', 'scheduler']) {
    if (!(await io.exists(sub(c)))) {
      const hasAny = (await io.exists(dir)) ? '' : ' (the folder does not exist)';
      throw new InvalidArgumentError(`${dir}: not a diffusers Stable Diffusion folder: missing ${c}/${hasAny}`, 'model');
    }
  }
  const schedPath = io.join(dir, 'scheduler', 'scheduler_config.json');
  if (!(await io.exists(schedPath))) throw new InvalidArgumentError(`${dir}: missing scheduler/scheduler_config.json`, 'model');
  const vaeDir = await pickVaeDir(io, dir, vae);
  const info = await componentInfo(io, vaeDir);
  return {
    dir,
    unet: await readConfig(io, sub('unet')),
    scheduler: JSON.parse(await io.readText(schedPath)) as Record<string, unknown>,
    vae: Object.keys(info.config).length ? info.config : null,
    vaeDir,
    vaeClass: info.className,
    textEncoder: await readConfig(io, sub('text_encoder')),
  };
}

/**
 * The VAE dtype a pipeline loads with: `requested` if given, else f32 for an AutoencoderTiny (TAESD degrades in
 * float16) and the model's `dtype` for any other VAE. Throws InvalidArgumentError (field 'vaeDtype') for a value
 * that is not 'f32' or 'f16'.
 */
export function resolveVaeDtype(vaeClass: string, dtype: 'f32' | 'f16', requested?: 'f32' | 'f16' | undefined): 'f32' | 'f16' {
  if (requested !== undefined) {
    if (requested !== 'f32' && requested !== 'f16') throw new InvalidArgumentError(`StableDiffusionPipeline.fromPretrained: vaeDtype must be 'f32' or 'f16', got ${JSON.stringify(requested)}`, 'vaeDtype');
    return requested;
  }
  return vaeClass === 'AutoencoderTiny' ? 'f32' : dtype;
}

/** Loads every component of a pipeline folder (hub ids through `opts.resolve`), emitting a load event pair per component. */
export async function loadPipelineComponents(idOrDir: string, opts: PipelineLoadOptions): Promise<PipelineComponents & { unetConfig: Record<string, unknown> }> {
  const { io, device, signal } = opts;
  if (!device || !io) throw new InvalidArgumentError('StableDiffusionPipeline.fromPretrained: opts.device and opts.io are required', 'device');
  const dtype = opts.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new InvalidArgumentError(`StableDiffusionPipeline.fromPretrained: dtype must be 'f32' or 'f16', got ${JSON.stringify(dtype)}`, 'dtype');
  for (const k of ['lowMemory', 'preload'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw new InvalidArgumentError(`StableDiffusionPipeline.fromPretrained: ${k} must be true or false, got ${JSON.stringify(opts[k])}`, k);
  }
  if (opts.vaeDtype !== undefined) resolveVaeDtype('', dtype, opts.vaeDtype); // checked before anything is resolved
  throwIfAborted(signal, 'loading');
  const req: ResolveRequest = { dtype, vae: opts.vae, onProgress: opts.onProgress, signal };
  let dir = idOrDir;
  if (opts.resolve) dir = await opts.resolve(idOrDir, req);
  else if (!(await io.exists(io.join(idOrDir, 'unet')))) {
    throw new InvalidArgumentError(`${idOrDir}: not a local diffusers folder (no unet/); to load a hub id pass \`resolve\` (Node: hubResolver() from @fewstep/weights-tools)`, 'model');
  }
  const configs = await readPipelineConfigs(io, dir, opts.vae);
  const vaeDtype = resolveVaeDtype(configs.vaeClass, dtype, opts.vaeDtype);
  const owned: { dispose(): void }[] = [];
  /** Loads one component between a start and an end event; checks the signal first. */
  const step = async <T extends { dispose(): void } | CLIPTokenizer>(component: string, load: () => Promise<T>): Promise<T> => {
    throwIfAborted(signal, 'loading');
    opts.onProgress?.({ type: 'load', status: 'start', component, ms: 0 });
    const t0 = now();
    const m = await load();
    if ('dispose' in m) owned.push(m);
    opts.onProgress?.({ type: 'load', status: 'end', component, ms: now() - t0 });
    return m;
  };
  try {
    // Under the signal each weight upload checks it, so an abort stops inside a component too.
    return await device.withSignal(signal, () => loadAll());
  } catch (e) {
    for (const m of owned) m.dispose();
    throw e;
  }

  async function loadAll() {
    const sub = (name: string) => io.join(dir, name);
    const tokenizer = await step('tokenizer', () => CLIPTokenizer.fromFolder(io, sub('tokenizer')));
    const lowMemory = opts.lowMemory === true;
    const stream = weightStream(device, { lowMemory, preload: opts.preload === true });
    const loaders: ComponentLoaders = {
      textEncoder: () => loadWithTransform(io, sub('text_encoder'), 'text_encoder', opts, stream, (w, cfg) => CLIPTextModel.load(w, cfg)),
      unet: () =>
        loadWithTransform(io, sub('unet'), 'unet', opts, stream, async (w, cfg) => {
          const m = await UNet2DConditionModel.load(w, cfg as UNet2DConditionConfig);
          try {
            w.finish('UNet2DConditionModel');
          } catch (e) {
            m.dispose();
            throw e;
          }
          return m;
        }),
      vae: async () => {
        const vaeOpts = { dtype: vaeDtype, stream, ...(opts.variant !== undefined ? { variant: opts.variant } : {}) };
        if (configs.vaeClass === 'AutoencoderTiny') return AutoencoderTiny.fromFolder(io, configs.vaeDir, device, vaeOpts);
        if (configs.vaeClass === 'AutoencoderKL') return AutoencoderKL.fromFolder(io, configs.vaeDir, device, vaeOpts);
        throw new InvalidArgumentError(`${configs.vaeDir}: VAE class "${configs.vaeClass}" is not supported (AutoencoderTiny, AutoencoderKL)`, 'vae');
      },
    };
    // Low memory: each component is loaded once to check it (keys, shapes, LoRA keys) and freed at once; the
    // freed instance stays for its configs, the loader loads it again for each stage.
    const checked = async <T extends { dispose(): void }>(m: T): Promise<T> => {
      if (lowMemory) {
        m.dispose();
        await device.trimMemory();
      }
      return m;
    };
    const textEncoder = await checked(await step('text_encoder', loaders.textEncoder));
    const unet = await checked(await step('unet', loaders.unet));
    const vae = await checked(await step('vae', loaders.vae));
    let controlnet: ControlNetModel | undefined;
    if (opts.controlnet !== undefined) {
      const cnDir = await controlNetDir(opts, req);
      loaders.controlnet = () => loadControlNet(opts, cnDir, dtype, stream);
      controlnet = await checked(await step('controlnet', loaders.controlnet));
    }
    throwIfAborted(signal, 'loading');
    return { tokenizer, textEncoder, unet, vae, schedulerConfig: configs.scheduler, unetConfig: configs.unet, controlnet, stream, ...(lowMemory ? { lowMemory: loaders } : {}) };
  }
}

async function pickVaeDir(io: FileSource, dir: string, want: 'tiny' | 'large' | undefined): Promise<string> {
  const vaeDir = io.join(dir, 'vae');
  const classOf = async (d: string) => (await componentInfo(io, d)).className;
  if (want === undefined) {
    if (!(await io.exists(io.join(vaeDir, 'config.json')))) throw new InvalidArgumentError(`${dir}: missing vae/config.json`, 'model');
    return vaeDir;
  }
  if (want !== 'tiny' && want !== 'large') throw new InvalidArgumentError(`vae must be 'tiny' or 'large', got ${JSON.stringify(want)}`, 'vae');
  const wantClass = want === 'tiny' ? 'AutoencoderTiny' : 'AutoencoderKL';
  const candidates = want === 'tiny' ? ['vae', 'vae_tiny', 'taesd'] : ['vae_large', 'vae'];
  for (const c of candidates) {
    const d = io.join(dir, c);
    if ((await io.exists(io.join(d, 'config.json'))) && (await classOf(d)) === wantClass) return d;
  }
  throw new InvalidArgumentError(`${dir}: vae '${want}' asks for an ${wantClass}, but none of ${candidates.map((c) => `${c}/`).join(', ')} holds one`, 'vae');
}

/** Opens a component's weights and builds it through a WeightScope carrying the hook's transform and the pipeline's weight stream. */
async function loadWithTransform<T>(
  io: FileSource,
  dir: string,
  component: TransformableComponent,
  opts: PipelineLoadOptions,
  stream: ParameterCache | undefined,
  build: (w: WeightScope, config: Record<string, unknown>) => Promise<T>,
): Promise<T> {
  const config = await readConfig(io, dir);
  const src = await openComponentWeights(io, dir, opts.variant);
  try {
    const transform = opts.weightTransform ? await opts.weightTransform(component, { config, source: src }) : undefined;
    const w = WeightScope.create(src, opts.device, opts.dtype ?? 'f32', transform, stream);
    try {
      return await build(w, config);
    } catch (e) {
      disposeAll(w.loaded);
      throw e;
    }
  } finally {
    await src.close();
  }
}

/** The folder of `opts.controlnet` (a folder, or a hub id through `opts.resolveControlNet`), checked to hold a ControlNetModel. */
async function controlNetDir(opts: PipelineLoadOptions, req: ResolveRequest): Promise<string> {
  const { io } = opts;
  const id = opts.controlnet!;
  if (typeof id !== 'string' || !id) throw new InvalidArgumentError('StableDiffusionPipeline.fromPretrained: controlnet must be a folder or a hub id', 'controlnet');
  let dir = id;
  if (!(await io.exists(io.join(id, 'config.json')))) {
    if (!opts.resolveControlNet) {
      throw new InvalidArgumentError(`controlnet ${id}: not a local ControlNet folder (no config.json); to load a hub id pass \`resolveControlNet\``, 'controlnet');
    }
    dir = await opts.resolveControlNet(id, req);
  }
  const { className } = await componentInfo(io, dir);
  if (className !== 'ControlNetModel') throw new InvalidArgumentError(`controlnet ${id}: config.json names "${className}", not a ControlNetModel`, 'controlnet');
  return dir;
}

function loadControlNet(opts: PipelineLoadOptions, dir: string, dtype: 'f32' | 'f16', stream: ParameterCache | undefined): Promise<ControlNetModel> {
  return ControlNetModel.fromFolder(opts.io, dir, opts.device, { dtype, stream, ...(opts.variant !== undefined ? { variant: opts.variant } : {}) });
}
