/**
 * StableDiffusionPipeline: text-to-image, image-to-image and ControlNet with the semantics of diffusers
 * v0.25.1 `StableDiffusionPipeline.__call__` / `StableDiffusionImg2ImgPipeline.__call__` /
 * `StableDiffusionControlNetPipeline.__call__`, on fewstep's components. `generate()` runs small named stages
 * as diffusers splits its `__call__`, each public for callers who want one part:
 *
 *  1. `encodePrompt`: tokenize with padding to 77 (the model's pad token) and truncation; text encoder
 *     `last_hidden_state` (or, with clip_skip, the hidden state clip_skip layers earlier through the final
 *     layer norm — for the prompt only, as diffusers 0.25.1); with CFG (guidance > 1; the UNet has no
 *     time_cond_proj_dim) the negative prompts (default "") too, as rows [uncond…, cond…]; each prompt
 *     repeated batchSize times (diffusers' repeat). `promptEmbeds` skips the encoder, and so does a prompt (or
 *     negative prompt) list met recently: the prompt-embedding cache (prompt_cache.ts) keeps the last 16
 *     encoder outputs by token ids (`promptCacheSize`).
 *  2. `prepareLatents`: `setTimesteps(steps)`; noise = `randn([B, C, H/8, W/8])` from `TorchGenerator(seed)`
 *     (bit-exact to `torch.Generator('cpu').manual_seed(seed)` + diffusers `randn_tensor`) × init_noise_sigma;
 *     or the given latents; or img2img: the image encoded ONCE and shared by the batch (AutoencoderKL:
 *     `latent_dist.sample(generator)` — the generator's FIRST draw), × scaling_factor; `get_timesteps` keeps
 *     the last ⌊steps·strength⌋ steps; latents = addNoise(init, randn (the next draw), t_start); or YOSO's
 *     informative prior (informative_init.ts; reference images are encoded to their latent means).
 *  3. `denoise`: per timestep scaleModelInput → (ControlNet on the same input →) UNet(t) → CFG
 *     uncond + g·(cond − uncond) (float32) → `step(…, { noise })`, where the noise callback draws from the
 *     SAME generator exactly when diffusers' scheduler calls randn_tensor (DDPM for t > 0, LCM between
 *     steps, Euler always), so stochastic schedulers follow diffusers' stream.
 *  4. `decode`: `latents / scaling_factor` → VAE decoder → `(x/2 + 0.5).clamp(0, 1)`, ×255, round half to
 *     even → uint8 RGB.
 *
 * ControlNet (guess_mode off, control_guidance_start/end 0/1): the control image becomes [1, 3, H, W] =
 * uint8 / 255 (no 2x − 1), repeated to the batch and, with CFG, once more for the uncond half; every step the
 * ControlNet sees the UNet's own input and its residuals × scale are added to the UNet's skips and mid output.
 * Images of another size than the output (init, control, reference) are fit by `resize` (crop by default).
 *
 * What runs where: tokenizer, scheduler, random numbers, CFG and postprocess on the CPU (float32-rounded
 * like torch); text encoder, UNet, ControlNet and VAE on the GPU. Browser-safe: no node: imports.
 */
