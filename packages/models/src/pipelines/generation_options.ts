/**
 * What a generation asks for, and the one place its rules live. `resolveGenerateOptions(options, model)` is
 * pure (no GPU, no IO, no pixel work): the pipeline calls it first thing in `generate()`, and the CLI calls it
 * with `modelInfoFromConfigs(…)` — built from the model's small JSON configs — before it downloads or loads
 * any weights, so values that cannot work fail in a second, not after a 2.7 GB download.
 *
 * The starting point is one discriminated union (`init`), so invalid combinations cannot be written:
 * pure noise (diffusers' default), given latents (`latents=`), an image (img2img, `image=` + `strength`), or
 * YOSO's informative prior (reference latents, or reference images the pipeline encodes with its own VAE).
 * Browser-safe.
 */
import { InvalidArgumentError } from '@fewstep/tensor';
import { checkRGBImage, type RGBImage } from '../image/rgb_image.js';
import { FIT_MODES, type FitMode } from '../image/image_fit.js';
import { schedulerFromConfig } from '../schedulers/index.js';
import type { ProgressCallback } from './progress.js';

/** A float32 tensor on the host: `data` row-major with `shape`'s element count. */
export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

/** Where the denoising starts. */
export type GenerationInit =
  /** `randn([B, C, H/8, W/8])` from the seed's torch generator × init_noise_sigma (diffusers' default). */
  | { kind: 'noise' }
  /** diffusers' `latents=`: [B, C, H/8, W/8], before the init_noise_sigma factor. */
  | { kind: 'latents'; latents: HostTensor }
  /**
   * img2img (StableDiffusionImg2ImgPipeline): the image is encoded, noised to the schedule's point
   * `strength` ∈ (0, 1] from the end, and denoised from there. Default strength: 1 for one-step models
   * (SDXS: its authors note only steps = strength = 1 works for v0.9), else diffusers' 0.8.
   */
  | { kind: 'image'; image: RGBImage; strength?: number | undefined }
  /**
   * YOSO's informative prior (one-step SD1.5 + YOSO): start from the mean and std of reference latents
   * (UNet space: VAE latents × scaling_factor, [N ≥ 2, C, h, w]) or of N ≥ 2 reference images, which the
   * pipeline encodes with its own VAE.
   */
  | { kind: 'informative'; reference: { latents: HostTensor } | { images: RGBImage[] } };

/** The largest width or height fewstep generates (a 4096² SD image is already ~40 GB of attention). */
export const MAX_IMAGE_SIDE = 4096;
/** Images in one `generate()` call (prompts × batchSize). */
export const MAX_BATCH = 64;

export interface StepTrace {
  step: number;
  timestep: number;
  /** The UNet input after scaleModelInput (and the CFG doubling [uncond, cond]). */
  unetSample: Float32Array;
  /** The raw UNet output (before CFG). */
  unetOut: Float32Array;
  /** Latents after scheduler.step. */
  latents: Float32Array;
  /** With a control image: the ControlNet's residuals as the UNet received them (× control scale). */
  controlnetDownBlockResSamples?: Float32Array[] | undefined;
  controlnetMidBlockResSample?: Float32Array | undefined;
}

