/**
 * diffusers `autoencoders/autoencoder_kl.py`: `AutoencoderKL` (the SD VAE). `decode(z)` runs
 * post_quant_conv → Decoder and returns the image in [-1, 1] convention, unclamped; `encode(x)` runs
 * Encoder → quant_conv and returns the diagonal Gaussian's mean and std (logvar clamped to
 * [-30, 20]). Dividing latents by `scaling_factor` is the pipeline's job.
 */
import { InvalidArgumentError, ShapeError, Tensor, UnsupportedError } from '@fewstep/tensor';
import { cast, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import  { disposeAll, loadModel, type WeightScope } from '../modeling/weights.js';
import { Decoder, Encoder, type VaeCoderConfig } from './vae.js';
import type { NoiseGenerator, Vae } from './autoencoder.js';
import { unsupportedConfig, withDefaults, type ConfigInput } from '../modeling/config.js';
import { ConfigError } from '../errors.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/** config.json of an AutoencoderKL, every key diffusers takes (`model.config`: defaults applied). */
export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number | number[];
  scaling_factor: number;
  force_upcast: boolean;
  /** Keys of later diffusers versions (defaults: true); use_quant_conv / use_post_quant_conv false are not supported. */
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
  [key: string]: unknown;
}

/** diffusers' `AutoencoderKL.__init__` defaults (v0.25.1, plus the later keys' defaults). */
export const AUTOENCODER_KL_DEFAULTS: AutoencoderKLConfig = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** A config.json object → `model.config`: diffusers' defaults for the keys it leaves out, checked. */
export function autoencoderKLConfig(raw: ConfigInput<AutoencoderKLConfig>): Readonly<AutoencoderKLConfig> {
  const c = withDefaults(AUTOENCODER_KL_DEFAULTS, raw);
  const unsupported = (key: string, why: string): never => unsupportedConfig('AutoencoderKL', c, key, why);
  if (!['silu', 'swish'].includes(c.act_fn)) unsupported('act_fn', 'only "silu" is supported');
  if (c.use_quant_conv === false) unsupported('use_quant_conv', 'only true is supported');
  if (c.use_post_quant_conv === false) unsupported('use_post_quant_conv', 'only true is supported');
  const n = c.block_out_channels.length;
  if (c.down_block_types.length !== n || c.up_block_types.length !== n) {
    throw new ConfigError(`AutoencoderKL: down_block_types (${c.down_block_types.length}), up_block_types (${c.up_block_types.length}) and block_out_channels (${n}) must have the same length`);
  }
  return c;
}

function coderConfigs(c: Readonly<AutoencoderKLConfig>): { encoder: VaeCoderConfig; decoder: VaeCoderConfig } {
  const common = { blockOutChannels: c.block_out_channels, layersPerBlock: c.layers_per_block, normNumGroups: c.norm_num_groups, midBlockAddAttention: c.mid_block_add_attention };
  return {
    encoder: { ...common, inChannels: c.in_channels, outChannels: c.latent_channels, blockTypes: c.down_block_types, doubleZ: true },
    decoder: { ...common, inChannels: c.latent_channels, outChannels: c.out_channels, blockTypes: c.up_block_types },
  };
}

export interface LatentDistribution {
  mean: Tensor;
  std: Tensor;
}

export class AutoencoderKL extends PretrainedModel implements Vae {
  static readonly modelName = 'AutoencoderKL';

  readonly className = 'AutoencoderKL';

  private constructor(
    /** config.json's keys with diffusers' defaults (see modeling/config.ts). */
    readonly config: Readonly<AutoencoderKLConfig>,
    readonly encoder: Encoder | null,
    readonly decoder: Decoder,
    readonly quant_conv: Conv2d | null,
    readonly post_quant_conv: Conv2d,
    readonly dtype: 'f32' | 'f16',
    private readonly weights: Tensor[],
  ) {
    super();
  }

