/**
 * StableDiffusionPipeline: text-to-image and image-to-image with the semantics of diffusers v0.25.1
 * `StableDiffusionPipeline.__call__` / `StableDiffusionImg2ImgPipeline.__call__`
 * (pipelines/stable_diffusion/pipeline_stable_diffusion{,_img2img}.py), on fewstep's components.
 *
 * What runs where: tokenizer, scheduler, random numbers, CFG combination and postprocess on the CPU
 * (latent-sized Float32Arrays, float32-rounded like torch); text encoder, UNet and VAE on the GPU.
 *
 * Text-to-image, in diffusers' order:
 *  1. tokenize every prompt with padding to the tokenizer's max length (77, the model's pad token),
 *     truncation; text encoder `last_hidden_state`, no attention mask.
 *  2. CFG only when guidance > 1 (the UNet has no time_cond_proj_dim: fewstep's UNet rejects it):
 *     the negative prompts (default "") are encoded too and the UNet runs [uncond…, cond…] as one
 *     batch of 2B; noise_pred = uncond + g·(cond − uncond) (float32).
 *  3. `setTimesteps(steps)`; latents = the given ones, or `randn([B, 4, H/8, W/8])` from
 *     `TorchGenerator(seed)` (bit-exact to `torch.Generator('cpu').manual_seed(seed)` + diffusers
 *     `randn_tensor`), times `initNoiseSigma`.
 *  4. per timestep: scaleModelInput → UNet(t) → CFG → `step(…, { noise })`, where the noise callback
 *     draws from the SAME generator exactly when diffusers' scheduler calls randn_tensor (DDPM for
 *     t > 0, LCM between steps, Euler always), so stochastic schedulers follow diffusers' stream.
 *  5. decode `latents / vae.scaling_factor`; postprocess `(x/2 + 0.5).clamp(0, 1)`, ×255, round half
 *     to even → uint8 RGB.
 *
 * Image-to-image (`initImage`, `strength`), as StableDiffusionImg2ImgPipeline: the image ([-1, 1],
 * its own size; width/height must be multiples of 8 — no resizing here) is encoded ONCE and shared
 * by every batch item (diffusers encodes one image and repeats it): AutoencoderTiny → its encoder
 * output; AutoencoderKL → `latent_dist.sample(generator)` = mean + std·randn(generator) — this is
 * the FIRST draw from the generator. Then × scaling_factor, repeated to the batch;
 * `get_timesteps`: init = min(⌊steps·strength⌋, steps), the schedule starts at index steps − init;
 * noise = randn([B, 4, h, w]) (the next draw), latents = addNoise(init_latents, noise, t_start);
 * then the remaining steps as above (no initNoiseSigma factor).
 *
 * ControlNet (`controlImage`, `controlScale`), as StableDiffusionControlNetPipeline with guess_mode off and
 * control_guidance_start/end 0/1: the control image (uint8 RGB, already the output size: no resizing here)
 * becomes [1, 3, H, W] = uint8 / 255 (no 2x − 1), repeated to the batch and, with CFG, once more for the
 * uncond half (same image). Every step the ControlNet runs on the UNet's own input (scaled latents,
 * timestep, all prompt embeddings) and its residuals × controlScale are added to the UNet's skips and mid
 * output. Inverting a sketch (255 − x, IDKiro's demo) is the caller's choice: `invertControlImage`.
 * Browser-safe: no node: imports.
 */
import { Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { CLIPTokenizer } from '../clip/tokenization_clip.js';
import { CLIPTextModel } from '../clip/modeling_clip.js';
import { UNet2DConditionModel, type UNet2DConditionConfig, type UNetForwardOptions } from '../unets/unet_2d_condition.js';
import { ControlNetModel } from '../controlnets/controlnet.js';
import { AutoencoderTiny } from '../autoencoders/autoencoder_tiny.js';
import { AutoencoderKL } from '../autoencoders/autoencoder_kl.js';
import { schedulerFromConfig, type Scheduler } from '../schedulers/index.js';
import { TorchGenerator } from '../random/torch_randn.js';
import { checkLatentReference, informativeInit, type LatentReference } from './informative_init.js';
import { WeightScope, disposeAll, type TensorSource, type WeightTransform } from '../modeling/weights.js';
import { openComponentWeights, readConfig } from '../modeling/component.js';
import { componentInfo } from '../modeling/registry.js';
import { checkRGBImage, postprocess, preprocess, preprocessControlImage, type RGBImage } from './image_processor.js';

export type { RGBImage } from './image_processor.js';

export type PipelineStage = 'load' | 'tokenize' | 'text_encoder' | 'denoise' | 'decode' | 'encode_image';

/** Emitted when a stage (or one denoising step: `step` 0-based of `steps`) finishes; `ms` is its duration. */
export type ProgressEvent = { stage: PipelineStage; step?: number | undefined; steps?: number | undefined; ms: number };

/** Which component a weight transform is asked for. */
export type TransformableComponent = 'unet' | 'text_encoder';

export interface WeightTransformRequest {
  /** The component folder's config.json. */
  config: Record<string, unknown>;
  /** Its weights (keys and shapes), e.g. to check which LoRA keys apply. */
  source: TensorSource;
}

export interface PipelineDefaults {
  steps: number;
  guidance: number;
  width: number;
  height: number;
}

export interface PipelineLoadOptions {
  device: Device;
  io: FileSource;
  dtype?: 'f32' | 'f16' | undefined;
  /** 'tiny': an AutoencoderTiny in vae/ (or vae_tiny/, taesd/); 'large': vae_large/ (or an AutoencoderKL vae/). Default: vae/ as it is. */
  vae?: 'tiny' | 'large' | undefined;
  /** Scheduler class name (e.g. 'LCMScheduler') or an override object (`_class_name` and/or config keys) applied to scheduler/scheduler_config.json. */
  scheduler?: string | Record<string, unknown> | undefined;
  /** Weight-file variant, e.g. 'fp16'. */
  variant?: string | undefined;
  /** Hook for LoRA: a transform applied to the named component's weights as they load. */
  weightTransform?: ((component: TransformableComponent, req: WeightTransformRequest) => WeightTransform | undefined | Promise<WeightTransform | undefined>) | undefined;
  /** Overrides of the model's defaults (e.g. YOSO: { steps: 2, guidance: 1.5 }). */
  defaults?: Partial<PipelineDefaults> | undefined;
  onProgress?: (e: ProgressEvent) => void;
  /**
   * Turns a hub id (or anything that is not a local folder) into a local diffusers folder. This
   * package does no network IO itself; in Node pass `hubResolver()` from `@fewstep/weights-tools`
   * (downloads only what the pipeline reads into the Hugging Face cache).
   */
  resolve?: (idOrDir: string, want: { dtype: 'f32' | 'f16'; vae?: 'tiny' | 'large' | undefined }) => Promise<string>;
  /**
   * A ControlNetModel to load with the pipeline (diffusers `controlnet=`): a local folder with config.json and
   * its weights, or — through `resolveControlNet` — a hub id such as IDKiro/sdxs-512-dreamshaper-sketch.
   */
  controlnet?: string | undefined;
  /**
   * Turns a `controlnet` that is not a local folder into one (Node: e.g. `(id) => snapshotDownload(id, …)`
   * from `@fewstep/weights-tools`). The pipeline's own `resolve` is for whole pipelines (model_index.json).
   */
  resolveControlNet?: (idOrDir: string, want: { dtype: 'f32' | 'f16' }) => Promise<string>;
}

export interface PipelineComponents {
  tokenizer: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderTiny | AutoencoderKL;
  /** scheduler_config.json (any class; `opts.scheduler` may override the class). */
  schedulerConfig: Record<string, unknown>;
  /** The UNet's raw config.json, for `sample_size` (default width/height) and model detection. */
  unetConfig?: Record<string, unknown> | undefined;
  /** Optional ControlNet (used when generate() gets a controlImage). */
  controlnet?: ControlNetModel | undefined;
}

export interface FromComponentsOptions {
  scheduler?: string | Record<string, unknown> | undefined;
  defaults?: Partial<PipelineDefaults> | undefined;
  onProgress?: (e: ProgressEvent) => void;
}

/** One UNet call, for debugging and golden tests (`GenerateOptions.onStep`). */
export interface StepTrace {
  step: number;
  timestep: number;
  /** The UNet input after scaleModelInput (and the CFG doubling [uncond, cond]). */
  unetSample: Float32Array;
  /** The raw UNet output (before CFG). */
  unetOut: Float32Array;
  /** Latents after scheduler.step. */
  latents: Float32Array;
  /** With a controlImage: the ControlNet's residuals as the UNet received them (× controlScale). */
  controlnetDownBlockResSamples?: Float32Array[] | undefined;
  controlnetMidBlockResSample?: Float32Array | undefined;
}

export interface GenerateOptions {
  prompt: string | string[];
  /** Used only with CFG (guidance > 1); default "". A single string applies to every prompt. */
  negativePrompt?: string | string[] | undefined;
  /** torch CPU generator seed; default: a random 32-bit seed (reported in the result). */
  seed?: number | bigint | undefined;
  steps?: number | undefined;
  guidance?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  /** Images per prompt (diffusers num_images_per_prompt). */
  batchSize?: number | undefined;
  /** Initial latents [prompts·batchSize, 4, H/8, W/8] (before the initNoiseSigma factor), instead of drawing them. */
  latents?: { data: Float32Array; shape: number[] } | undefined;
  /** img2img source image (output has its size). */
  initImage?: RGBImage | undefined;
  /**
   * YOSO's informative prior initialisation (see `informative_init.ts`): start from reference latents'
   * mean + std·noise, noised to the first timestep, instead of pure noise. For one-step SD1.5 + YOSO.
   */
  informativeInit?: { reference: LatentReference } | undefined;
  /** img2img: how much of the schedule runs, in (0, 1]; default 0.8 (diffusers). */
  strength?: number | undefined;
  /**
   * ControlNet conditioning image (needs a ControlNet: `controlnet` at load or `setControlNet`), uint8 RGB of the
   * output size (width/height default to it; it is not resized). One image for the whole batch. A sketch for
   * IDKiro's sketch ControlNet is usually inverted first (`invertControlImage`), as its demo does.
   */
  controlImage?: RGBImage | undefined;
  /** diffusers `controlnet_conditioning_scale`: multiplies every ControlNet residual. Default 1. */
  controlScale?: number | undefined;
  onProgress?: (e: ProgressEvent) => void;
  /** Called after every denoising step with the UNet's input/output (CPU copies already made). */
  onStep?: (s: StepTrace) => void;
}

export interface GenerateResult {
  images: RGBImage[];
  /** The final latents (what the VAE decodes, before ÷ scaling_factor). */
  latents: { data: Float32Array; shape: number[] };
  /** ms per stage: tokenize, text_encoder, encode_image, denoise (total), denoise.<i>, decode, total. */
  timings: Record<string, number>;
  /** The seed used, as a decimal string. */
  seed: string;
  /** The float NHWC image in [0, 1] (diffusers output_type='np'), all images concatenated. */
  imageFloat: { data: Float32Array; shape: number[] };
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const f = Math.fround;

export class StableDiffusionPipeline {
  readonly defaults: PipelineDefaults;
  /** Pixels per latent pixel (2^(len(vae block_out_channels) − 1) in diffusers; 8 for SD VAEs and TAESD). */
  readonly vaeScaleFactor: number;
  private disposed = false;
  private _controlnet: ControlNetModel | null = null;

  private constructor(
    readonly tokenizer: CLIPTokenizer,
    readonly textEncoder: CLIPTextModel,
    readonly unet: UNet2DConditionModel,
    readonly vae: AutoencoderTiny | AutoencoderKL,
    readonly schedulerConfig: Record<string, unknown>,
    readonly schedulerOverride: string | Record<string, unknown> | undefined,
    unetConfig: Record<string, unknown> | undefined,
    defaults: Partial<PipelineDefaults> | undefined,
    private readonly onProgress: ((e: ProgressEvent) => void) | undefined,
    controlnet?: ControlNetModel,
  ) {
    this.vaeScaleFactor = vae instanceof AutoencoderTiny ? vae.scaleFactor : 2 ** (vae.config.blockOutChannels.length - 1);
    // Fail at construction on a scheduler config/override we cannot build.
    const sched = this.createScheduler();
    this.defaults = { ...modelDefaults(unet, unetConfig, sched, this.vaeScaleFactor), ...stripUndefined(defaults ?? {}) };
    if (controlnet) this.setControlNet(controlnet);
  }

  /** The ControlNet generate() uses for a controlImage, or null. */
  get controlnet(): ControlNetModel | null {
    return this._controlnet;
  }

  /**
   * Attaches a ControlNet (the pipeline owns it from then on and disposes it with itself) or detaches it with
   * null. Returns the previous one, which the caller owns again. Throws if its residuals cannot fit the UNet.
   */
  setControlNet(controlnet: ControlNetModel | null): ControlNetModel | null {
    if (controlnet) checkControlNetFits(controlnet, this.unet);
    const prev = this._controlnet;
    this._controlnet = controlnet;
    return prev;
  }

  /**
   * Loads a local diffusers folder: model_index.json (optional), tokenizer/, text_encoder/, unet/,
   * vae/ (or vae_large/ with `vae: 'large'`), scheduler/scheduler_config.json.
   */
  static async fromPretrained(idOrDir: string, opts: PipelineLoadOptions): Promise<StableDiffusionPipeline> {
    const { io, device } = opts;
    if (!device || !io) throw new Error('StableDiffusionPipeline.fromPretrained: opts.device and opts.io are required');
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`StableDiffusionPipeline.fromPretrained: dtype must be 'f32' or 'f16', got ${JSON.stringify(dtype)}`);
    let dir = idOrDir;
    if (opts.resolve) dir = await opts.resolve(idOrDir, { dtype, vae: opts.vae });
    else if (!(await io.exists(io.join(idOrDir, 'unet')))) {
      throw new Error(`${idOrDir}: not a local diffusers folder (no unet/); to load a hub id pass \`resolve\` (Node: hubResolver() from @fewstep/weights-tools)`);
    }
    const t0 = now();
    const sub = (name: string) => io.join(dir, name);

    const indexPath = sub('model_index.json');
    if (await io.exists(indexPath)) {
      const index = JSON.parse(await io.readText(indexPath)) as Record<string, unknown>;
      const cls = index['_class_name'];
      if (typeof cls === 'string' && !/^StableDiffusion(Img2Img)?Pipeline$/.test(cls)) {
        // Other SD1/SD2-structured pipelines (e.g. LatentConsistencyModelPipeline) load the same components.
        if (!['LatentConsistencyModelPipeline', 'StableDiffusionControlNetPipeline'].includes(cls)) {
          throw new Error(`${indexPath}: _class_name "${cls}" is not a Stable Diffusion 1.x/2.x pipeline fewstep can run`);
        }
      }
    }
    for (const c of ['tokenizer', 'text_encoder', 'unet', 'scheduler']) {
      if (!(await io.exists(sub(c)))) {
        const hasAny = (await io.exists(dir)) ? '' : ' (the folder does not exist)';
        throw new Error(`${dir}: not a diffusers Stable Diffusion folder: missing ${c}/${hasAny}`);
      }
    }
    const schedPath = io.join(dir, 'scheduler', 'scheduler_config.json');
    if (!(await io.exists(schedPath))) throw new Error(`${dir}: missing scheduler/scheduler_config.json`);
    const schedulerConfig = JSON.parse(await io.readText(schedPath)) as Record<string, unknown>;
    const vaeDir = await pickVaeDir(io, dir, opts.vae);

    const tokenizer = await CLIPTokenizer.fromFolder(io, sub('tokenizer'));
    const owned: { dispose(): void }[] = [];
    try {
      const teDir = sub('text_encoder');
      const textEncoder = await loadWithTransform(io, teDir, 'text_encoder', opts, async (w, cfg) => CLIPTextModel.load(w, cfg));
      owned.push(textEncoder);
      const unetDir = sub('unet');
      const unetConfig = await readConfig(io, unetDir);
      const unet = await loadWithTransform(io, unetDir, 'unet', opts, async (w, cfg) => {
        const m = await UNet2DConditionModel.load(w, cfg as UNet2DConditionConfig);
        try {
          w.finish('UNet2DConditionModel');
        } catch (e) {
          m.dispose();
          throw e;
        }
        return m;
      });
      owned.push(unet);
      const { className } = await componentInfo(io, vaeDir);
      let vae: AutoencoderTiny | AutoencoderKL;
      if (className === 'AutoencoderTiny') vae = await AutoencoderTiny.fromFolder(io, vaeDir, device, { dtype, variant: opts.variant });
      else if (className === 'AutoencoderKL') vae = await AutoencoderKL.fromFolder(io, vaeDir, device, { dtype, variant: opts.variant });
      else throw new Error(`${vaeDir}: VAE class "${className}" is not supported (AutoencoderTiny, AutoencoderKL)`);
      owned.push(vae);
      let controlnet: ControlNetModel | undefined;
      if (opts.controlnet !== undefined) {
        controlnet = await loadControlNet(opts, dtype);
        owned.push(controlnet);
      }
      const p = new StableDiffusionPipeline(tokenizer, textEncoder, unet, vae, schedulerConfig, opts.scheduler, unetConfig, opts.defaults, opts.onProgress, controlnet);
      opts.onProgress?.({ stage: 'load', ms: now() - t0 });
      return p;
    } catch (e) {
      for (const m of owned) m.dispose();
      throw e;
    }
  }

  /** Assembles a pipeline from loaded components; it owns them afterwards (`dispose()` frees them). */
  static fromComponents(c: PipelineComponents, opts: FromComponentsOptions = {}): StableDiffusionPipeline {
    for (const k of ['tokenizer', 'textEncoder', 'unet', 'vae', 'schedulerConfig'] as const) {
      if (!c[k]) throw new Error(`StableDiffusionPipeline.fromComponents: missing ${k}`);
    }
    return new StableDiffusionPipeline(c.tokenizer, c.textEncoder, c.unet, c.vae, c.schedulerConfig, opts.scheduler, c.unetConfig, opts.defaults, opts.onProgress, c.controlnet);
  }

  get device(): Device {
    return this.textEncoder.device;
  }

  /** A fresh scheduler (schedulers keep per-run state, so every generate() builds its own). */
  createScheduler(): Scheduler {
    return schedulerFromConfig(this.schedulerConfig, this.schedulerOverride);
  }

  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    if (this.disposed) throw new Error('StableDiffusionPipeline: generate() after dispose()');
    const o = this.resolve(opts);
    const timings: Record<string, number> = {};
    const tStart = now();
    const emit = (e: ProgressEvent) => {
      this.onProgress?.(e);
      opts.onProgress?.(e);
    };
    const device = this.device;
    const gen = new TorchGenerator(o.seed);
    const B = o.prompts.length * o.batchSize;
    const h = o.height / this.vaeScaleFactor, w = o.width / this.vaeScaleFactor;
    const C = this.unet.config.inChannels;
    const latentShape = [B, C, h, w];
    const cfg = o.guidance > 1;

    // 1. tokenize ([uncond…, cond…] with CFG; each prompt repeated batchSize times, like diffusers' repeat)
    let t = now();
    const rows: string[] = [];
    const expand = (list: string[]) => list.flatMap((p) => Array<string>(o.batchSize).fill(p));
    if (cfg) rows.push(...expand(o.negatives));
    rows.push(...expand(o.prompts));
    const L = this.tokenizer.modelMaxLength;
    const ids = new Int32Array(rows.length * L);
    rows.forEach((text, i) => ids.set(this.tokenizer.encode(text, L).inputIds, i * L));
    timings['tokenize'] = now() - t;
    emit({ stage: 'tokenize', ms: timings['tokenize'] });

    const scheduler = this.createScheduler();
    let context: Tensor | undefined;
    let controlCond: Tensor | undefined;
    const controlnet = o.controlImage ? this._controlnet! : null;
    try {
      if (o.controlImage) {
        // prepare_image: one image repeated to the batch, and once more for the uncond half with CFG.
        const { data, shape } = preprocessControlImage(o.controlImage);
        const rowsN = cfg ? 2 * B : B;
        const rep = new Float32Array(data.length * rowsN);
        for (let b = 0; b < rowsN; b++) rep.set(data, b * data.length);
        controlCond = Tensor.from(device, rep, [rowsN, ...shape.slice(1)], 'f32');
      }
      // 2. text encoder (last_hidden_state, no attention mask)
      t = now();
      context = await device.scope(async () => {
        const idsT = Tensor.from(device, ids, [rows.length, L], 'i32');
        const out = await this.textEncoder.forward(idsT, { pooler: false });
        return out.lastHiddenState;
      });
      await device.sync();
      timings['text_encoder'] = now() - t;
      emit({ stage: 'text_encoder', ms: timings['text_encoder'] });

      // 3. timesteps and initial latents
      scheduler.setTimesteps(o.steps);
      let timesteps = scheduler.timesteps;
      let latents: Float32Array;
      const randn = (shape: number[]) => gen.randn(shape, 'f32') as Float32Array;
      if (o.initImage) {
        const init = Math.min(Math.floor(o.steps * o.strength), o.steps);
        const tStartIdx = Math.max(o.steps - init, 0);
        timesteps = timesteps.slice(tStartIdx);
        if (timesteps.length === 0) {
          throw new Error(`generate: strength ${o.strength} × steps ${o.steps} leaves no denoising step (needs ⌊steps·strength⌋ ≥ 1)`);
        }
        t = now();
        const initLatents = await this.encodeImage(o.initImage, randn);
        timings['encode_image'] = now() - t;
        emit({ stage: 'encode_image', ms: timings['encode_image'] });
        const per = initLatents.length;
        const rep = new Float32Array(per * B);
        for (let b = 0; b < B; b++) rep.set(initLatents, b * per);
        const noise = randn(latentShape);
        latents = scheduler.addNoise(rep, noise, timesteps[0]!);
      } else {
        const base = o.latents
          ? Float32Array.from(o.latents.data)
          : opts.informativeInit
            ? informativeInit(opts.informativeInit.reference, B, randn, (x, n, ts) => scheduler.addNoise(x, n, ts), timesteps[0]!)
            : randn(latentShape);
        const sigma = scheduler.initNoiseSigma;
        latents = sigma === 1 ? base : base.map((x) => f(x * sigma));
      }

      // 4. denoising loop
      const tLoop = now();
      const noiseFn = () => randn(latentShape);
      const n = latents.length;
      for (let i = 0; i < timesteps.length; i++) {
        t = now();
        const ts = timesteps[i]!;
        let input = latents;
        if (cfg) {
          input = new Float32Array(2 * n);
          input.set(latents, 0);
          input.set(latents, n);
        }
        const scaled = scheduler.scaleModelInput(input, ts);
        let traceDown: Float32Array[] | undefined, traceMid: Float32Array | undefined;
        const out = await device.scope(async () => {
          const x = Tensor.from(device, scaled, [cfg ? 2 * B : B, C, h, w], 'f32');
          let residuals: UNetForwardOptions = {};
          if (controlnet) {
            // The ControlNet sees exactly the UNet's input: scaled latents, t, all prompt embeddings.
            const r = controlnet.forward(x, ts, context!, controlCond!, { conditioningScale: o.controlScale });
            residuals = { downBlockAdditionalResiduals: r.downBlockResSamples, midBlockAdditionalResidual: r.midBlockResSample };
          }
          const y = this.unet.forward(x, ts, context!, residuals);
          if (opts.onStep && residuals.downBlockAdditionalResiduals) {
            traceDown = await Promise.all(residuals.downBlockAdditionalResiduals.map((t) => t.readF32()));
            traceMid = await residuals.midBlockAdditionalResidual!.readF32();
          }
          return y.readF32();
        });
        let noisePred = out;
        if (cfg) {
          noisePred = new Float32Array(n);
          const g = f(o.guidance);
          for (let j = 0; j < n; j++) {
            const u = out[j]!, c = out[n + j]!;
            noisePred[j] = f(u + f(g * f(c - u)));
          }
        }
        latents = scheduler.step(noisePred, ts, latents, { noise: noiseFn }).prevSample;
        const ms = now() - t;
        timings[`denoise.${i}`] = ms;
        opts.onStep?.({ step: i, timestep: ts, unetSample: scaled, unetOut: out, latents, controlnetDownBlockResSamples: traceDown, controlnetMidBlockResSample: traceMid });
        emit({ stage: 'denoise', step: i, steps: timesteps.length, ms });
      }
      timings['denoise'] = now() - tLoop;

      // 5. decode and postprocess
      t = now();
      const sf = this.scalingFactor;
      const z = sf === 1 ? latents : latents.map((x) => f(x / sf));
      const decoded = await device.scope(async () => {
        const zt = Tensor.from(device, z, latentShape, this.vae.dtype === 'f16' ? 'f16' : 'f32');
        const img = this.vae.decode(zt);
        return { data: await img.readF32(), shape: [...img.shape] };
      });
      const pp = postprocess(decoded.data, decoded.shape);
      timings['decode'] = now() - t;
      emit({ stage: 'decode', ms: timings['decode'] });
      timings['total'] = now() - tStart;
      const [, , H, W] = decoded.shape as [number, number, number, number];
      return {
        images: pp.images,
        latents: { data: latents, shape: latentShape },
        timings,
        seed: o.seed.toString(),
        imageFloat: { data: pp.float, shape: [B, H, W, 3] },
      };
    } finally {
      context?.dispose();
      controlCond?.dispose();
    }
  }

  /** The VAE's scaling_factor (AutoencoderTiny 1.0; SD AutoencoderKL 0.18215). */
  get scalingFactor(): number {
    return this.vae instanceof AutoencoderTiny ? this.vae.config.scaling_factor : this.vae.config.scalingFactor;
  }

  /** img2img: image → init latents [1, 4, h, w] × scaling_factor (KL samples with `randn`, as diffusers' latent_dist.sample(generator)). */
  private async encodeImage(img: RGBImage, randn: (shape: number[]) => Float32Array): Promise<Float32Array> {
    const device = this.device;
    const { data, shape } = preprocess(img);
    const sf = this.scalingFactor;
    const vae = this.vae;
    let lat: Float32Array;
    if (vae instanceof AutoencoderTiny) {
      lat = await device.scope(async () => {
        const x = Tensor.from(device, data, shape, vae.dtype === 'f16' ? 'f16' : 'f32');
        return vae.encode(x).readF32();
      });
    } else {
      const x = Tensor.from(device, data, shape, 'f32');
      try {
        const dist = await vae.encode(x);
        try {
          const [mean, std] = [await dist.mean.readF32(), await dist.std.readF32()];
          const eps = randn([...dist.mean.shape]);
          lat = new Float32Array(mean.length);
          for (let i = 0; i < lat.length; i++) lat[i] = f(mean[i]! + f(std[i]! * eps[i]!));
        } finally {
          dist.mean.dispose();
          dist.std.dispose();
        }
      } finally {
        x.dispose();
      }
    }
    return sf === 1 ? lat : lat.map((v) => f(sf * v));
  }

  private resolve(opts: GenerateOptions) {
    if (!opts || typeof opts !== 'object') throw new Error('generate: options object required');
    const d = this.defaults;
    const prompts = typeof opts.prompt === 'string' ? [opts.prompt] : opts.prompt;
    if (!Array.isArray(prompts) || prompts.length === 0) throw new Error('generate: prompt must be a string or a non-empty list of strings');
    if (prompts.some((p) => typeof p !== 'string')) throw new Error('generate: every prompt must be a string');
    let negatives: string[];
    const np = opts.negativePrompt;
    if (np === undefined || np === null) negatives = prompts.map(() => '');
    else if (typeof np === 'string') negatives = prompts.map(() => np);
    else if (Array.isArray(np) && np.every((x) => typeof x === 'string')) {
      if (np.length !== prompts.length) throw new Error(`generate: negativePrompt has ${np.length} entries but prompt has ${prompts.length}`);
      negatives = np;
    } else throw new Error('generate: negativePrompt must be a string or a list of strings');

    const int = (name: string, v: unknown, min: number) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`generate: ${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
      return v;
    };
    let steps = int('steps', opts.steps ?? d.steps, 1);
    const batchSize = int('batchSize', opts.batchSize ?? 1, 1);
    const guidance = opts.guidance ?? d.guidance;
    if (typeof guidance !== 'number' || !Number.isFinite(guidance)) throw new Error(`generate: guidance must be a finite number, got ${JSON.stringify(guidance)}`);

    let seed: bigint;
    if (opts.seed === undefined || opts.seed === null) seed = BigInt(randomU32());
    else if (typeof opts.seed === 'bigint') seed = opts.seed;
    else if (typeof opts.seed === 'number' && Number.isSafeInteger(opts.seed)) seed = BigInt(opts.seed);
    else throw new Error(`generate: seed must be an integer (a number up to 2^53 or a bigint), got ${JSON.stringify(opts.seed)}`);

    const B = prompts.length * batchSize;
    const sf = this.vaeScaleFactor;
    const C = this.unet.config.inChannels;
    let width = opts.width, height = opts.height;
    let strength = 0.8;
    if (opts.initImage !== undefined) {
      checkRGBImage(opts.initImage, 'generate: initImage');
      if (opts.latents) throw new Error('generate: pass either latents or initImage, not both');
      const { width: iw, height: ih } = opts.initImage;
      if (width !== undefined && width !== iw) throw new Error(`generate: width ${width} differs from initImage's width ${iw} (img2img keeps the image size; resize the image first)`);
      if (height !== undefined && height !== ih) throw new Error(`generate: height ${height} differs from initImage's height ${ih} (img2img keeps the image size; resize the image first)`);
      width = iw;
      height = ih;
      if (iw % sf !== 0 || ih % sf !== 0) throw new Error(`generate: initImage is ${iw}×${ih}; width and height must be multiples of ${sf} (resize or crop it first)`);
      if (opts.strength !== undefined) {
        if (typeof opts.strength !== 'number' || !(opts.strength > 0 && opts.strength <= 1)) throw new Error(`generate: strength must be in (0, 1], got ${JSON.stringify(opts.strength)}`);
        strength = opts.strength;
      }
      if (opts.steps === undefined) {
        // img2img without `steps`: the smallest schedule that still runs the model's default number of
        // denoising steps after the strength cut (SDXS, 1 step, strength 0.8 → a 2-step schedule from t=499).
        steps = Math.max(d.steps, Math.ceil(d.steps / strength));
        while (Math.floor(steps * strength) < d.steps) steps++;
      }
      if (Math.min(Math.floor(steps * strength), steps) < 1) {
        throw new Error(`generate: strength ${strength} with steps ${steps} runs no denoising step (needs ⌊steps·strength⌋ ≥ 1; raise steps or strength)`);
      }
    } else if (opts.strength !== undefined) {
      throw new Error('generate: strength only applies to image-to-image (pass initImage)');
    }
    let controlScale = 1;
    if (opts.controlImage !== undefined) {
      if (!this._controlnet) throw new Error('generate: controlImage needs a ControlNet (fromPretrained(…, { controlnet }) or setControlNet())');
      if (opts.initImage !== undefined) throw new Error('generate: controlImage with initImage (ControlNet image-to-image) is not supported');
      checkRGBImage(opts.controlImage, 'generate: controlImage');
      const { width: cw, height: ch } = opts.controlImage;
      // diffusers resizes the control image to width × height (Lanczos); fewstep does not resample, so the sizes must agree.
      if (width !== undefined && width !== cw) throw new Error(`generate: width ${width} differs from controlImage's width ${cw} (the control image is not resized; resize it to the output size first)`);
      if (height !== undefined && height !== ch) throw new Error(`generate: height ${height} differs from controlImage's height ${ch} (the control image is not resized; resize it to the output size first)`);
      if (cw % sf !== 0 || ch % sf !== 0) throw new Error(`generate: controlImage is ${cw}×${ch}; width and height must be multiples of ${sf} (resize or crop it first)`);
      width = cw;
      height = ch;
      if (opts.controlScale !== undefined) {
        if (typeof opts.controlScale !== 'number' || !Number.isFinite(opts.controlScale)) throw new Error(`generate: controlScale must be a finite number, got ${JSON.stringify(opts.controlScale)}`);
        controlScale = opts.controlScale;
      }
    } else if (opts.controlScale !== undefined) {
      throw new Error('generate: controlScale only applies with a controlImage');
    }
    if (opts.informativeInit) {
      if (opts.latents || opts.initImage) throw new Error('generate: informativeInit replaces the initial noise; do not combine it with latents or initImage');
      const r = opts.informativeInit.reference;
      // The reference fixes the latent size: width/height default to it and must agree with it.
      const rs = Array.isArray(r?.shape) ? r.shape : [];
      width ??= (rs[3] ?? 0) * sf;
      height ??= (rs[2] ?? 0) * sf;
      checkLatentReference(r, C, height / sf, width / sf);
    }
    if (opts.latents) {
      const { data, shape } = opts.latents;
      if (!(data instanceof Float32Array) || !Array.isArray(shape)) throw new Error('generate: latents must be { data: Float32Array, shape: number[] }');
      if (shape.length !== 4 || shape[0] !== B || shape[1] !== C) {
        throw new Error(`generate: latents shape [${shape.join(', ')}] must be [${B}, ${C}, H/${sf}, W/${sf}] (${prompts.length} prompt(s) × batchSize ${batchSize})`);
      }
      if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`generate: latents data has ${data.length} values, shape [${shape.join(', ')}] needs ${shape.reduce((a, b) => a * b, 1)}`);
      const lw = shape[3]! * sf, lh = shape[2]! * sf;
      if (width !== undefined && width !== lw) throw new Error(`generate: width ${width} does not match the latents (width ${shape[3]} × ${sf} = ${lw})`);
      if (height !== undefined && height !== lh) throw new Error(`generate: height ${height} does not match the latents (height ${shape[2]} × ${sf} = ${lh})`);
      width = lw;
      height = lh;
    }
    width ??= d.width;
    height ??= d.height;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < sf || v % sf !== 0) {
        throw new Error(`generate: ${name} must be a positive multiple of ${sf}, got ${JSON.stringify(v)}${opts.initImage ? ' (from initImage)' : ''}`);
      }
    }
    return { prompts, negatives, steps, guidance, batchSize, seed, width, height, strength, latents: opts.latents, initImage: opts.initImage, controlImage: opts.controlImage, controlScale };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.textEncoder.dispose();
    this.unet.dispose();
    this.vae.dispose();
    this._controlnet?.dispose();
    this._controlnet = null;
  }
}