export interface GenerateOptions {
  /** One prompt or a batch of prompts (diffusers `prompt=[…]`). Give this or `promptEmbeds`. */
  prompt?: string | string[] | undefined;
  /** diffusers `prompt_embeds`: text-encoder output [B, 77, D] to use instead of encoding `prompt`. */
  promptEmbeds?: HostTensor | undefined;
  /** Used only with classifier-free guidance (guidance > 1); default "". One string applies to every prompt. */
  negativePrompt?: string | string[] | undefined;
  /** diffusers `negative_prompt_embeds` (with `promptEmbeds`, same shape). */
  negativePromptEmbeds?: HostTensor | undefined;
  /**
   * torch CPU generator seed (bit-exact to `torch.Generator('cpu').manual_seed(seed)`); undefined or -1: random
   * (reported). A list gives one generator per image (diffusers `generator=[…]`): image i is then what a batch of
   * one gives for seed i (noise, latents or informative init).
   */
  seed?: number | bigint | readonly (number | bigint)[] | undefined;
  /** Scheduler steps (default: the model's own; SDXS 1). */
  steps?: number | undefined;
  /** Classifier-free guidance scale; > 1 runs CFG (default: the model's own; SDXS 0). */
  guidance?: number | undefined;
  /** Output size, multiples of 8 (default: the model's, or the init/control image's size). */
  width?: number | undefined;
  height?: number | undefined;
  /** Images per prompt (diffusers num_images_per_prompt). */
  batchSize?: number | undefined;
  /** Where denoising starts (default `{ kind: 'noise' }`). */
  init?: GenerationInit | undefined;
  /** ControlNet conditioning image (needs a ControlNet on the pipeline) and its `controlnet_conditioning_scale` (default 1). */
  control?: { image: RGBImage; scale?: number | undefined } | undefined;
  /** diffusers `clip_skip`: use the text encoder's hidden state `clip_skip` layers before the last (with its final layer norm). */
  clipSkip?: number | undefined;
  /** How init / control / reference images of another size are fit (default 'crop'). */
  resize?: FitMode | undefined;
  /** Cancels the generation at the next GPU dispatch: it throws AbortError and frees what it allocated. */
  signal?: AbortSignal | undefined;
  /** Stage start/end events (denoise: per step). */
  onProgress?: ProgressCallback | undefined;
  /** After every denoising step, with CPU copies of the UNet's input/output (debugging, golden tests). */
  onStep?: ((s: StepTrace) => void) | undefined;
}

/** What a model brings to the rules: its defaults and shapes, known from its configs alone. */
export interface ModelInfo {
  defaults: PipelineDefaults;
  /** Pixels per latent pixel (2^(len(vae block_out_channels) − 1): 8 for SD VAEs and TAESD). */
  vaeScaleFactor: number;
  /** The UNet's in_channels (4). */
  latentChannels: number;
  /** Whether a ControlNet is attached (control images need one). */
  hasControlNet: boolean;
  /** The text encoder's layer count (bounds clip_skip), when known. */
  textEncoderLayers?: number | undefined;
  /** The scheduler class generate() runs. */
  scheduler: string;
}

export interface PipelineDefaults {
  steps: number;
  guidance: number;
  width: number;
  height: number;
}

/** The resolved request: every default applied, every rule checked. */
export interface GenerationPlan {
  /** The prompts to encode (null with promptEmbeds). */
  prompts: string[] | null;
  negatives: string[] | null;
  promptEmbeds: HostTensor | null;
  negativePromptEmbeds: HostTensor | null;
  /** Rows of prompt embeddings (prompts, or promptEmbeds' batch). */
  promptCount: number;
  batchSize: number;
  /** Images generated: promptCount × batchSize. */
  images: number;
  /** Scheduler steps (the whole schedule) and the ones that run (img2img skips the first). */
  steps: number;
  denoisingSteps: number;
  guidance: number;
  /** guidance > 1: the UNet runs [uncond, cond] as one batch. */
  cfg: boolean;
  /** The seed (the first, with a list of seeds). */
  seed: bigint;
  /** One seed per image (`seed` was a list), else null. */
  seeds: bigint[] | null;
  width: number;
  height: number;
  /** [images, latentChannels, height / 8, width / 8] */
  latentShape: [number, number, number, number];
  init:
    | { kind: 'noise' }
    | { kind: 'latents'; latents: HostTensor }
    | { kind: 'image'; image: RGBImage; strength: number }
    | { kind: 'informative'; latents: HostTensor | null; images: RGBImage[] | null };
  control: { image: RGBImage; scale: number } | null;
  clipSkip: number | null;
  resize: FitMode;
  /** Things that are allowed but probably not meant (e.g. a negative prompt without CFG). */
  warnings: string[];
}