import { InvalidArgumentError, ResourceLimitError, Tensor, UnsupportedError, throwIfAborted, type Device, type ParameterCache } from '@fewstep/tensor';
import { concat, slice } from '@fewstep/kernels';
import type { CLIPTokenizer } from '../clip/tokenization_clip.js';
import type { CLIPTextModel } from '../clip/modeling_clip.js';
import type { UNet2DConditionModel, UNetForwardOptions } from '../unets/unet_2d_condition.js';
import type { ControlNetModel } from '../controlnets/controlnet.js';
import type { NoiseGenerator, Vae } from '../autoencoders/autoencoder.js';
import { schedulerFromConfig, type Scheduler } from '../schedulers/index.js';
import { TorchGenerator } from '../random/torch_randn.js';
import { GeneratorList } from '../random/generator_list.js';
import type { RGBImage } from '../image/rgb_image.js';
import { fitImage, type FitMode } from '../image/image_fit.js';
import { informativeInit } from './informative_init.js';
import { postprocess, preprocess, preprocessControlImage } from './image_processor.js';
import {
  modelInfoFromConfigs,
  resolveGenerateOptions,
  type GenerateOptions,
  type GenerationPlan,
  type HostTensor,
  type ModelInfo,
  type PipelineDefaults,
  type StepTrace,
} from './generation_options.js';
import { loadPipelineComponents, type PipelineComponents, type PipelineLoadOptions } from './pipeline_loading.js';
import type { PipelineStage, ProgressCallback, ProgressEvent } from './progress.js';
import { ComponentResidency, type ComponentLoaders } from './low_memory.js';
import { PROMPT_CACHE_ENTRIES, PromptEmbeddingCache } from './prompt_cache.js';

export interface FromComponentsOptions {
  scheduler?: string | Record<string, unknown> | undefined;
  defaults?: Partial<PipelineDefaults> | undefined;
  /** Every generate()'s stage events (generate's own `onProgress` gets them too). */
  onProgress?: ProgressCallback | undefined;
  /** Text-encoder outputs kept for repeated prompts (default 16; 0: none). See `promptCache`. */
  promptCacheSize?: number | undefined;
}

export interface GenerateResult {
  images: RGBImage[];
  /** The final latents (what the VAE decodes, before ÷ scaling_factor). */
  latents: HostTensor;
  /** ms per stage: tokenize, text_encoder, encode_image, denoise (total), denoise.<i>, decode, total. */
  timings: Record<string, number>;
  /** The seed used, as a decimal string. */
  seed: string;
  /** The float NHWC image in [0, 1] (diffusers output_type='np'), all images concatenated. */
  imageFloat: HostTensor;
  /** The resolved request (defaults applied), e.g. for image metadata. */
  plan: GenerationPlan;
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const f = Math.fround;

/** Runs one stage between a start and an end event and records its time; `end` adds fields to the end event. */
type StageRunner = <T>(stage: PipelineStage, fn: () => Promise<T>, step?: { step: number; steps: number }, end?: () => Partial<ProgressEvent>) => Promise<T>;

export class StableDiffusionPipeline {
  readonly defaults: PipelineDefaults;
  /** What the request rules need to know of this model (see `resolveGenerateOptions`). */
  readonly info: ModelInfo;
  /** Pixels per latent pixel (2^(len(vae block_out_channels) − 1) in diffusers; 8 for SD VAEs and TAESD). */
  readonly vaeScaleFactor: number;
  private disposed = false;
  /** The text encoder, UNet, VAE and ControlNet: resident, or loaded per stage (low memory; see low_memory.ts). */
  private readonly residency: ComponentResidency;
  /** The most rows each stage has run in one pass without exceeding a binding limit (see inParts). */
  private readonly partRows = { unet: Infinity, decode: Infinity };
  /**
   * Text-encoder outputs by token ids (and clip_skip, dtype, tokenizer and encoder): a generate() whose prompts
   * were encoded recently skips the encoder. Its tensors are the cache's; it is cleared by `dispose()` and by
   * `clearPromptCache()` (call that after changing the text encoder's weights in place).
   */
  readonly promptCache: PromptEmbeddingCache;

