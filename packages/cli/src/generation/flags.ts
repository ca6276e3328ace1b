/**
 * The flags `generate` and `batch` share, read into options with flag-syntax checks only (a scheduler name,
 * a LoRA spec, a seed that is an integer). Whether values work for the model — sizes, steps, guidance,
 * strength, batch size, clip skip — is decided by @fewstep/models' resolveGenerateOptions, the one place
 * those rules live; `requestError` turns its InvalidArgumentError (`field` = the option) into a UsageError
 * naming the flag.
 */
import { InvalidArgumentError } from '@fewstep/tensor';
import { FIT_MODES, SCHEDULER_CLASSES, type FitMode } from '@fewstep/models';
import type { VaeChoice, WeightDType } from '@fewstep/weights-tools';
import { UsageError, type FlagSpec } from '../args.js';
import { parseLoraSpec, type LoraSpec } from '../lora_source.js';

export const DEFAULT_MODEL = 'IDKiro/sdxs-512-0.9';

/** Which model, how it is loaded. */
export const MODEL_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', arg: 'id|dir', help: 'Hugging Face repo id (org/name[@revision]) or a diffusers model folder', default: DEFAULT_MODEL },
  revision: { type: 'string', help: 'Branch, tag or commit of a hub model (default main)' },
  dtype: { type: 'string', choices: ['f32', 'f16'], default: 'f32', help: 'Weight and activation dtype (f16 needs shader-f16)' },
  vae: { type: 'string', choices: ['tiny', 'large'], help: "Decoder: tiny = an AutoencoderTiny (SDXS's vae/), large = an AutoencoderKL (SDXS's vae_large/; default: the model's vae/)" },
  'vae-dtype': { type: 'string', choices: ['f32', 'f16'], help: 'The VAE\'s dtype (decoder, and the encoder for --init-image); default: f32 for a tiny VAE (TAESD in f16 can give low-quality images), --dtype for an AutoencoderKL' },
  scheduler: { type: 'string', arg: 'name', help: `Scheduler instead of the model's (${SCHEDULER_CLASSES.join(', ')}, or euler, ddim, ddpm, lcm, deis)` },
  lora: { type: 'string', multiple: true, arg: 'file|dir|repo[:scale]', help: 'LoRA file, folder or hub repo, with an optional :scale' },
};

/** generate's and batch's --low-memory (not serve's: a server keeps its model loaded). */
export const LOW_MEMORY_FLAG: Record<string, FlagSpec> = {
  'low-memory': {
    type: 'boolean',
    help: 'Almost no weights in memory: each stage (text encoder, UNet, VAE) streams its model\'s weights from disk as its kernels need them and frees them after — same images, far less memory, every image reads the weights again',
  },
};

/** How each image is sampled. */
export const SAMPLING_FLAGS: Record<string, FlagSpec> = {
  steps: { type: 'int', help: "Denoising steps (default: the model's own, 1 for SDXS)" },
  guidance: { type: 'number', aliases: ['cfg-scale'], help: "Classifier-free guidance scale; > 1 enables CFG (default: the model's own, 0 for SDXS)" },
  width: { type: 'int', short: 'W', help: "Image width, a multiple of 8 (default: the model's, 512; or the init/control image's)" },
  height: { type: 'int', short: 'H', help: "Image height, a multiple of 8 (default: the model's, 512; or the init/control image's)" },
  'negative-prompt': { type: 'string', short: 'n', arg: 'text', help: 'Negative prompt (used when guidance > 1; default "")' },
  'clip-skip': { type: 'int', arg: 'N', help: "Use the text encoder's hidden state N layers before the last (diffusers clip_skip; default 0)" },
};

export const QUIET_FLAG: Record<string, FlagSpec> = {
  quiet: { type: 'boolean', short: 'q', help: 'No progress or timings on stderr' },
};

export const RESIZE_FLAG: Record<string, FlagSpec> = {
  resize: { type: 'string', choices: FIT_MODES, default: 'crop', help: 'How init, control and reference images of another size are fit: crop = scale to cover and center-crop, fit = scale to fit and fill the bands from the edges, stretch = scale to the exact size (as diffusers\' resize modes crop, fill, default)' },
};

const SCHEDULER_ALIASES: Record<string, string> = {
  euler: 'EulerDiscreteScheduler',
  ddim: 'DDIMScheduler',
  ddpm: 'DDPMScheduler',
  lcm: 'LCMScheduler',
  deis: 'DEISMultistepScheduler',
};

export function schedulerName(s: string): string {
  const byAlias = SCHEDULER_ALIASES[s.toLowerCase()];
  if (byAlias) return byAlias;
  const exact = SCHEDULER_CLASSES.find((c) => c.toLowerCase() === s.toLowerCase());
  if (exact) return exact;
  throw new UsageError(`--scheduler must be one of ${SCHEDULER_CLASSES.join(', ')} (or euler, ddim, ddpm, lcm, deis), got "${s}"`);
}

