/**
 * diffusers v0.25.1 `AutoencoderTiny` (TAESD, models/autoencoders/autoencoder_tiny.py): `encoder`
 * (EncoderTiny) and `decoder` (DecoderTiny). `encode(x)` takes an image in [-1, 1] and returns the
 * latents; `decode(z)` returns an image in [-1, 1] (not clamped). Neither applies `scaling_factor`
 * (1.0 for TAESD): like diffusers, the pipeline divides/multiplies by it.
 */
import type { Device, DType, FileSource, Tensor } from '@fewstep/tensor';
import { openComponentWeights, readConfig } from '../component';
import { WeightScope, disposeAll } from '../weights';
import { DecoderTiny, EncoderTiny } from './vae_tiny';

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

export function autoencoderTinyConfig(raw: Record<string, unknown>, where = 'config.json'): AutoencoderTinyConfig {
  const cfg: Record<string, unknown> = { ...AUTOENCODER_TINY_DEFAULTS };
  for (const [k, def] of Object.entries(AUTOENCODER_TINY_DEFAULTS)) {
    const v = raw[k];
    if (v === undefined || v === null) continue;
    const ok = Array.isArray(def) ? Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0) : typeof v === typeof def;
    if (!ok) throw new Error(`${where}: "${k}" must be ${Array.isArray(def) ? 'a list of integers' : `a ${typeof def}`}, got ${JSON.stringify(v)}`);
    cfg[k] = v;
  }
  return cfg as unknown as AutoencoderTinyConfig;
}

export interface AutoencoderTinyFromFolderOptions {
  dtype?: 'f32' | 'f16';
  /** Weight-file variant to prefer, e.g. 'fp16'. */
  variant?: string;
}

export class AutoencoderTiny {
  private constructor(
    readonly config: AutoencoderTinyConfig,
    readonly encoder: EncoderTiny,
    readonly decoder: DecoderTiny,
    private readonly weights: readonly Tensor[],
    readonly dtype: DType,
  ) {}

  static async load(w: WeightScope, config: AutoencoderTinyConfig | Record<string, unknown>): Promise<AutoencoderTiny> {
    const cfg = autoencoderTinyConfig(config as Record<string, unknown>);
    try {
      const encoder = await EncoderTiny.load(w.pp('encoder'), {
        inChannels: cfg.in_channels,
        outChannels: cfg.latent_channels,
        numBlocks: cfg.num_encoder_blocks,
        blockOutChannels: cfg.encoder_block_out_channels,
        actFn: cfg.act_fn,
      });
      const decoder = await DecoderTiny.load(w.pp('decoder'), {
        inChannels: cfg.latent_channels,
        outChannels: cfg.out_channels,
        numBlocks: cfg.num_decoder_blocks,
        blockOutChannels: cfg.decoder_block_out_channels,
        upsamplingScalingFactor: cfg.upsampling_scaling_factor,
        actFn: cfg.act_fn,
      });
      w.finish('AutoencoderTiny');
      return new AutoencoderTiny(cfg, encoder, decoder, [...w.loaded], w.dtype);
    } catch (e) {
      disposeAll(w.loaded);
      throw e;
    }
  }

  static async fromFolder(io: FileSource, dir: string, device: Device, opts: AutoencoderTinyFromFolderOptions = {}): Promise<AutoencoderTiny> {
    const cfg = autoencoderTinyConfig(await readConfig(io, dir), io.join(dir, 'config.json'));
    const src = await openComponentWeights(io, dir, opts.variant);
    try {
      return await AutoencoderTiny.load(WeightScope.create(src, device, opts.dtype ?? 'f32'), cfg);
    } finally {
      await src.close();
    }
  }

  get device(): Device {
    return this.weights[0]!.device;
  }

  /** Spatial downscale of the encoder (8 for TAESD). */
  get scaleFactor(): number {
    return 2 ** (this.config.encoder_block_out_channels.length - 1);
  }

  /** image [N, in_channels, H, W] in [-1, 1] → latents [N, latent_channels, ⌈H/8⌉, ⌈W/8⌉]. */
  encode(x: Tensor): Tensor {
    this.check('encode', 'sample', x, this.config.in_channels);
    return this.encoder.forward(x);
  }

  /** latents [N, latent_channels, h, w] → image [N, out_channels, 8h, 8w] in [-1, 1]. */
  decode(z: Tensor): Tensor {
    this.check('decode', 'z', z, this.config.latent_channels);
    return this.decoder.forward(z);
  }

  private check(method: string, name: string, x: Tensor, channels: number): void {
    if (x.rank !== 4 || x.shape[1] !== channels) {
      throw new Error(`AutoencoderTiny.${method}: ${name} must be [batch, ${channels}, height, width], got [${x.shape.join(', ')}]`);
    }
    if (x.dtype !== this.dtype) throw new Error(`AutoencoderTiny.${method}: ${name} is ${x.dtype} but the model is ${this.dtype}`);
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}