  private constructor(
    readonly tokenizer: CLIPTokenizer,
    textEncoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    vae: Vae,
    readonly schedulerConfig: Record<string, unknown>,
    readonly schedulerOverride: string | Record<string, unknown> | undefined,
    unetConfig: Record<string, unknown> | undefined,
    defaults: Partial<PipelineDefaults> | undefined,
    private readonly onProgress: ProgressCallback | undefined,
    controlnet: ControlNetModel | undefined,
    lowMemory: ComponentLoaders | undefined,
    stream: ParameterCache | undefined,
    promptCacheSize: number,
  ) {
    this.residency = new ComponentResidency(textEncoder.device, { text_encoder: textEncoder, unet, vae, controlnet }, lowMemory, stream);
    this.promptCache = new PromptEmbeddingCache(promptCacheSize);
    this.vaeScaleFactor = vae.spatialScaleFactor;
    // Throws here, at construction, for a scheduler config/override that cannot be built.
    this.info = modelInfoFromConfigs({
      unet: unetConfig ?? { mid_block_type: unet.config.mid_block_type, in_channels: unet.config.in_channels },
      scheduler: schedulerConfig,
      schedulerOverride,
      vae: { block_out_channels: new Array<number>(Math.log2(this.vaeScaleFactor) + 1).fill(0) },
      textEncoder: { num_hidden_layers: textEncoder.config.num_hidden_layers },
      defaults,
    });
    this.defaults = this.info.defaults;
    if (controlnet) this.checkControlNet(controlnet);
  }

  /*
   * The components. With `lowMemory`, between the stages that load them these are freed instances: their configs
   * can be read, running them throws.
   */
  get textEncoder(): CLIPTextModel {
    return this.residency.model('text_encoder')!;
  }
  get unet(): UNet2DConditionModel {
    return this.residency.model('unet')!;
  }
  get vae(): Vae {
    return this.residency.model('vae')!;
  }

  /** True when each component is loaded from its source for its stage and freed after (`lowMemory`). */
  get lowMemory(): boolean {
    return this.residency.lowMemory;
  }

  /** The ControlNet generate() uses for a control image, or null. */
  get controlnet(): ControlNetModel | null {
    return this.residency.model('controlnet') ?? null;
  }

  /**
   * Attaches a ControlNet (the pipeline owns it from then on and disposes it with itself) or detaches it with
   * null. Returns the previous one, which the caller owns again. Throws if its residuals cannot fit the UNet.
   */
  setControlNet(controlnet: ControlNetModel | null): ControlNetModel | null {
    if (controlnet) checkControlNetFits(controlnet, this.unet);
    const prev = this.residency.replace('controlnet', controlnet);
    (this.info as { hasControlNet: boolean }).hasControlNet = controlnet !== null;
    return prev ?? null;
  }

  private checkControlNet(controlnet: ControlNetModel): void {
    checkControlNetFits(controlnet, this.unet);
    (this.info as { hasControlNet: boolean }).hasControlNet = true;
  }

  /**
   * Loads a diffusers folder (or, through `opts.resolve`, a hub id): model_index.json (optional), tokenizer/,
   * text_encoder/, unet/, vae/ (or vae_large/ with `vae: 'large'`), scheduler/scheduler_config.json, and an
   * optional ControlNet. `opts.onProgress` gets download and load events; `opts.signal` cancels.
   */
  static async fromPretrained(idOrDir: string, opts: PipelineLoadOptions): Promise<StableDiffusionPipeline> {
    const c = await loadPipelineComponents(idOrDir, opts);
    try {
      return StableDiffusionPipeline.fromComponents(c, { scheduler: opts.scheduler, defaults: opts.defaults, onProgress: opts.onProgress, promptCacheSize: opts.promptCacheSize });
    } catch (e) {
      for (const m of [c.textEncoder, c.unet, c.vae, c.controlnet]) m?.dispose();
      throw e;
    }
  }

