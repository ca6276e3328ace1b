import { access, constants, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { Device, SafetensorsFile, shapeStr } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node';
import {
  SCHEDULER_CLASSES,
  StableDiffusionPipeline,
  decodePng,
  encodePng,
  invertControlImage,
  loadLora,
  loraTransform,
  selectWeightFiles,
  type LoraAdapter,
  type ProgressEvent,
} from '@fewstep/models';
import { createProgressPrinter, listRepoFiles, parseRepoSpec, snapshotDownload, type DownloadProgressCallback } from '@fewstep/weights-tools';
import { UsageError, type FlagSpec } from '../args.js';
import type { CliIO, Command } from '../command.js';
import { resolveModel, type ResolvedModel, type VaeChoice, type WeightDType } from '@fewstep/weights-tools';
import { pngTextChunks, type GenerationInfo } from '@fewstep/models';
import { writeAtomic } from '../write_atomic.js';
import { checkLoras, looksLikeRepo, parseLoraSpec, resolveLoraSource, type LoraSpec } from '../lora_source.js';

export const VERSION = '0.1.0';
export const DEFAULT_MODEL = 'IDKiro/sdxs-512-0.9';

// ---------------------------------------------------------------------------------------------
// Flags shared by `generate` and `batch`

export const MODEL_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face repo id (org/name[@revision]) or a diffusers model folder', default: DEFAULT_MODEL },
  revision: { type: 'string', help: 'Branch, tag or commit of a hub model (default main)' },
  steps: { type: 'int', help: "Denoising steps (default: the model's own, 1 for SDXS)" },
  guidance: { type: 'number', help: "Classifier-free guidance scale; > 1 enables CFG (default: the model's own, 0 for SDXS)" },
  width: { type: 'int', help: 'Image width, a multiple of 8 (default: the model\'s, 512)' },
  height: { type: 'int', help: 'Image height, a multiple of 8 (default: the model\'s, 512)' },
  dtype: { type: 'string', choices: ['f32', 'f16'], default: 'f32', help: 'Weight and activation dtype (f16 needs shader-f16)' },
  vae: { type: 'string', choices: ['tiny', 'large'], help: "Decoder: tiny = an AutoencoderTiny (SDXS's vae/), large = an AutoencoderKL (SDXS's vae_large/; default: the model's vae/)" },
  scheduler: { type: 'string', help: `Scheduler instead of the model's (${SCHEDULER_CLASSES.join(', ')}, or euler, ddim, ddpm, lcm, deis)` },
  lora: { type: 'string', multiple: true, help: 'LoRA file, folder or hub repo, with an optional :scale (repeatable)' },
  'negative-prompt': { type: 'string', help: 'Negative prompt (used when guidance > 1; default "")' },
  quiet: { type: 'boolean', short: 'q', help: 'No progress or timings on stderr' },
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

/** Options shared by generate and batch, validated (no file access). */
export interface CommonOptions {
  model: string;
  revision: string | undefined;
  steps: number | undefined;
  guidance: number | undefined;
  width: number | undefined;
  height: number | undefined;
  dtype: WeightDType;
  vae: VaeChoice | undefined;
  scheduler: string | undefined;
  loras: LoraSpec[];
  negativePrompt: string | undefined;
  quiet: boolean;
}

export function checkSize(name: string, v: number | undefined): void {
  if (v === undefined) return;
  if (v < 8 || v % 8 !== 0) throw new UsageError(`--${name} must be a positive multiple of 8, got ${v}`);
  if (v > 4096) throw new UsageError(`--${name} must be at most 4096, got ${v}`);
}

export function commonOptions(flags: Record<string, unknown>): CommonOptions {
  const steps = flags['steps'] as number | undefined;
  if (steps !== undefined && steps < 1) throw new UsageError(`--steps must be at least 1, got ${steps}`);
  if (steps !== undefined && steps > 1000) throw new UsageError(`--steps must be at most 1000, got ${steps}`);
  const guidance = flags['guidance'] as number | undefined;
  if (guidance !== undefined && guidance < 0) throw new UsageError(`--guidance must be 0 or more, got ${guidance}`);
  const width = flags['width'] as number | undefined, height = flags['height'] as number | undefined;
  checkSize('width', width);
  checkSize('height', height);
  const model = flags['model'] as string;
  if (!model) throw new UsageError('--model must not be empty');
  return {
    model,
    revision: flags['revision'] as string | undefined,
    steps,
    guidance,
    width,
    height,
    dtype: flags['dtype'] as WeightDType,
    vae: flags['vae'] as VaeChoice | undefined,
    scheduler: flags['scheduler'] === undefined ? undefined : schedulerName(flags['scheduler'] as string),
    loras: ((flags['lora'] as string[] | undefined) ?? []).map(parseLoraSpec),
    negativePrompt: flags['negative-prompt'] as string | undefined,
    quiet: Boolean(flags['quiet']),
  };
}

/** Seed flag: a non-negative safe integer. */
export function checkSeed(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = v as number;
  if (n < 0 || !Number.isSafeInteger(n)) throw new UsageError(`--seed must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${n}`);
  return n;
}

export const randomSeed = () => Math.floor(Math.random() * 2 ** 32);

// ---------------------------------------------------------------------------------------------
// Files

/** File-name-safe, lower-case slug of a prompt (at most `max` characters). */
export function slugify(prompt: string, max = 48): string {
  const s = prompt
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return s.slice(0, max).replace(/-+$/, '') || 'image';
}

/** `0000-a-photo-of-a-cat.png`: names that sort in batch order. */
export function imageFileName(index: number, prompt: string): string {
  return `${String(index).padStart(4, '0')}-${slugify(prompt)}.png`;
}


/** Checks that `dir` is (or can be created as) a writable folder; creates nothing. */
export async function checkOutDir(dir: string, flag = '--out-dir'): Promise<void> {
  let d = resolve(dir);
  for (;;) {
    const st = await stat(d).catch(() => undefined);
    if (st) {
      if (!st.isDirectory()) throw new UsageError(`${flag} ${dir}: ${d === resolve(dir) ? 'is not a folder' : `${d} is not a folder`}`);
      try {
        await access(d, constants.W_OK | constants.X_OK);
      } catch {
        throw new UsageError(`${flag} ${dir}: ${d === resolve(dir) ? 'folder is not writable' : `cannot create it (${d} is not writable)`}`);
      }
      return;
    }
    const up = dirname(d);
    if (up === d) throw new UsageError(`${flag} ${dir}: cannot create it`);
    d = up;
  }
}

async function checkOutFile(path: string): Promise<void> {
  if (extname(path).toLowerCase() !== '.png') throw new UsageError(`--out must name a .png file, got "${path}"`);
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) throw new UsageError(`--out ${path} is a folder; use --out-dir for a folder`);
  const dir = dirname(resolve(path));
  const dst = await stat(dir).catch(() => undefined);
  if (!dst?.isDirectory()) throw new UsageError(`--out ${path}: folder ${dirname(path)} does not exist`);
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new UsageError(`--out ${path}: folder ${dirname(path)} is not writable`);
  }
}