  /**
   * The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`).
   * With `decoderOnly`, the encoder and quant_conv are not built (their keys stay unused).
   */
  static build(w: WeightScope, config: ConfigInput<AutoencoderKLConfig>, opts: { decoderOnly?: boolean | undefined } = {}): AutoencoderKL {
    const r = autoencoderKLConfig(config);
    const first = w.loaded.length;
    const cc = coderConfigs(r);
    const L = r.latent_channels;
    const encoder = opts.decoderOnly ? null : Encoder.build(w.pp('encoder'), cc.encoder);
    const decoder = Decoder.build(w.pp('decoder'), cc.decoder);
    const quant = opts.decoderOnly ? null : Conv2d.build(w.pp('quant_conv'), 2 * L, 2 * L, { kernel: 1 });
    const postQuant = Conv2d.build(w.pp('post_quant_conv'), L, L, { kernel: 1 });
    return new AutoencoderKL(r, encoder, decoder, quant, postQuant, w.dtype, w.loaded.slice(first));
  }
  /** Loads the decoder half only (the encoder's and quant_conv's keys may be present and are not read). */
  static loadDecoder(w: WeightScope, config: ConfigInput<AutoencoderKLConfig>): Promise<AutoencoderKL> {
    return loadModel(w, null, (s) => AutoencoderKL.build(s, config, { decoderOnly: true }));
  }


  /** z [B, latent_channels, h, w] (already divided by scaling_factor) → image [B, out, 8h, 8w] in [-1, 1], unclamped. */
  decode(z: Tensor): Tensor {
    this.check('decode', 'z', z, this.config.latent_channels);
    return z.device.scope(() => this.decoder.forward(this.post_quant_conv.forward(this.toModelDType(z))));
  }

  /**
   * x [B, in, H, W] in [-1, 1] → latent distribution (mean, std), each [B, latent, H/8, W/8].
   * (async: std = exp(logvar / 2) of the clamped logvar is computed on the CPU — it is latent-sized.)
   */
  async encode(x: Tensor): Promise<LatentDistribution> {
    if (!this.encoder || !this.quant_conv) throw new UnsupportedError('AutoencoderKL: this model was loaded decoder-only');
    this.check('encode', 'sample', x, this.config.in_channels);
    const enc = this.encoder, quant = this.quant_conv;
    const L = this.config.latent_channels;
    const { mean, logvar } = x.device.scope(() => {
      const moments = quant.forward(enc.forward(this.toModelDType(x)));
      return { mean: slice(moments, 1, 0, L), logvar: slice(moments, 1, L, 2 * L) };
    });
    try {
      const lv = await logvar.readF32();
      const std = new Float32Array(lv.length);
      for (let i = 0; i < lv.length; i++) std[i] = Math.exp(0.5 * Math.min(Math.max(lv[i]!, -30), 20));
      return { mean, std: Tensor.from(x.device, std, logvar.shape, this.dtype) };
    } finally {
      logvar.dispose();
    }
  }

  /**
   * `Vae.encodeLatents`: `latent_dist.sample(generator)` = mean + std · randn(generator) (one draw of the
   * latents' shape), in float32 with torch's rounding (std · eps, then + mean), as f32 latents.
   */
  async encodeLatents(image: Tensor, generator: NoiseGenerator): Promise<Tensor> {
    const dist = await this.encode(image);
    try {
      const [mean, std] = [await dist.mean.readF32(), await dist.std.readF32()];
      const eps = generator.randn([...dist.mean.shape]);
      if (eps.length !== mean.length) throw new InvalidArgumentError(`AutoencoderKL.encodeLatents: the generator gave ${eps.length} values for shape [${dist.mean.shape.join(', ')}]`, 'generator');
      const f = Math.fround;
      const z = new Float32Array(mean.length);
      for (let i = 0; i < z.length; i++) z[i] = f(mean[i]! + f(std[i]! * eps[i]!));
      return Tensor.from(image.device, z, dist.mean.shape, 'f32');
    } finally {
      dist.mean.dispose();
      dist.std.dispose();
    }
  }

  /** `config.scaling_factor` (0.18215 for SD's VAE). */
  get scalingFactor(): number {
    return this.config.scaling_factor;
  }

  /** Image pixels per latent pixel along each side: 2^(len(block_out_channels) − 1) = 8 for SD's VAE. */
  get spatialScaleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  get latentChannels(): number {
    return this.config.latent_channels;
  }

  private check(method: string, name: string, x: Tensor, channels: number): void {
    if (x.rank !== 4 || x.shape[1] !== channels) {
      throw new ShapeError(`AutoencoderKL.${method}: ${name} must be [batch, ${channels}, height, width], got [${x.shape.join(', ')}]`, name);
    }
    if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new ShapeError(`AutoencoderKL.${method}: ${name} must be f32 or f16, got ${x.dtype}`, name);
  }

  private toModelDType(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}