  /** Assembles a pipeline from loaded components; it owns them afterwards (`dispose()` frees them). */
  static fromComponents(c: PipelineComponents, opts: FromComponentsOptions = {}): StableDiffusionPipeline {
    for (const k of ['tokenizer', 'textEncoder', 'unet', 'vae', 'schedulerConfig'] as const) {
      if (!c[k]) throw new UnsupportedError(`StableDiffusionPipeline.fromComponents: missing ${k}`);
    }
    if (c.lowMemory && !c.lowMemory.controlnet && c.controlnet) throw new UnsupportedError('StableDiffusionPipeline.fromComponents: lowMemory needs a controlnet loader when there is a controlnet');
    const cacheSize = opts.promptCacheSize ?? PROMPT_CACHE_ENTRIES;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new InvalidArgumentError(`StableDiffusionPipeline: promptCacheSize must be an integer ≥ 0, got ${cacheSize}`, 'promptCacheSize');
    return new StableDiffusionPipeline(c.tokenizer, c.textEncoder, c.unet, c.vae, c.schedulerConfig, opts.scheduler, c.unetConfig, opts.defaults, opts.onProgress, c.controlnet, c.lowMemory, c.stream, cacheSize);
  }

  get device(): Device {
    return this.textEncoder.device;
  }

  /** A fresh scheduler (schedulers keep per-run state, so every generate() builds its own). */
  createScheduler(): Scheduler {
    return schedulerFromConfig(this.schedulerConfig, this.schedulerOverride);
  }

  /** The VAE's scaling_factor (AutoencoderTiny 1.0; SD AutoencoderKL 0.18215). */
  get scalingFactor(): number {
    return this.vae.scalingFactor;
  }

  /** Checks a request against this model and applies its defaults, without running anything. */
  plan(opts: GenerateOptions): GenerationPlan {
    return resolveGenerateOptions(opts, this.info);
  }

  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    if (this.disposed) throw new UnsupportedError('StableDiffusionPipeline: generate() after dispose()');
    const plan = this.plan(opts);
    const { signal } = opts;
    throwIfAborted(signal, 'generate');
    const timings: Record<string, number> = {};
    const tStart = now();
    const emit = (e: ProgressEvent) => {
      this.onProgress?.(e);
      opts.onProgress?.(e);
    };
    const stage: StageRunner = async (name, fn, step, end) => {
      throwIfAborted(signal, 'generate');
      emit({ type: 'stage', status: 'start', stage: name, ...step, ms: 0 });
      const t = now();
      const r = await fn();
      if (signal?.aborted) {
        // Cancelled while the stage ran: what it made is freed here, not handed on.
        if (r instanceof Tensor) r.dispose();
        throwIfAborted(signal, 'generate');
      }
      const ms = now() - t;
      timings[step ? `${name}.${step.step}` : name] = ms;
      emit({ type: 'stage', status: 'end', stage: name, ...step, ms, ...end?.() } as ProgressEvent);
      return r;
    };
    const generator = plan.seeds ? new GeneratorList(plan.seeds) : new TorchGenerator(plan.seed);
    const scheduler = this.createScheduler();
    // Under the signal every GPU dispatch checks it: an abort stops at the next dispatch boundary.
    return this.device.withSignal(signal, async () => {
      const context = await this.encodePrompt(plan, stage);
      try {
        const { latents, timesteps } = await this.prepareLatents(plan, scheduler, generator, stage);
        const tLoop = now();
        const final = await this.denoise(plan, { latents, timesteps, context, scheduler, generator }, stage, opts.onStep);
        timings['denoise'] = now() - tLoop;
        const decoded = await stage('decode', () => this.decode(final, plan.latentShape));
        timings['total'] = now() - tStart;
        return {
          images: decoded.images,
          latents: { data: final, shape: [...plan.latentShape] },
          timings,
          seed: plan.seed.toString(),
          imageFloat: { data: decoded.float, shape: [plan.images, plan.height, plan.width, 3] },
          plan,
        };
      } finally {
        context.dispose();
      }
    });
  }

