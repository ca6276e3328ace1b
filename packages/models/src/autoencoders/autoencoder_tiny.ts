/**
 * diffusers v0.25.1 `AutoencoderTiny` (TAESD, models/autoencoders/autoencoder_tiny.py): `encoder`
 * (EncoderTiny) and `decoder` (DecoderTiny). `encode(x)` takes an image in [-1, 1] and returns the
 * latents; `decode(z)` returns an image in [-1, 1] (not clamped). Neither applies `scaling_factor`
 * (1.0 for TAESD): like diffusers, the pipeline divides/multiplies by it.
 */
import { ShapeError, type Device, type FileSource, type Tensor } from '@fewstep/tensor';
import { cast } from '@fewstep/kernels';
import { findWeightFiles, readConfig, type FromFolderOptions, type FromSourceOptions } from '../modeling/component.js';
import { RenamedSource, SafetensorsSource, disposeAll, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { DecoderTiny, EncoderTiny } from './vae_tiny.js';
import { detectTaesdPart, taesdKeyMap, type TaesdPart } from './taesd_original_keys.js';
import type { NoiseGenerator, Vae } from './autoencoder.js';
import type { ConfigInput } from '../modeling/config.js';
import { ConfigError } from '../errors.js';
import { ModelFolderError, WeightsError } from '../errors.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/** `config.json` of an AutoencoderTiny; missing keys take diffusers' defaults. */
export interface AutoencoderTinyConfig {
  in_channels: number;
  out_channels: number;
  encoder_block_out_channels: number[];
  decoder_block_out_channels: number[];
  act_fn: string;
  latent_channels: number;
  upsampling_scaling_factor: number;
  num_encoder_blocks: number[];
  num_decoder_blocks: number[];
  latent_magnitude: number;
  latent_shift: number;
  force_upcast: boolean;
  scaling_factor: number;
  [key: string]: unknown;
}

export const AUTOENCODER_TINY_DEFAULTS: AutoencoderTinyConfig = {
  in_channels: 3,
  out_channels: 3,
  encoder_block_out_channels: [64, 64, 64, 64],
  decoder_block_out_channels: [64, 64, 64, 64],
  act_fn: 'relu',
  latent_channels: 4,
  upsampling_scaling_factor: 2,
  num_encoder_blocks: [1, 3, 3, 3],
  num_decoder_blocks: [3, 3, 3, 1],
  latent_magnitude: 3,
  latent_shift: 0.5,
  force_upcast: false,
  scaling_factor: 1.0,
};

/** A config.json object → `model.config`: diffusers' defaults for the keys it leaves out (null too), types checked, other keys kept. */
export function autoencoderTinyConfig(raw: ConfigInput<AutoencoderTinyConfig>, where = 'config.json'): Readonly<AutoencoderTinyConfig> {
  const cfg: Record<string, unknown> = { ...raw };
  for (const [k, def] of Object.entries(AUTOENCODER_TINY_DEFAULTS)) {
    const v = raw[k];
    if (v === undefined || v === null) {
      cfg[k] = Array.isArray(def) ? [...def] : def;
      continue;
    }
    const ok = Array.isArray(def) ? Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0) : typeof v === typeof def;
    if (!ok) throw new ConfigError(`${where}: "${k}" must be ${Array.isArray(def) ? 'a list of integers' : `a ${typeof def}`}, got ${JSON.stringify(v)}`);
  }
  return Object.freeze(cfg as AutoencoderTinyConfig);
}

export class AutoencoderTiny extends PretrainedModel implements Vae {
  static readonly modelName = 'AutoencoderTiny';

  readonly className = 'AutoencoderTiny';