export interface HostImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Reads and decodes a PNG flag (--init-image, --control-image) to RGB (alpha dropped); any problem is one UsageError line. */
async function readPngFlag(path: string, flag = '--init-image'): Promise<HostImage> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`${flag} ${path}: ${code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder, not a PNG file' : `cannot read (${code ?? (e as Error).message})`}`);
  }
  try {
    // RGB; transparency is composited over white.
    const { width, height, data } = await decodePng(bytes, 'png');
    return { width, height, data };
  } catch (e) {
    throw new UsageError(`${flag} ${path}: not a readable PNG (${(e as Error).message.split('\n')[0]!.replace(/^png: /, '')})`);
  }
}

/** Reads the `latents` tensor of a safetensors file (diffusers' `latents=`), checking its shape. */
async function readLatents(path: string, batch: number | 'reference', width: number | undefined, height: number | undefined, flag = '--latents'): Promise<{ data: Float32Array; shape: number[] }> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) throw new UsageError(`${flag} ${path}: file not found`);
  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(nodeFiles, path);
  } catch (e) {
    throw new UsageError(`${flag} ${path}: not a readable safetensors file (${(e as Error).message.split('\n')[0]})`);
  }
  try {
    if (!f.has('latents')) throw new UsageError(`${flag} ${path}: no tensor named "latents" (found: ${[...f.tensors.keys()].join(', ') || 'none'})`);
    const info = f.info('latents');
    const s = info.shape;
    if (s.length !== 4) throw new UsageError(`${flag} ${path}: "latents" has shape ${shapeStr(s)}; expected [batch, channels, height/8, width/8]`);
    if (batch === 'reference') {
      if (s[0]! < 2) throw new UsageError(`${flag} ${path}: "latents" holds ${s[0]} latent(s); the informative init needs at least 2 (their mean and std)`);
    } else if (s[0] !== batch) throw new UsageError(`${flag} ${path}: "latents" has batch ${s[0]} but ${batch} image${batch === 1 ? '' : 's'} will be generated`);
    if (width !== undefined && s[3]! * 8 !== width) throw new UsageError(`${flag} ${path}: "latents" is ${s[3]} wide (${s[3]! * 8} px) but --width is ${width}`);
    if (height !== undefined && s[2]! * 8 !== height) throw new UsageError(`${flag} ${path}: "latents" is ${s[2]} high (${s[2]! * 8} px) but --height is ${height}`);
    if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new UsageError(`${flag} ${path}: "latents" is ${info.dtype}; expected a float tensor`);
    return { data: (await f.read('latents', 'f32')) as Float32Array, shape: [...s] };
  } finally {
    await f.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Progress

const STAGE_LABEL: Record<string, string> = {
  load: 'load model',
  tokenize: 'tokenize',
  text_encoder: 'text encoder',
  denoise: 'denoise',
  decode: 'decode',
  encode_image: 'encode init image',
};

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`);

export interface StageReporter {
  onProgress(e: ProgressEvent): void;
  /** Prints a line (above the TTY status line). */
  line(s: string): void;
  /** Clears the status line. */
  finish(): void;
}

/**
 * Pipeline progress on stderr: on a terminal one redrawn status line; otherwise one line per stage
 * (and per denoising step). Nothing when quiet.
 */
export function createStageReporter(io: CliIO, quiet: boolean, prefix = ''): StageReporter {
  if (quiet) return { onProgress: () => {}, line: () => {}, finish: () => {} };
  let drawn = false;
  const clear = () => {
    if (drawn) io.stderr('\r\x1b[K');
    drawn = false;
  };
  const describe = (e: ProgressEvent) => {
    if (e.type === 'load') return `load ${e.component}`;
    if (e.type !== 'stage') return '';
    const label = STAGE_LABEL[e.stage] ?? e.stage;
    return e.stage === 'denoise' && e.step !== undefined ? `${label} step ${e.step + 1}/${e.steps ?? '?'}` : label;
  };
  return {
    onProgress(e) {
      if (e.type === 'download' || e.status !== 'end') return;
      const text = `${prefix}${describe(e)} ${fmtMs(e.ms)}`;
      if (io.isTTY) {
        io.stderr(`\r\x1b[K${text}`);
        drawn = true;
      } else io.stderr(`${text}\n`);
    },
    line(s) {
      clear();
      io.stderr(`${s}\n`);
    },
    finish: clear,
  };
}

/** "tokenize 1.2 ms, text_encoder 40 ms, denoise 600 ms (2 steps), decode 90 ms" from the pipeline's timings. */
export function formatTimings(t: Record<string, number>): string {
  const steps = Object.keys(t).filter((k) => /^denoise\.\d+$/.test(k)).length;
  return Object.entries(t)
    .filter(([k]) => !/^denoise\.\d+$/.test(k) && k !== 'total')
    .map(([k, v]) => `${k} ${fmtMs(v)}${k === 'denoise' ? ` (${steps} step${steps === 1 ? '' : 's'})` : ''}`)
    .join(', ');
}

// ---------------------------------------------------------------------------------------------
// Model loading (shared with batch)

/** The PNG metadata common to `generate` and `batch`: run settings from the flags and the loaded model. */
export function generationInfo(
  opts: CommonOptions,
  loaded: LoadedModel,
  run: { prompt: string; steps: number; guidance: number; seed: number | null; width: number; height: number; batchIndex: number; batchSize: number },
): GenerationInfo {
  return {
    ...run,
    negativePrompt: opts.negativePrompt ?? '',
    sampler: loaded.sampler,
    model: opts.model,
    revision: opts.revision,
    dtype: opts.dtype,
    vae: opts.vae,
    loras: opts.loras.length ? opts.loras : undefined,
    version: VERSION,
  };
}

export interface LoadedModel {
  pipe: StableDiffusionPipeline;
  device: Device;
  model: ResolvedModel;
  /** The scheduler class the pipeline runs. */
  sampler: string;
  /** Where the pipeline's progress events go (swap it per image). */
  reporter: StageReporter;
  dispose(): void;
}


/**
 * Checks --controlnet without downloading: an existing folder must hold a config.json; anything else
 * must look like a hub repo id.
 */
export async function checkControlNetSource(source: string): Promise<void> {
  const st = await stat(source).catch(() => undefined);
  if (st?.isDirectory()) {
    if (!(await stat(join(source, 'config.json')).catch(() => undefined))) throw new UsageError(`--controlnet ${source}: not a ControlNet folder (no config.json)`);
    return;
  }
  if (st) throw new UsageError(`--controlnet ${source}: is a file; give the ControlNet folder (config.json + weights) or a hub repo id`);
  if (!looksLikeRepo(source)) throw new UsageError(`--controlnet ${source}: folder not found`);
}

/**
 * --controlnet → a local folder: a folder as is; a hub repo (org/name[@revision]) → its config.json and the
 * weights the loader reads (selectWeightFiles: safetensors if the repo has them, else the .bin that e.g.
 * IDKiro/sdxs-512-dreamshaper-sketch ships; the fp16 variant first with --dtype f16), downloaded into the HF cache.
 */
async function resolveControlNetSource(source: string, dtype: WeightDType, onProgress: DownloadProgressCallback): Promise<string> {
  if ((await stat(source).catch(() => undefined))?.isDirectory()) return source;
  const { repoId, revision } = parseRepoSpec(source);
  const top = (await listRepoFiles(repoId, { revision })).filter((p) => !p.includes('/'));
  if (!top.includes('config.json')) throw new Error(`--controlnet ${source}: the repo has no top-level config.json (not a diffusers ControlNetModel)`);
  const want = ['config.json', ...selectWeightFiles(top, { dtype, where: `--controlnet ${source}: the repo` }).files];
  return snapshotDownload(repoId, { revision, filter: (p) => want.includes(p), required: want, onProgress });
}

/**
 * Downloads (if needed) and loads the pipeline: model files, LoRAs, the ControlNet (`controlnet`: a folder or
 * hub id), device, weights. Call after all input validation. `reporter` gets the load progress.
 */
export async function loadModel(opts: CommonOptions, io: CliIO, reporter: StageReporter, extra: { controlnet?: string | undefined } = {}): Promise<LoadedModel> {
  const dl = createProgressPrinter(io.stderr, { isTTY: io.isTTY, quiet: opts.quiet });
  let model: ResolvedModel;
  const adapters: LoraAdapter[] = [];
  let controlnetDir: string | undefined;
  try {
    model = await resolveModel(opts.model, { revision: opts.revision, dtype: opts.dtype, vae: opts.vae, onProgress: dl.onProgress });
    for (const l of opts.loras) adapters.push(await loadLora(nodeFiles, await resolveLoraSource(l, dl.onProgress), { scale: l.scale }));
    if (extra.controlnet !== undefined) controlnetDir = await resolveControlNetSource(extra.controlnet, opts.dtype, dl.onProgress);
  } finally {
    dl.finish();
  }
  const device = await Device.open({ gpu: await nodeGPU() });
  const loaded: LoadedModel = {
    pipe: undefined as unknown as StableDiffusionPipeline,
    device,
    model,
    sampler: '',
    reporter,
    dispose() {
      loaded.pipe?.dispose();
      device.destroy();
    },
  };
  try {
    if (opts.dtype === 'f16' && !device.features.f16) {
      throw new Error(`--dtype f16 needs the shader-f16 feature, which ${device.adapter.name} does not offer; use --dtype f32`);
    }
    // YOSO's LoRA carries no marker of its own; recognise it by name and apply its recommended
    // settings (LCM, 2 steps, CFG 1.5 — models.md §3.1) unless the flags say otherwise.
    const yoso = opts.loras.some((l) => /yoso/i.test(l.source));
    if (yoso) reporter.line('YOSO LoRA: LCMScheduler, 2 steps, guidance 1.5 by default (its recommended settings; --scheduler/--steps/--guidance override)');
    const pipe = await StableDiffusionPipeline.fromPretrained(model.dir, {
      device,
      io: nodeFiles,
      dtype: opts.dtype,
      vae: opts.vae,
      scheduler: opts.scheduler ?? (yoso ? 'LCMScheduler' : undefined),
      defaults: yoso ? { steps: 2, guidance: 1.5 } : undefined,
      variant: model.variant,
      controlnet: controlnetDir,
      weightTransform: adapters.length
        ? (component, req) => {
            const mine = adapters.filter((a) => a.has(component));
            for (const a of mine) a.check(component, req.source.keys());
            return loraTransform(mine, component);
          }
        : undefined,
      onProgress: (e) => loaded.reporter.onProgress(e),
    });
    try {
      for (const a of adapters) a.assertAllApplied();
    } catch (e) {
      pipe.dispose();
      throw e;
    }
    loaded.pipe = pipe;
    loaded.sampler = pipe.createScheduler().className;
    return loaded;
  } catch (e) {
    device.destroy();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// generate

export const generate: Command = {
  name: 'generate',
  summary: 'Generate images from prompts (SDXS-512-0.9 by default, or any diffusers SD 1.x/2.x folder or repo)',
  usage:
    'fewstep generate <prompt>... (--out <file.png> | --out-dir <dir>) [--model <id|dir>] [--seed N] [--steps N] [--guidance G]\n' +
    '       [--width W --height H] [--batch N] [--dtype f32|f16] [--vae tiny|large] [--scheduler Name] [--lora <file|repo>[:scale]]...\n' +
    '       [--negative-prompt T] [--init-image in.png --strength S] [--latents f.safetensors] [--init latent-mean --init-latents ref.safetensors]\n' +
    '       [--controlnet <id|dir> --control-image sketch.png [--control-scale S] [--invert-control]] [--revision R] [--json] [--quiet]',
  description:
    'Text-to-image (and image-to-image with --init-image) with a diffusers StableDiffusionPipeline folder or\n' +
    'Hugging Face repo; only the files the pipeline needs are downloaded into the HF cache (HF_HUB_OFFLINE=1\n' +
    'works from the cache). Several prompts make one batch, like diffusers `prompt=[...]`; --batch N gives N\n' +
    'images per prompt. --out takes exactly one image; --out-dir writes 0000-<prompt>.png, ... in batch order.\n' +
    'The seed is random unless given, and printed. --latents takes a safetensors file with one tensor "latents"\n' +
    '[batch, 4, H/8, W/8], used like diffusers\' `latents=`. --controlnet runs diffusers\' StableDiffusionControlNetPipeline\n' +
    'with --control-image as `image=` (RGB, uint8/255, the output size; --invert-control first makes it 255 − image).\n' +
    'PNGs carry the parameters (A1111 "parameters" text\n' +
    'and a "fewstep" JSON chunk). Progress and timings go to stderr; --json prints a summary on stdout.\n' +
    'Use -- before prompts that start with "-".',
  flags: {
    out: { type: 'string', short: 'o', help: 'Output PNG (only when one image results)' },
    'out-dir': { type: 'string', help: 'Output folder: one PNG per image, named in batch order' },
    seed: { type: 'int', help: 'Generator seed (default: random, printed)' },
    batch: { type: 'int', default: 1, help: 'Images per prompt' },
    ...MODEL_FLAGS,
    'init-image': { type: 'string', help: 'PNG to start from (image-to-image)' },
    strength: { type: 'number', help: 'With --init-image: how much to change it, 0 < S ≤ 1 (default 0.8)' },
    latents: { type: 'string', help: 'safetensors file with the initial noise tensor "latents" [batch, 4, H/8, W/8]' },
    init: { type: 'string', choices: ['noise', 'latent-mean'], default: 'noise', help: 'Initial latents: noise (diffusers), or latent-mean = YOSO\'s informative prior (one-step YOSO; needs --init-latents)' },
    'init-latents': { type: 'string', help: 'With --init latent-mean: safetensors with "latents" [N ≥ 2, 4, H/8, W/8], VAE latents of reference images as `fewstep run <vae> --method encode` writes them (scaled by the VAE\'s scaling_factor here)' },
    controlnet: { type: 'string', help: 'ControlNetModel folder or hub repo (e.g. IDKiro/sdxs-512-dreamshaper-sketch); needs --control-image' },
    'control-image': { type: 'string', help: 'With --controlnet: the conditioning PNG, of the output size (--width/--height default to it; not resized)' },
    'control-scale': { type: 'number', help: 'With --controlnet: conditioning scale, ≥ 0 (default 1)' },
    'invert-control': { type: 'boolean', help: 'With --controlnet: use 255 − the control image (black-on-white sketch → white on black, as IDKiro\'s sketch demo does)' },
    json: { type: 'boolean', help: 'Print a JSON summary (files, seed, timings) on stdout' },
  },
  async run({ flags, positionals }, io) {
    const t0 = performance.now();
    // ---- validation: everything before any download or model load
    if (positionals.length === 0) throw new UsageError('give at least one prompt (put -- before a prompt that starts with "-")');
    const prompts = positionals;
    const opts = commonOptions(flags);
    const out = flags['out'] as string | undefined, outDir = flags['out-dir'] as string | undefined;
    if (out === undefined && outDir === undefined) throw new UsageError('give --out <file.png> or --out-dir <dir>');
    if (out !== undefined && outDir !== undefined) throw new UsageError('give either --out or --out-dir, not both');
    const perPrompt = flags['batch'] as number;
    if (perPrompt < 1) throw new UsageError(`--batch must be at least 1, got ${perPrompt}`);
    const total = prompts.length * perPrompt;
    if (total > 64) throw new UsageError(`${total} images in one batch is too many (at most 64); split the prompts`);
    if (out !== undefined && total !== 1) {
      throw new UsageError(`--out takes one image, but ${total} would be generated (${prompts.length} prompt${prompts.length === 1 ? '' : 's'} × --batch ${perPrompt}); use --out-dir`);
    }
    const seedFlag = checkSeed(flags['seed']);
    const strength = flags['strength'] as number | undefined;
    const initPath = flags['init-image'] as string | undefined, latentsPath = flags['latents'] as string | undefined;
    if (strength !== undefined && initPath === undefined) throw new UsageError('--strength needs --init-image');
    if (strength !== undefined && !(strength > 0 && strength <= 1)) throw new UsageError(`--strength must be in (0, 1], got ${strength}`);
    if (initPath !== undefined && latentsPath !== undefined) throw new UsageError('--init-image and --latents cannot be used together');
    const initMode = flags['init'] as string, refPath = flags['init-latents'] as string | undefined;
    if (initMode === 'latent-mean') {
      if (refPath === undefined) throw new UsageError('--init latent-mean needs --init-latents <file.safetensors> (reference latents for the mean and std)');
      if (latentsPath !== undefined || initPath !== undefined) throw new UsageError('--init latent-mean replaces the initial noise; it cannot be combined with --latents or --init-image');
    } else if (refPath !== undefined) throw new UsageError('--init-latents only applies with --init latent-mean');
    if (initPath !== undefined && opts.steps !== undefined && Math.floor(opts.steps * (strength ?? 0.8)) < 1) {
      throw new UsageError(`--strength ${strength ?? 0.8} with --steps ${opts.steps} runs no denoising step (⌊steps × strength⌋ must be at least 1; raise --steps or --strength)`);
    }
    const controlnet = flags['controlnet'] as string | undefined, controlPath = flags['control-image'] as string | undefined;
    const controlScale = flags['control-scale'] as number | undefined, invertControl = Boolean(flags['invert-control']);
    if (controlnet === undefined) {
      if (controlPath !== undefined) throw new UsageError('--control-image needs --controlnet <id|dir>');
      if (controlScale !== undefined) throw new UsageError('--control-scale needs --controlnet <id|dir>');
      if (invertControl) throw new UsageError('--invert-control needs --controlnet <id|dir>');
    } else {
      if (!controlnet) throw new UsageError('--controlnet must not be empty');
      if (controlPath === undefined) throw new UsageError('--controlnet needs --control-image <file.png>');
      if (controlScale !== undefined && controlScale < 0) throw new UsageError(`--control-scale must be 0 or more, got ${controlScale}`);
      if (initPath !== undefined) throw new UsageError('--controlnet with --init-image (ControlNet image-to-image) is not supported');
    }
    if (out !== undefined) await checkOutFile(out);
    if (outDir !== undefined) await checkOutDir(outDir);
    await checkLoras(opts.loras);
    if (controlnet !== undefined) await checkControlNetSource(controlnet);
    let width = opts.width, height = opts.height;
    let controlImage: HostImage | undefined;
    if (controlPath !== undefined) {
      controlImage = await readPngFlag(controlPath, '--control-image');
      // Like img2img: the output takes the control image's size; diffusers would resize it (Lanczos), fewstep does not resample.
      if ((width !== undefined && width !== controlImage.width) || (height !== undefined && height !== controlImage.height)) {
        throw new UsageError(`--control-image ${controlPath} is ${controlImage.width}x${controlImage.height}, but --width/--height ask for ${width ?? controlImage.width}x${height ?? controlImage.height}; resize the image or leave out --width/--height`);
      }
      if (controlImage.width % 8 || controlImage.height % 8) {
        throw new UsageError(`--control-image ${controlPath} is ${controlImage.width}x${controlImage.height}; sizes must be multiples of 8 (crop or resize it)`);
      }
      [width, height] = [controlImage.width, controlImage.height];
      if (invertControl) controlImage = invertControlImage(controlImage);
    }
    let initImage: HostImage | undefined;
    if (initPath !== undefined) {
      initImage = await readPngFlag(initPath);
      // Image-to-image keeps the image's size (no resizing).
      if ((width !== undefined && width !== initImage.width) || (height !== undefined && height !== initImage.height)) {
        throw new UsageError(`--init-image ${initPath} is ${initImage.width}x${initImage.height}; the output keeps its size, so leave out --width/--height (or resize the image)`);
      }
      if (initImage.width % 8 || initImage.height % 8) {
        throw new UsageError(`--init-image ${initPath} is ${initImage.width}x${initImage.height}; sizes must be multiples of 8 (crop or resize it)`);
      }
      [width, height] = [initImage.width, initImage.height];
    }
    let latents: { data: Float32Array; shape: number[] } | undefined;
    if (latentsPath !== undefined) {
      latents = await readLatents(latentsPath, total, width, height);
      width ??= latents.shape[3]! * 8;
      height ??= latents.shape[2]! * 8;
    }
    let reference: { data: Float32Array; shape: number[] } | undefined;
    if (refPath !== undefined) {
      reference = await readLatents(refPath, 'reference', width, height, '--init-latents');
      width ??= reference.shape[3]! * 8;
      height ??= reference.shape[2]! * 8;
    }
    const seed = seedFlag ?? randomSeed();

    // ---- model
    const reporter = createStageReporter(io, opts.quiet);
    const loaded = await loadModel(opts, io, reporter, { controlnet });
    try {
      if (seedFlag === undefined) reporter.line(`seed ${seed} (random; pass --seed ${seed} to repeat)`);
      const { pipe } = loaded;
      const steps = opts.steps ?? pipe.defaults.steps;
      const guidance = opts.guidance ?? pipe.defaults.guidance;
      width ??= pipe.defaults.width;
      height ??= pipe.defaults.height;
      if (opts.negativePrompt && guidance <= 1) reporter.line(`note: --negative-prompt has no effect at guidance ${guidance} (classifier-free guidance needs guidance > 1)`);
      const res = await pipe.generate({
        prompt: prompts,
        negativePrompt: opts.negativePrompt ?? '',
        seed,
        steps,
        guidance,
        width,
        height,
        batchSize: perPrompt,
        init: latents
          ? { kind: 'latents', latents }
          : initImage
            ? { kind: 'image', image: initImage, strength: strength ?? 0.8 }
            : reference
              ? // The pipeline wants UNet-space latents: VAE latents × scaling_factor (0.18215 for SD's VAE, 1 for TAESD).
                { kind: 'informative', reference: { latents: { shape: reference.shape, data: reference.data.map((x) => Math.fround(x * pipe.scalingFactor)) } } }
              : { kind: 'noise' },
        control: controlImage ? { image: controlImage, scale: controlScale ?? 1 } : undefined,
      });
      reporter.finish();
      const images = res.images;
      const files: { file: string; prompt: string; index: number }[] = [];
      for (const [i, img] of images.entries()) {
        const prompt = prompts[Math.floor(i / perPrompt)]!;
        const info: GenerationInfo = {
          ...generationInfo(opts, loaded, { prompt, steps, guidance, seed, width: img.width, height: img.height, batchIndex: i, batchSize: images.length }),
          initImage: initPath,
          strength: initImage ? (strength ?? 0.8) : undefined,
          latents: latentsPath,
          ...(controlnet !== undefined ? { controlnet, controlImage: controlPath, controlScale: controlScale ?? 1, invertControl } : {}),
        };
        const png = await encodePng(img, pngTextChunks(info));
        let file: string;
        if (out !== undefined) file = out;
        else {
          if (i === 0) await mkdir(outDir!, { recursive: true });
          file = join(outDir!, imageFileName(i, prompt));
        }
        await writeAtomic(file, png);
        files.push({ file, prompt, index: i });
      }
      const seconds = (performance.now() - t0) / 1000;
      if (!opts.quiet) reporter.line(`timings: ${formatTimings(res.timings)}; total ${seconds.toFixed(2)} s with loading, on ${loaded.device.adapter.name}`);
      if (flags['json']) {
        io.stdout(
          JSON.stringify({
            files: files.map((f) => f.file),
            images: files,
            seed,
            steps,
            guidance,
            width,
            height,
            model: opts.model,
            scheduler: loaded.sampler,
            dtype: opts.dtype,
            ...(controlnet !== undefined ? { controlnet, controlImage: controlPath, controlScale: controlScale ?? 1, invertControl } : {}),
            timings: Object.fromEntries(Object.entries(res.timings).map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
            seconds: Math.round(seconds * 1000) / 1000,
          }) + '\n',
        );
      } else {
        for (const f of files) io.stdout(`${f.file}\n`);
        io.stdout(`seed ${seed}, ${steps} step${steps === 1 ? '' : 's'}, guidance ${guidance}, ${width}x${height}, ${seconds.toFixed(2)} s\n`);
      }
      return 0;
    } finally {
      reporter.finish();
      loaded.dispose();
    }
  },
};