  /**
   * Stage 1 (diffusers `encode_prompt`): the UNet's context [rows, 77, D] on the GPU — [uncond…, cond…] with
   * CFG, each prompt repeated batchSize times. The caller owns the tensor. Each encoder call (prompts,
   * negatives) is looked up in `promptCache` first; its end event says `cached: true` when both were found.
   */
  async encodePrompt(plan: GenerationPlan, stage: StageRunner = plainStage): Promise<Tensor> {
    const device = this.device;
    const expand = (list: string[]) => list.flatMap((p) => Array<string>(plan.batchSize).fill(p));
    const repeatRows = (t: HostTensor) => {
      const [n, L, D] = t.shape as [number, number, number];
      const out = new Float32Array(n * plan.batchSize * L * D);
      for (let i = 0; i < n; i++) for (let b = 0; b < plan.batchSize; b++) out.set(t.data.subarray(i * L * D, (i + 1) * L * D), (i * plan.batchSize + b) * L * D);
      return Tensor.from(device, out, [n * plan.batchSize, L, D], 'f32');
    };
    const L = this.tokenizer.modelMaxLength;
    const tokenize = (rows: string[]) => {
      const ids = new Int32Array(rows.length * L);
      rows.forEach((text, i) => ids.set(this.tokenizer.encode(text, L).inputIds, i * L));
      return ids;
    };
    const { cond: condIds, uncond: uncondIds } = await stage('tokenize', async () => ({
      cond: plan.prompts ? tokenize(expand(plan.prompts)) : null,
      uncond: plan.cfg && plan.negatives ? tokenize(expand(plan.negatives)) : null,
    }));
    // Embeddings given for every row: the text encoder is not needed (nor, with lowMemory, loaded).
    const encoder = condIds || uncondIds ? (['text_encoder'] as const) : [];
    let encoderRan = false;
    return stage('text_encoder', () => this.residency.use(encoder, async () => {
      const embeds = await device.scope(async () => {
        // diffusers 0.25.1 applies clip_skip to the prompt only; negative prompts use last_hidden_state.
        const encode = async (ids: Int32Array, clipSkip: number | null) => {
          const key = PromptEmbeddingCache.key({ tokenizer: this.tokenizer, textEncoder: this.textEncoder, dtype: this.textEncoder.dtype, clipSkip, tokenIds: ids, rowLength: L });
          const hit = this.promptCache.get(key);
          if (hit) return hit;
          encoderRan = true;
          const out = await this.textEncoder.forward(Tensor.from(device, ids, [ids.length / L, L], 'i32'), { pooler: false, pause: this.residency.pause });
          const h = clipSkip === null ? out.lastHiddenState : this.textEncoder.finalLayerNorm(out.hiddenStates[out.hiddenStates.length - 1 - clipSkip]!);
          return this.promptCache.put(key, h);
        };
        const cond = condIds ? await encode(condIds, plan.clipSkip) : repeatRows(plan.promptEmbeds!);
        if (!plan.cfg) return cond;
        const uncond = uncondIds ? await encode(uncondIds, null) : repeatRows(plan.negativePromptEmbeds!);
        if (uncond.shape[1] !== cond.shape[1] || uncond.shape[2] !== cond.shape[2]) {
          throw new UnsupportedError(`negative prompt embeddings [${uncond.shape.join(', ')}] and prompt embeddings [${cond.shape.join(', ')}] differ in tokens or width`);
        }
        return concat([uncond, cond], 0);
      });
      await device.sync();
      return embeds;
    }), undefined, () => (condIds || uncondIds ? { cached: !encoderRan } : {}));
  }

  /** Frees the prompt-embedding cache (e.g. after the text encoder's weights were changed in place). */
  clearPromptCache(): void {
    this.promptCache.clear();
  }