  private constructor(
    /** config.json's keys with diffusers' defaults (see modeling/config.ts). */
    readonly config: Readonly<AutoencoderTinyConfig>,
    readonly encoder: EncoderTiny,
    readonly decoder: DecoderTiny,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {
    super();
  }

  /** The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ConfigInput<AutoencoderTinyConfig>): AutoencoderTiny {
    const cfg = autoencoderTinyConfig(config);
    const first = w.loaded.length;
    const encoder = EncoderTiny.build(w.pp('encoder'), {
      inChannels: cfg.in_channels,
      outChannels: cfg.latent_channels,
      numBlocks: cfg.num_encoder_blocks,
      blockOutChannels: cfg.encoder_block_out_channels,
      actFn: cfg.act_fn,
    });
    const decoder = DecoderTiny.build(w.pp('decoder'), {
      inChannels: cfg.latent_channels,
      outChannels: cfg.out_channels,
      numBlocks: cfg.num_decoder_blocks,
      blockOutChannels: cfg.decoder_block_out_channels,
      upsamplingScalingFactor: cfg.upsampling_scaling_factor,
      actFn: cfg.act_fn,
    });
    return new AutoencoderTiny(cfg, encoder, decoder, w.loaded.slice(first), w.dtype);
  }

  static parseConfig(raw: Record<string, unknown>, where: string): AutoencoderTinyConfig {
    return autoencoderTinyConfig(raw, where);
  }

  /**
   * `fromFolder`'s other layout: a folder without diffusers weights (config.json + diffusion_pytorch_model.*) but
   * with madebyollin's original files (`taesd_encoder.pth` + `taesd_decoder.pth`, or their `.safetensors` copies;
   * `taesdxl_*` etc. likewise) loads those, with config.json if present else TAESD's defaults; undefined otherwise.
   */
  static async fromOtherFolder(io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<AutoencoderTiny | undefined> {
    const cfgPath = io.join(dir, 'config.json');
    const hasConfig = await io.exists(cfgPath);
    // diffusers' weights win; the originals are used when there are none (findWeightFiles failing, or picking
    // only the original files themselves, e.g. taesd_encoder.safetensors as "any .safetensors").
    let standard: string[] | undefined, err: unknown;
    try {
      standard = await findWeightFiles(io, dir, opts.variant);
    } catch (e) {
      err = e;
    }
    const isOriginal = (p: string) => ORIGINAL_TAESD.test(p.slice(Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\')) + 1));
    if (!standard || standard.every(isOriginal)) {
      const originals = await findOriginalTaesdFiles(io, dir);
      if (!originals) {
        if (!hasConfig) await readConfig(io, dir); // "no config.json" names the real problem first, as before
        throw err;
      }
      const cfg = hasConfig ? autoencoderTinyConfig(await readConfig(io, dir), cfgPath) : AUTOENCODER_TINY_DEFAULTS;
      return AutoencoderTiny.fromOriginalFiles(io, originals, device, { ...opts, config: cfg });
    }
    return undefined;
  }

  /**
   * Loads original-key TAESD files (taesd.py `Encoder()` / `Decoder()` state dicts, .pth or .safetensors):
   * each file's half is detected from its keys (a file with `encoder.`/`decoder.` prefixes holds both), keys
   * are renamed to diffusers' (taesd_original_keys.ts), and the model is built with `config` (default:
   * TAESD's, diffusers' AutoencoderTiny defaults). `decode` then equals original Decoder()(z) * 2 - 1.
   */
  static async fromOriginalFiles(
    io: FileSource,
    paths: readonly string[],
    device: Device,
    opts: FromSourceOptions & { config?: ConfigInput<AutoencoderTinyConfig> | undefined } = {},
  ): Promise<AutoencoderTiny> {
    const sources: SafetensorsSource[] = [];
    try {
      const entries: [string, TensorSource, string][] = [];
      const halves = new Map<TaesdPart, string>();
      for (const p of paths) {
        const src = await SafetensorsSource.open(io, [p]);
        sources.push(src);
        const part = detectTaesdPart(src.keys());
        if (!part) throw new WeightsError(`${p}: not an original TAESD encoder or decoder state dict (keys like "1.conv.0.weight" expected, got "${src.keys()[0] ?? 'no tensors'}")`);
        for (const h of part === 'both' ? (['encoder', 'decoder'] as const) : [part]) {
          if (halves.has(h)) throw new WeightsError(`${p}: holds the TAESD ${h}, already given by ${halves.get(h)}`);
          halves.set(h, p);
        }
        for (const [d, k] of taesdKeyMap(src.keys(), part, p)) entries.push([d, src, k]);
      }
      const missing = (['encoder', 'decoder'] as const).filter((h) => !halves.has(h));
      if (missing.length) throw new WeightsError(`${paths.join(', ')}: no TAESD ${missing.join(' or ')} weights (AutoencoderTiny needs both taesd_encoder and taesd_decoder)`);
      const src = new RenamedSource(paths.join(', '), entries);
      return await AutoencoderTiny.fromSource(src, opts.config ?? AUTOENCODER_TINY_DEFAULTS, device, opts);
    } finally {
      for (const s of sources) await s.close();
    }
  }

  get device(): Device {
    return this.weights[0]!.device;
  }

  /** `config.scaling_factor` (1.0 for TAESD). */
  get scalingFactor(): number {
    return this.config.scaling_factor;
  }

  /** Image pixels per latent pixel along each side: 2^(len(decoder_block_out_channels) − 1) = 8 for TAESD. */
  get spatialScaleFactor(): number {
    return 2 ** (this.config.decoder_block_out_channels.length - 1);
  }

  get latentChannels(): number {
    return this.config.latent_channels;
  }

  /** image [N, in_channels, H, W] in [-1, 1] (any float dtype) → latents [N, latent_channels, ⌈H/8⌉, ⌈W/8⌉] in the model's dtype. */
  encode(x: Tensor): Tensor {
    this.check('encode', 'sample', x, this.config.in_channels);
    return x.device.scope(() => this.encoder.forward(this.toModelDType(x)));
  }

  /** latents [N, latent_channels, h, w] (any float dtype) → image [N, out_channels, 8h, 8w] in [-1, 1] in the model's dtype. */
  decode(z: Tensor): Tensor {
    this.check('decode', 'z', z, this.config.latent_channels);
    return z.device.scope(() => this.decoder.forward(this.toModelDType(z)));
  }

  /** `Vae.encodeLatents`: the encoder's output as f32 (TAESD is deterministic: `generator` is not drawn from). */
  async encodeLatents(image: Tensor, _generator: NoiseGenerator): Promise<Tensor> {
    return image.device.scope(() => {
      const z = this.encode(image);
      return z.dtype === 'f32' ? z : cast(z, 'f32');
    });
  }

  private check(method: string, name: string, x: Tensor, channels: number): void {
    if (x.rank !== 4 || x.shape[1] !== channels) {
      throw new ShapeError(`AutoencoderTiny.${method}: ${name} must be [batch, ${channels}, height, width], got [${x.shape.join(', ')}]`, name);
    }
    if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new ShapeError(`AutoencoderTiny.${method}: ${name} must be f32 or f16, got ${x.dtype}`, name);
  }

  private toModelDType(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}

const ORIGINAL_TAESD = /^(tae[a-z0-9]*)_(encoder|decoder)\.(safetensors|pth|pt|bin)$/;

/**
 * madebyollin's original files in a folder: `<name>_encoder.<ext>` + `<name>_decoder.<ext>` with name
 * taesd / taesdxl / …, safetensors preferred over .pth. undefined when there are none; an error when the
 * folder holds several models' files or only one half.
 */
export async function findOriginalTaesdFiles(io: FileSource, dir: string): Promise<string[] | undefined> {
  let names: string[];
  try {
    names = await io.list(dir);
  } catch {
    return undefined;
  }
  const found = new Map<string, Map<string, string>>();
  for (const n of names.sort()) {
    const m = ORIGINAL_TAESD.exec(n);
    if (!m) continue;
    const parts = found.get(m[1]!) ?? new Map<string, string>();
    found.set(m[1]!, parts);
    // safetensors over pickles when both exist.
    if (!parts.has(m[2]!) || m[3] === 'safetensors') parts.set(m[2]!, n);
  }
  if (!found.size) return undefined;
  if (found.size > 1) throw new ModelFolderError(`${dir}: original TAESD files of several models (${[...found.keys()].join(', ')}); load one pair with AutoencoderTiny.fromOriginalFiles`, dir);
  const [prefix, parts] = [...found][0]!;
  for (const h of ['encoder', 'decoder']) if (!parts.has(h)) throw new ModelFolderError(`${dir}: has ${[...parts.values()].join(', ')} but no ${prefix}_${h} file (AutoencoderTiny needs both halves)`, dir);
  return [io.join(dir, parts.get('encoder')!), io.join(dir, parts.get('decoder')!)];
}