export { StableDiffusionPipeline as Pipeline };

// ------------------------------------------------------------------------------------------------

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function randomU32(): number {
  const c = (globalThis as { crypto?: { getRandomValues?: ((a: Uint32Array) => Uint32Array) | undefined} }).crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0]!;
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * The model's own settings: SDXS-style UNets (no mid block: SDXS-512-0.9 / DreamShaper) → 1 step,
 * guidance 0; LCMScheduler → 4 steps, guidance 1 (LCM/LCM-LoRA; YOSO wants { steps: 2, guidance:
 * 1.5 }: pass `defaults`, the LoRA file is not detectable here); Euler with trailing spacing
 * (turbo-style) → 1 step, guidance 0; anything else → 25 steps, guidance 7.5.
 * Size: unet sample_size × vae scale factor (64 × 8 = 512 when the config has none).
 */
function modelDefaults(unet: UNet2DConditionModel, unetConfig: Record<string, unknown> | undefined, sched: Scheduler, vaeScale: number): PipelineDefaults {
  const ss = unetConfig?.['sample_size'];
  let sh = 64, sw = 64;
  if (typeof ss === 'number' && ss > 0) sh = sw = ss;
  else if (Array.isArray(ss) && ss.length === 2 && ss.every((v) => typeof v === 'number' && v > 0)) [sh, sw] = ss as [number, number];
  const size = { width: sw * vaeScale, height: sh * vaeScale };
  if (unet.config.midBlockType === null) return { steps: 1, guidance: 0, ...size };
  if (sched.className === 'LCMScheduler') return { steps: 4, guidance: 1, ...size };
  if (sched.className === 'EulerDiscreteScheduler' && sched.config['timestep_spacing'] === 'trailing') return { steps: 1, guidance: 0, ...size };
  return { steps: 25, guidance: 7.5, ...size };
}