  /** Stage 2 (diffusers `prepare_latents` + `get_timesteps`): the timesteps that run and the latents they start from. */
  async prepareLatents(plan: GenerationPlan, scheduler: Scheduler, gen: TorchGenerator | GeneratorList, stage: StageRunner = plainStage): Promise<{ latents: Float32Array; timesteps: number[] }> {
    scheduler.setTimesteps(plan.steps);
    let timesteps = [...scheduler.timesteps];
    const randn = (shape: readonly number[]) => gen.randn([...shape], 'f32') as Float32Array;
    const init = plan.init;
    const fitted = (img: RGBImage) => this.fit(img, plan.width, plan.height, plan.resize);
    if (init.kind === 'image') {
      timesteps = timesteps.slice(plan.steps - plan.denoisingSteps);
      const one = await stage('encode_image', () => this.encodeImage(fitted(init.image), gen));
      const rep = new Float32Array(one.length * plan.images);
      for (let b = 0; b < plan.images; b++) rep.set(one, b * one.length);
      return { latents: scheduler.addNoise(rep, randn(plan.latentShape), timesteps[0]!), timesteps };
    }
    let base: Float32Array;
    if (init.kind === 'latents') base = Float32Array.from(init.latents.data);
    else if (init.kind === 'informative') {
      const reference = init.latents ?? (await stage('encode_image', () => this.encodeReference(init.images!.map(fitted))));
      base = informativeInit(reference, plan.images, (s) => randn(s), (x, n, ts) => scheduler.addNoise(x, n, ts), timesteps[0]!);
    } else base = randn(plan.latentShape);
    const sigma = scheduler.initNoiseSigma;
    return { latents: sigma === 1 ? base : base.map((x) => f(x * sigma)), timesteps };
  }

  /** Stage 3: the denoising loop (ControlNet residuals, CFG, scheduler steps). Returns the final latents. */
  async denoise(
    plan: GenerationPlan,
    s: { latents: Float32Array; timesteps: number[]; context: Tensor; scheduler: Scheduler; generator: TorchGenerator | GeneratorList },
    stage: StageRunner = plainStage,
    onStep?: (t: StepTrace) => void,
  ): Promise<Float32Array> {
    const device = this.device;
    const B = plan.latentShape[0];
    const { cfg } = plan;
    const controlnet = plan.control ? this.controlnet : null;
    if (plan.control && !controlnet) throw new UnsupportedError('generate: a control image needs a ControlNet (fromPretrained(…, { controlnet }) or setControlNet())');
    let controlCond: Tensor | undefined;
    if (plan.control) {
      // prepare_image: one image repeated to the batch, and once more for the uncond half with CFG.
      const { data, shape } = preprocessControlImage(this.fit(plan.control.image, plan.width, plan.height, plan.resize));
      const rowsN = cfg ? 2 * B : B;
      const rep = new Float32Array(data.length * rowsN);
      for (let b = 0; b < rowsN; b++) rep.set(data, b * data.length);
      controlCond = Tensor.from(device, rep, [rowsN, ...shape.slice(1)], 'f32');
    }
    try {
      return await this.residency.use(controlnet ? ['unet', 'controlnet'] : ['unet'], () => this.denoiseLoop(plan, s, stage, controlCond, onStep));
    } finally {
      controlCond?.dispose();
    }
  }