const bad = (field: string, message: string): never => {
  throw new InvalidArgumentError(`${field}: ${message}`, field);
};
const show = (v: unknown) => (typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v));
const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;

function intIn(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(field, `must be an integer from ${min} to ${max}, got ${show(v)}`);
  return v as number;
}

function checkHostTensor(field: string, t: HostTensor | undefined): asserts t is HostTensor {
  if (!t || typeof t !== 'object' || !(t.data instanceof Float32Array) || !Array.isArray(t.shape)) bad(field, 'must be { data: Float32Array, shape: number[] }');
  const n = t!.shape.reduce((a, b) => a * b, 1);
  if (!t!.shape.every((d) => Number.isInteger(d) && d > 0)) bad(field, `shape [${t!.shape.join(', ')}] must hold positive integers`);
  if (t!.data.length !== n) bad(field, `data has ${t!.data.length} values, shape [${t!.shape.join(', ')}] needs ${n}`);
}

/** The largest multiple of `m` ≤ v (diffusers' get_default_height_width). */
const floorTo = (v: number, m: number) => v - (v % m);

function stringList(field: string, v: unknown): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) bad(field, 'must be a string or a non-empty list of strings');
  if ((list as unknown[]).some((p) => typeof p !== 'string')) bad(field, 'every entry must be a string');
  return list as string[];
}

/** A seed as torch takes it: 0 ≤ seed < 2^64; -1 or undefined draws one. */
function resolveSeed(v: unknown, random: () => number): bigint {
  if (v === undefined || v === null || v === -1 || v === -1n) return BigInt(random());
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) bad('seed', `must be from 0 to 2^64 − 1 (or -1 for a random seed), got ${v}`);
    return v;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return bad('seed', `must be an integer from 0 to ${Number.MAX_SAFE_INTEGER} (a bigint up to 2^64 − 1), or -1 for a random seed; got ${show(v)}`);
}

/**
 * Checks `o` against the model and applies every default; throws InvalidArgumentError naming the option
 * (its `field`). `random` draws the seed when none is given (default: crypto.getRandomValues).
 */