async function pickVaeDir(io: FileSource, dir: string, want: 'tiny' | 'large' | undefined): Promise<string> {
  const vaeDir = io.join(dir, 'vae');
  const hasVae = await io.exists(io.join(vaeDir, 'config.json'));
  const classOf = async (d: string) => (await componentInfo(io, d)).className;
  if (want === undefined) {
    if (!hasVae) throw new Error(`${dir}: missing vae/config.json`);
    return vaeDir;
  }
  if (want !== 'tiny' && want !== 'large') throw new Error(`vae must be 'tiny' or 'large', got ${JSON.stringify(want)}`);
  const wantClass = want === 'tiny' ? 'AutoencoderTiny' : 'AutoencoderKL';
  const candidates = want === 'tiny' ? ['vae', 'vae_tiny', 'taesd'] : ['vae_large', 'vae'];
  for (const c of candidates) {
    const d = io.join(dir, c);
    if ((await io.exists(io.join(d, 'config.json'))) && (await classOf(d)) === wantClass) return d;
  }
  throw new Error(`${dir}: vae '${want}' asks for an ${wantClass}, but none of ${candidates.map((c) => `${c}/`).join(', ')} holds one`);
}

/** Opens a component's weights and builds it through a WeightScope carrying the hook's transform. */
async function loadWithTransform<T>(
  io: FileSource,
  dir: string,
  component: TransformableComponent,
  opts: PipelineLoadOptions,
  build: (w: WeightScope, config: Record<string, unknown>) => Promise<T>,
): Promise<T> {
  const config = await readConfig(io, dir);
  const src = await openComponentWeights(io, dir, opts.variant);
  try {
    const transform = opts.weightTransform ? await opts.weightTransform(component, { config, source: src }) : undefined;
    const w = WeightScope.create(src, opts.device, opts.dtype ?? 'f32', transform);
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

/** Loads `opts.controlnet` (a folder, or a hub id through `opts.resolveControlNet`) as a ControlNetModel. */
async function loadControlNet(opts: PipelineLoadOptions, dtype: 'f32' | 'f16'): Promise<ControlNetModel> {
  const { io, device } = opts;
  const id = opts.controlnet!;
  if (typeof id !== 'string' || !id) throw new Error('StableDiffusionPipeline.fromPretrained: controlnet must be a folder or a hub id');
  let dir = id;
  if (!(await io.exists(io.join(id, 'config.json')))) {
    if (!opts.resolveControlNet) {
      throw new Error(`controlnet ${id}: not a local ControlNet folder (no config.json); to load a hub id pass \`resolveControlNet\``);
    }
    dir = await opts.resolveControlNet(id, { dtype });
  }
  const { className } = await componentInfo(io, dir);
  if (className !== 'ControlNetModel') throw new Error(`controlnet ${id}: config.json names "${className}", not a ControlNetModel`);
  return ControlNetModel.fromFolder(io, dir, device, { dtype, variant: opts.variant });
}

/** The ControlNet must mirror the UNet's encoder: one residual per UNet skip, same channels, same text width. */
function checkControlNetFits(cn: ControlNetModel, unet: UNet2DConditionModel): void {
  const c = cn.config, u = unet.config;
  const problems: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (c.inChannels !== u.inChannels) problems.push(`in_channels ${c.inChannels} vs the UNet's ${u.inChannels}`);
  if (!same(c.blockOutChannels, u.blockOutChannels)) problems.push(`block_out_channels ${JSON.stringify(c.blockOutChannels)} vs ${JSON.stringify(u.blockOutChannels)}`);
  if (u.layersPerBlock.some((l) => l !== c.layersPerBlock)) problems.push(`layers_per_block ${c.layersPerBlock} vs ${JSON.stringify(u.layersPerBlock)}`);
  if (u.crossAttentionDim.some((d) => d !== c.crossAttentionDim)) problems.push(`cross_attention_dim ${c.crossAttentionDim} vs ${JSON.stringify(u.crossAttentionDim)}`);
  if (problems.length) throw new Error(`ControlNetModel does not fit this UNet: ${problems.join('; ')}`);
}