  private async denoiseLoop(
    plan: GenerationPlan,
    s: { latents: Float32Array; timesteps: number[]; context: Tensor; scheduler: Scheduler; generator: TorchGenerator | GeneratorList },
    stage: StageRunner,
    controlCond: Tensor | undefined,
    onStep: ((t: StepTrace) => void) | undefined,
  ): Promise<Float32Array> {
    const device = this.device;
    const [B, C, h, w] = plan.latentShape;
    const { cfg } = plan;
    // Looked up here: with lowMemory, use() has just loaded them.
    const controlnet = plan.control ? this.controlnet : null;
    let latents = s.latents;
    const noiseFn = () => s.generator.randn([...plan.latentShape], 'f32') as Float32Array;
    const n = latents.length;
    const g = f(plan.guidance);
    for (const [i, ts] of s.timesteps.entries()) {
      latents = await stage(
        'denoise',
        async () => {
          let input = latents;
          if (cfg) {
            input = new Float32Array(2 * n);
            input.set(latents, 0);
            input.set(latents, n);
          }
          const scaled = s.scheduler.scaleModelInput(input, ts);
          const rows = cfg ? 2 * B : B, per = C * h * w;
          const traces: { down: Float32Array[]; mid: Float32Array }[] = [];
          // Rows are independent through the UNet (and ControlNet): a batch too large for the adapter's bindings
          // runs in parts (see inParts); the UNet sees rows r0..r0+k of its input, context and control image.
          const out = await this.inParts('unet', rows, (r0, k) =>
            device.scope(async () => {
              const x = Tensor.from(device, scaled.subarray(r0 * per, (r0 + k) * per), [k, C, h, w], 'f32');
              const ctx = k === rows ? s.context : slice(s.context, 0, r0, r0 + k);
              let residuals: UNetForwardOptions = {};
              // Streamed weights pace their uploads where the forwards pause, between layers.
              const pause = this.residency.pause;
              if (controlnet) {
                // The ControlNet sees exactly the UNet's input: scaled latents, t, all prompt embeddings.
                const cond = k === rows ? controlCond! : slice(controlCond!, 0, r0, r0 + k);
                const r = await controlnet.forwardAsync(x, ts, ctx, cond, { conditioningScale: plan.control!.scale }, pause);
                residuals = { downBlockAdditionalResiduals: r.downBlockResSamples, midBlockAdditionalResidual: r.midBlockResSample };
              }
              const y = await this.unet.forwardAsync(x, ts, ctx, residuals, pause);
              if (onStep && residuals.downBlockAdditionalResiduals) {
                traces.push({ down: await Promise.all(residuals.downBlockAdditionalResiduals.map((t) => t.readF32())), mid: await residuals.midBlockAdditionalResidual!.readF32() });
              }
              return y.readF32();
            }),
          );
          const traceDown = traces.length ? traces[0]!.down.map((_, j) => joinParts(traces.map((t) => t.down[j]!))) : undefined;
          const traceMid = traces.length ? joinParts(traces.map((t) => t.mid)) : undefined;
          let noisePred = out;
          if (cfg) {
            noisePred = new Float32Array(n);
            for (let j = 0; j < n; j++) {
              const u = out[j]!, c = out[n + j]!;
              noisePred[j] = f(u + f(g * f(c - u)));
            }
          }
          const next = s.scheduler.step(noisePred, ts, latents, { noise: noiseFn }).prevSample;
          onStep?.({ step: i, timestep: ts, unetSample: scaled, unetOut: out, latents: next, controlnetDownBlockResSamples: traceDown, controlnetMidBlockResSample: traceMid });
          return next;
        },
        { step: i, steps: s.timesteps.length },
      );
    }
    return latents;
  }

  /** Stage 4: latents (UNet space) → uint8 RGB images and the float NHWC image (diffusers' postprocess). */
  async decode(latents: Float32Array, shape: readonly number[]): Promise<{ images: RGBImage[]; float: Float32Array }> {
    const device = this.device;
    const sf = this.scalingFactor;
    const z = sf === 1 ? latents : latents.map((x) => f(x / sf));
    const [B, ...rest] = shape as [number, ...number[]];
    const per = rest.reduce((a, b) => a * b, 1);
    let imageShape: number[] = [];
    const data = await this.residency.use(['vae'], () => this.inParts('decode', B, (r0, k) =>
      device.scope(async () => {
        const zt = Tensor.from(device, z.subarray(r0 * per, (r0 + k) * per), [k, ...rest], this.vae.dtype === 'f16' ? 'f16' : 'f32');
        const img = this.vae.decode(zt);
        imageShape = [B, ...img.shape.slice(1)];
        return img.readF32();
      }),
    ));
    const pp = postprocess(data, imageShape);
    return { images: pp.images, float: pp.float };
  }