/** --model and friends, after flag-syntax checks. */
export interface ModelOptions {
  model: string;
  revision: string | undefined;
  dtype: WeightDType;
  vae: VaeChoice | undefined;
  /** --vae-dtype as given (undefined: the pipeline's default, see resolveVaeDtype). */
  vaeDtype: WeightDType | undefined;
  /** A scheduler class name (aliases resolved). */
  scheduler: string | undefined;
  loras: LoraSpec[];
  /** --low-memory: components loaded per stage (StableDiffusionPipeline's lowMemory). */
  lowMemory?: boolean | undefined;
}

/** Sampling flags as given (undefined = the model's default); resolveGenerateOptions checks them. */
export interface SamplingOptions {
  steps: number | undefined;
  guidance: number | undefined;
  width: number | undefined;
  height: number | undefined;
  negativePrompt: string | undefined;
  clipSkip: number | undefined;
}

export function modelOptions(flags: Record<string, unknown>): ModelOptions {
  const model = flags['model'] as string;
  if (!model) throw new UsageError('--model must not be empty');
  return {
    model,
    revision: flags['revision'] as string | undefined,
    dtype: flags['dtype'] as WeightDType,
    vae: flags['vae'] as VaeChoice | undefined,
    vaeDtype: flags['vae-dtype'] as WeightDType | undefined,
    scheduler: flags['scheduler'] === undefined ? undefined : schedulerName(flags['scheduler'] as string),
    loras: ((flags['lora'] as string[] | undefined) ?? []).map(parseLoraSpec),
    lowMemory: flags['low-memory'] === true,
  };
}

export function samplingOptions(flags: Record<string, unknown>): SamplingOptions {
  return {
    steps: flags['steps'] as number | undefined,
    guidance: flags['guidance'] as number | undefined,
    width: flags['width'] as number | undefined,
    height: flags['height'] as number | undefined,
    negativePrompt: flags['negative-prompt'] as string | undefined,
    clipSkip: flags['clip-skip'] as number | undefined,
  };
}

export const resizeOption = (flags: Record<string, unknown>): FitMode => flags['resize'] as FitMode;

/**
 * --seed: an integer from 0 to 2^53 − 1 (what the images' JSON metadata holds exactly), or -1 / absent for a
 * random one (drawn by resolveGenerateOptions and printed).
 */
export function seedOption(v: unknown): number | undefined {
  if (v === undefined || v === -1) return undefined;
  const n = v as number;
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--seed must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, or -1 for a random seed; got ${n}`);
  return n;
}

/** The flag each GenerateOptions field comes from (resolveGenerateOptions names fields, the CLI names flags). */
const FIELD_FLAGS: Readonly<Record<string, string>> = {
  prompt: 'prompt',
  negativePrompt: '--negative-prompt',
  seed: '--seed',
  steps: '--steps',
  guidance: '--guidance',
  width: '--width',
  height: '--height',
  batchSize: '--batch',
  clipSkip: '--clip-skip',
  resize: '--resize',
  init: '--init',
  'init.latents': '--latents',
  'init.image': '--init-image',
  'init.strength': '--strength',
  'init.reference': '--init',
  'init.reference.latents': '--init-latents',
  'init.reference.images': '--init-images',
  control: '--controlnet',
  'control.image': '--control-image',
  'control.scale': '--control-scale',
};

/** Field names that show up inside the library's messages, as flags. */
const FIELD_WORDS = /\b(?:init\.reference\.latents|init\.reference\.images|init\.latents|init\.image|init\.strength|control\.image|control\.scale|batchSize|clipSkip|negativePrompt)\b/g;

/**
 * resolveGenerateOptions' InvalidArgumentError → a UsageError naming the flag (and the file, where `files`
 * says which one the field came from): "init.strength: 0.5 with steps 1 runs no denoising step …" →
 * "--strength 0.5 with steps 1 runs no denoising step …". `request` (the options checked) tells whether the
 * message goes on with the flag's value. Anything else is returned as is.
 */
export function requestError(e: unknown, files: Readonly<Record<string, string | readonly string[]>> = {}, request: object = {}): unknown {
  if (!(e instanceof InvalidArgumentError) || e.field === undefined) return e;
  const field = e.field;
  const index = /\[(\d+)\]$/.exec(field);
  const base = field.replace(/\[\d+\]$/, '');
  const flag = FIELD_FLAGS[base];
  if (!flag) return e;
  const rest = (e.message.startsWith(`${field}: `) ? e.message.slice(field.length + 2) : e.message).replace(FIELD_WORDS, (w) => FIELD_FLAGS[w] ?? w);
  const file = files[base];
  const path = typeof file === 'string' ? file : file && index ? file[Number(index[1])] : undefined;
  const who = path !== undefined ? `${flag} ${path}` : flag;
  let value: unknown = request;
  for (const k of base.split('.')) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[k] : undefined;
  const joins = /^(?:must|needs|is|has|holds|shape|does) /.test(rest) || ((typeof value === 'number' || typeof value === 'string') && rest.startsWith(`${value} `));
  return new UsageError(`${who}${path !== undefined || !joins ? ':' : ''} ${rest}`);
}