export function resolveGenerateOptions(o: GenerateOptions, model: ModelInfo, random: () => number = randomU32): GenerationPlan {
  if (!o || typeof o !== 'object') return bad('options', 'an options object is required');
  const d = model.defaults, sf = model.vaeScaleFactor, C = model.latentChannels;
  const warnings: string[] = [];

  // ---- prompts
  let prompts: string[] | null = null, promptEmbeds: HostTensor | null = null, negativePromptEmbeds: HostTensor | null = null;
  if (o.promptEmbeds !== undefined) {
    if (o.prompt !== undefined) bad('prompt', 'give either prompt or promptEmbeds, not both');
    checkHostTensor('promptEmbeds', o.promptEmbeds);
    if (o.promptEmbeds.shape.length !== 3) bad('promptEmbeds', `must be [batch, tokens, dim], got [${o.promptEmbeds.shape.join(', ')}]`);
    promptEmbeds = o.promptEmbeds;
    if (o.negativePromptEmbeds !== undefined) {
      if (o.negativePrompt !== undefined) bad('negativePrompt', 'give either negativePrompt or negativePromptEmbeds, not both');
      checkHostTensor('negativePromptEmbeds', o.negativePromptEmbeds);
      if (o.negativePromptEmbeds.shape.join() !== promptEmbeds.shape.join()) {
        bad('negativePromptEmbeds', `shape [${o.negativePromptEmbeds.shape.join(', ')}] must equal promptEmbeds' [${promptEmbeds.shape.join(', ')}]`);
      }
      negativePromptEmbeds = o.negativePromptEmbeds;
    }
  } else {
    if (o.prompt === undefined) bad('prompt', 'a prompt (or promptEmbeds) is required');
    if (o.negativePromptEmbeds !== undefined) bad('negativePromptEmbeds', 'needs promptEmbeds');
    prompts = stringList('prompt', o.prompt);
  }
  const promptCount = prompts ? prompts.length : promptEmbeds!.shape[0]!;
  let negatives: string[] | null = null;
  if (!negativePromptEmbeds) {
    const np = o.negativePrompt;
    if (np === undefined || np === null) negatives = new Array<string>(promptCount).fill('');
    else if (typeof np === 'string') negatives = new Array<string>(promptCount).fill(np);
    else {
      negatives = stringList('negativePrompt', np);
      if (negatives.length !== promptCount) bad('negativePrompt', `has ${negatives.length} entries but there are ${plural(promptCount, 'prompt')}`);
    }
  }

  // ---- scalar settings
  const batchSize = intIn('batchSize', o.batchSize ?? 1, 1, MAX_BATCH);
  const images = promptCount * batchSize;
  if (images > MAX_BATCH) bad('batchSize', `${plural(promptCount, 'prompt')} × batchSize ${batchSize} = ${images} images; at most ${MAX_BATCH} per call`);
  if (o.steps !== undefined) intIn('steps', o.steps, 1, 1000);
  const guidance = o.guidance ?? d.guidance;
  if (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < 0) bad('guidance', `must be a finite number ≥ 0, got ${show(guidance)}`);
  const cfg = guidance > 1;
  if (!cfg && ((o.negativePrompt !== undefined && o.negativePrompt !== '') || negativePromptEmbeds)) {
    warnings.push(`the negative prompt has no effect at guidance ${guidance} (classifier-free guidance needs guidance > 1)`);
  }
  let seeds: bigint[] | null = null;
  if (Array.isArray(o.seed)) {
    if (o.seed.length !== images) bad('seed', `a list of seeds needs one per image: ${images} images, ${o.seed.length} seeds`);
    seeds = (o.seed as readonly (number | bigint)[]).map((s) => resolveSeed(s, random));
  }
  const seed = seeds ? seeds[0]! : resolveSeed(o.seed, random);
  const resize = o.resize ?? 'crop';
  if (!FIT_MODES.includes(resize)) bad('resize', `must be one of ${FIT_MODES.join(', ')}, got ${show(resize)}`);
  let clipSkip: number | null = null;
  if (o.clipSkip !== undefined && o.clipSkip !== 0) {
    const layers = model.textEncoderLayers;
    clipSkip = intIn('clipSkip', o.clipSkip, 0, layers !== undefined ? layers - 1 : 1000);
    if (promptEmbeds && (negativePromptEmbeds || !cfg)) warnings.push('clipSkip has no effect with promptEmbeds (no prompt is encoded)');
  }

  // ---- size: explicit, else from what the inputs fix, else the model's
  let width = o.width, height = o.height;
  for (const [field, v] of [['width', width], ['height', height]] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < sf || v % sf !== 0 || v > MAX_IMAGE_SIDE)) {
      bad(field, `must be a multiple of ${sf} from ${sf} to ${MAX_IMAGE_SIDE}, got ${show(v)}`);
    }
  }
  /** An image that sets the default size: its own, floored to a multiple of 8 (diffusers). */
  const sizeFromImage = (field: string, img: RGBImage) => {
    checkRGBImage(img, field);
    if (width === undefined || height === undefined) {
      const w = width ?? floorTo(img.width, sf), h = height ?? floorTo(img.height, sf);
      if (w < sf || h < sf) bad(field, `is ${img.width}×${img.height}, smaller than ${sf}×${sf}; pass width and height to scale it up`);
      if (w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE) bad(field, `is ${img.width}×${img.height}: the output would be larger than ${MAX_IMAGE_SIDE} pixels a side; pass width and height to scale it down`);
      width = w;
      height = h;
    }
  };
  /** A latent tensor that fixes the size: width/height must agree with it. */
  const sizeFromLatents = (field: string, shape: number[], batch: number | null) => {
    if (shape.length !== 4 || shape[1] !== C || (batch !== null && shape[0] !== batch)) {
      bad(field, `shape [${shape.join(', ')}] must be [${batch ?? 'N'}, ${C}, height/${sf}, width/${sf}]${batch !== null ? ` (${plural(promptCount, 'prompt')} × batchSize ${batchSize})` : ''}`);
    }
    const lw = shape[3]! * sf, lh = shape[2]! * sf;
    if (width !== undefined && width !== lw) bad('width', `${width} does not match ${field} (${shape[3]} × ${sf} = ${lw})`);
    if (height !== undefined && height !== lh) bad('height', `${height} does not match ${field} (${shape[2]} × ${sf} = ${lh})`);
    if (lw > MAX_IMAGE_SIDE || lh > MAX_IMAGE_SIDE) bad(field, `is ${lw}×${lh} pixels, larger than ${MAX_IMAGE_SIDE}`);
    width = lw;
    height = lh;
  };

  // ---- init
  const init = o.init ?? { kind: 'noise' };
  let planInit: GenerationPlan['init'];
  let steps = o.steps ?? d.steps;
  let denoisingSteps = steps;
  switch (init?.kind) {
    case 'noise':
      planInit = { kind: 'noise' };
      break;
    case 'latents':
      checkHostTensor('init.latents', init.latents);
      sizeFromLatents('init.latents', init.latents.shape, images);
      planInit = { kind: 'latents', latents: init.latents };
      break;
    case 'image': {
      sizeFromImage('init.image', init.image);
      const strength = init.strength ?? (d.steps === 1 ? 1 : 0.8);
      if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) bad('init.strength', `must be in (0, 1], got ${show(strength)}`);
      if (o.steps === undefined) {
        // The smallest schedule that still runs the model's default number of denoising steps after the
        // strength cut (a 25-step model at strength 0.8 → 32 steps, 25 of them run).
        steps = Math.max(d.steps, Math.ceil(d.steps / strength));
        while (Math.floor(steps * strength) < d.steps) steps++;
      }
      denoisingSteps = Math.min(Math.floor(steps * strength), steps);
      if (denoisingSteps < 1) {
        bad('init.strength', `${strength} with steps ${steps} runs no denoising step (⌊steps × strength⌋ must be at least 1): raise steps to ${Math.ceil(1 / strength)} or strength to ${Number((1 / steps).toFixed(3))}`);
      }
      if (seeds) bad('seed', 'a list of seeds works with noise, latents or informative init, not with an init image');
      planInit = { kind: 'image', image: init.image, strength };
      break;
    }
    case 'informative': {
      const ref = init.reference as { latents?: HostTensor; images?: RGBImage[] } | undefined;
      if (!ref || typeof ref !== 'object' || (ref.latents === undefined) === (ref.images === undefined)) bad('init.reference', 'must be { latents } or { images }');
      if (ref!.latents !== undefined) {
        checkHostTensor('init.reference.latents', ref!.latents);
        sizeFromLatents('init.reference.latents', ref!.latents.shape, null);
        if (ref!.latents.shape[0]! < 2) bad('init.reference.latents', `holds ${ref!.latents.shape[0]} latent; the informative init needs at least 2 (their mean and std)`);
        planInit = { kind: 'informative', latents: ref!.latents, images: null };
      } else {
        const imgs = ref!.images;
        if (!Array.isArray(imgs) || imgs.length < 2) bad('init.reference.images', `needs at least 2 images (their latents' mean and std), got ${Array.isArray(imgs) ? imgs.length : show(imgs)}`);
        imgs!.forEach((img, i) => checkRGBImage(img, `init.reference.images[${i}]`));
        sizeFromImage('init.reference.images[0]', imgs![0]!);
        planInit = { kind: 'informative', latents: null, images: imgs! };
      }
      break;
    }
    default:
      return bad('init', `kind must be 'noise', 'latents', 'image' or 'informative', got ${show((init as { kind?: unknown })?.kind)}`);
  }

  // ---- control
  let control: GenerationPlan['control'] = null;
  if (o.control !== undefined) {
    if (!model.hasControlNet) bad('control', 'a control image needs a ControlNet (load the pipeline with `controlnet`, or setControlNet())');
    if (planInit.kind === 'image') bad('control', 'a control image with an init image (ControlNet image-to-image) is not supported');
    const scale = o.control.scale ?? 1;
    if (typeof scale !== 'number' || !Number.isFinite(scale) || scale < 0) bad('control.scale', `must be a finite number ≥ 0, got ${show(scale)}`);
    sizeFromImage('control.image', o.control.image);
    control = { image: o.control.image, scale };
  }

  width ??= d.width;
  height ??= d.height;
  return {
    prompts,
    negatives,
    promptEmbeds,
    negativePromptEmbeds,
    promptCount,
    batchSize,
    images,
    steps,
    denoisingSteps,
    guidance,
    cfg,
    seed,
    seeds,
    width,
    height,
    latentShape: [images, C, height / sf, width / sf],
    init: planInit,
    control,
    clipSkip,
    resize,
    warnings,
  };
}