  /**
   * Runs `run(r0, k)` over rows [0, rows) in parts of at most the largest size that has fitted so far: when a part
   * needs a tensor larger than the adapter lets one binding hold (ResourceLimitError — e.g. a batch of 8 at 512² on
   * a 128 MiB-binding adapter), it is halved and retried; the size learned is kept for the next call. Rows are
   * independent, so the joined result is the whole batch's.
   */
  private async inParts(stage: 'unet' | 'decode', rows: number, run: (r0: number, k: number) => Promise<Float32Array>): Promise<Float32Array> {
    const parts: Float32Array[] = [];
    for (let r0 = 0; r0 < rows; ) {
      const k = Math.min(this.partRows[stage], rows - r0);
      try {
        parts.push(await run(r0, k));
        r0 += k;
      } catch (e) {
        if (!(e instanceof ResourceLimitError) || k === 1) throw e;
        this.partRows[stage] = Math.ceil(k / 2);
      }
    }
    return joinParts(parts);
  }

  /**
   * One image → its latents × scaling_factor [1, C, h, w] (diffusers `retrieve_latents`): AutoencoderKL samples
   * `mean + std·randn` from `generator` (img2img: the seed's generator, its first draw); AutoencoderTiny is
   * deterministic.
   */
  private async encodeImage(img: RGBImage, generator: NoiseGenerator): Promise<Float32Array> {
    const device = this.device;
    const { data, shape } = preprocess(img);
    const lat = await this.residency.use(['vae'], () => device.scope(async () => (await this.vae.encodeLatents(Tensor.from(device, data, shape, 'f32'), generator)).readF32()));
    const sf = this.scalingFactor;
    return sf === 1 ? lat : lat.map((v) => f(sf * v));
  }

  /**
   * Informative-init references: each image's latent MEAN (a generator of zeros: mean + std·0) × scaling_factor,
   * as `fewstep run <vae> --method encode` writes them; [N, C, h, w].
   */
  private async encodeReference(images: RGBImage[]): Promise<HostTensor> {
    const zeros: NoiseGenerator = { randn: (shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    const parts: Float32Array[] = [];
    for (const img of images) parts.push(await this.encodeImage(img, zeros));
    const per = parts[0]!.length;
    const data = new Float32Array(per * parts.length);
    parts.forEach((p, i) => data.set(p, i * per));
    const sf = this.vaeScaleFactor;
    return { data, shape: [parts.length, this.vae.latentChannels, images[0]!.height / sf, images[0]!.width / sf] };
  }

  /** An image brought to width × height by `mode`, as diffusers' image processor resizes (unchanged when it has that size). */
  private fit(img: RGBImage, width: number, height: number, mode: FitMode): RGBImage {
    return img.width === width && img.height === height ? img : fitImage(img, width, height, mode);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.promptCache.clear();
    this.residency.dispose();
  }
}

export { StableDiffusionPipeline as Pipeline };

/** Concatenates row-major parts. */
function joinParts(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A StageRunner without events, for calling one stage directly. */
const plainStage: StageRunner = (_stage, fn) => fn();

/** The ControlNet must mirror the UNet's encoder: one residual per UNet skip, same channels, same text width. */
function checkControlNetFits(cn: ControlNetModel, unet: UNet2DConditionModel): void {
  const c = cn.resolvedConfig, u = unet.resolvedConfig;
  const problems: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (c.inChannels !== u.inChannels) problems.push(`in_channels ${c.inChannels} vs the UNet's ${u.inChannels}`);
  if (!same(c.blockOutChannels, u.blockOutChannels)) problems.push(`block_out_channels ${JSON.stringify(c.blockOutChannels)} vs ${JSON.stringify(u.blockOutChannels)}`);
  if (u.layersPerBlock.some((l) => l !== cn.config.layers_per_block)) problems.push(`layers_per_block ${cn.config.layers_per_block} vs ${JSON.stringify(u.layersPerBlock)}`);
  if (u.crossAttentionDim.some((d) => d !== cn.config.cross_attention_dim)) problems.push(`cross_attention_dim ${cn.config.cross_attention_dim} vs ${JSON.stringify(u.crossAttentionDim)}`);
  if (problems.length) throw new UnsupportedError(`ControlNetModel does not fit this UNet: ${problems.join('; ')}`);
}