/**
 * A model's defaults and shapes from its configs alone (the JSON files a hub repo serves in milliseconds):
 * SDXS-style UNets without a mid block → 1 step, guidance 0; LCMScheduler → 4 steps, guidance 1 (YOSO
 * wants { steps: 2, guidance: 1.5 }: pass `defaults`); Euler with trailing spacing (turbo-style) → 1 step,
 * guidance 0; anything else → 25 steps, guidance 7.5. Size: unet sample_size × the VAE scale factor.
 * Throws for a scheduler override or config that cannot be built.
 */
export function modelInfoFromConfigs(c: {
  unet: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  /** A scheduler class name or override object (as `fromPretrained`'s `scheduler`). */
  schedulerOverride?: string | Record<string, unknown> | undefined;
  /** The VAE's config.json (an original TAESD folder has none: scale factor 8). */
  vae?: Record<string, unknown> | undefined;
  textEncoder?: Record<string, unknown> | undefined;
  hasControlNet?: boolean | undefined;
  defaults?: Partial<PipelineDefaults> | undefined;
}): ModelInfo {
  const sched = schedulerFromConfig(c.scheduler, c.schedulerOverride);
  const blocks = c.vae?.['block_out_channels'] ?? c.vae?.['decoder_block_out_channels'];
  const vaeScaleFactor = Array.isArray(blocks) ? 2 ** (blocks.length - 1) : 8;
  const ss = c.unet['sample_size'];
  let sh = 64, sw = 64;
  if (typeof ss === 'number' && ss > 0) sh = sw = ss;
  else if (Array.isArray(ss) && ss.length === 2 && ss.every((v) => typeof v === 'number' && v > 0)) [sh, sw] = ss as [number, number];
  const size = { width: sw * vaeScaleFactor, height: sh * vaeScaleFactor };
  let base: PipelineDefaults;
  if (c.unet['mid_block_type'] === null) base = { steps: 1, guidance: 0, ...size };
  else if (sched.className === 'LCMScheduler') base = { steps: 4, guidance: 1, ...size };
  else if (sched.className === 'EulerDiscreteScheduler' && sched.config['timestep_spacing'] === 'trailing') base = { steps: 1, guidance: 0, ...size };
  else base = { steps: 25, guidance: 7.5, ...size };
  const own = Object.fromEntries(Object.entries(c.defaults ?? {}).filter(([, v]) => v !== undefined)) as Partial<PipelineDefaults>;
  const layers = c.textEncoder?.['num_hidden_layers'];
  const inCh = c.unet['in_channels'];
  return {
    defaults: { ...base, ...own },
    vaeScaleFactor,
    latentChannels: typeof inCh === 'number' ? inCh : 4,
    hasControlNet: c.hasControlNet ?? false,
    textEncoderLayers: typeof layers === 'number' ? layers : undefined,
    scheduler: sched.className,
  };
}

function randomU32(): number {
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0]!;
  return Math.floor(Math.random() * 2 ** 32);
}
