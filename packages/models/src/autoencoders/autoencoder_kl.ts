/**
 * diffusers `autoencoders/autoencoder_kl.py`: `AutoencoderKL` (the SD VAE). `decode(z)` runs
 * post_quant_conv → Decoder and returns the image in [-1, 1] convention, unclamped; `encode(x)` runs
 * Encoder → quant_conv and returns the diagonal Gaussian's mean and std (logvar clamped to
 * [-30, 20]). Dividing latents by `scaling_factor` is the pipeline's job.
 */
import { Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { cast, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { WeightScope, disposeAll, type TensorSource } from '../modeling/weights.js';
import { ParamSpec } from '../modeling/param_spec.js';
import { loadFromFolder, loadFromSource } from '../modeling/component.js';
import { Decoder, Encoder, type VaeCoderConfig } from './vae.js';

/** config.json of an AutoencoderKL; keys verbatim, diffusers defaults. */
export interface AutoencoderKLConfig {
  in_channels?: number | undefined;
  out_channels?: number | undefined;
  down_block_types?: string[] | undefined;
  up_block_types?: string[] | undefined;
  block_out_channels?: number[] | undefined;
  layers_per_block?: number | undefined;
  act_fn?: string | undefined;
  latent_channels?: number | undefined;
  norm_num_groups?: number | undefined;
  sample_size?: number | number[] | undefined;
  scaling_factor?: number | undefined;
  force_upcast?: boolean | undefined;
  /** Newer diffusers keys; only their defaults are supported. */
  use_quant_conv?: boolean | undefined;
  use_post_quant_conv?: boolean | undefined;
  mid_block_add_attention?: boolean | undefined;
  [extra: string]: unknown;
}

export interface ResolvedAutoencoderKLConfig {
  inChannels: number;
  outChannels: number;
  downBlockTypes: string[];
  upBlockTypes: string[];
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  scalingFactor: number;
  forceUpcast: boolean;
  midBlockAddAttention: boolean;
}

export function resolveAutoencoderKLConfig(c: AutoencoderKLConfig): ResolvedAutoencoderKLConfig {
  const unsupported = (key: string, why: string): never => {
    throw new Error(`AutoencoderKL: config ${key} = ${JSON.stringify(c[key])} is not supported by fewstep (${why})`);
  };
  if (!['silu', 'swish'].includes(c.act_fn ?? 'silu')) unsupported('act_fn', 'only "silu" is supported');
  if (c.use_quant_conv === false) unsupported('use_quant_conv', 'only true is supported');
  if (c.use_post_quant_conv === false) unsupported('use_post_quant_conv', 'only true is supported');
  const r: ResolvedAutoencoderKLConfig = {
    inChannels: c.in_channels ?? 3,
    outChannels: c.out_channels ?? 3,
    downBlockTypes: c.down_block_types ?? ['DownEncoderBlock2D'],
    upBlockTypes: c.up_block_types ?? ['UpDecoderBlock2D'],
    blockOutChannels: c.block_out_channels ?? [64],
    layersPerBlock: c.layers_per_block ?? 1,
    latentChannels: c.latent_channels ?? 4,
    normNumGroups: c.norm_num_groups ?? 32,
    scalingFactor: c.scaling_factor ?? 0.18215,
    forceUpcast: c.force_upcast ?? true,
    midBlockAddAttention: c.mid_block_add_attention ?? true,
  };
  const n = r.blockOutChannels.length;
  if (r.downBlockTypes.length !== n || r.upBlockTypes.length !== n) {
    throw new Error(`AutoencoderKL: down_block_types (${r.downBlockTypes.length}), up_block_types (${r.upBlockTypes.length}) and block_out_channels (${n}) must have the same length`);
  }
  return r;
}

function coderConfigs(r: ResolvedAutoencoderKLConfig): { encoder: VaeCoderConfig; decoder: VaeCoderConfig } {
  const common = { blockOutChannels: r.blockOutChannels, layersPerBlock: r.layersPerBlock, normNumGroups: r.normNumGroups, midBlockAddAttention: r.midBlockAddAttention };
  return {
    encoder: { ...common, inChannels: r.inChannels, outChannels: r.latentChannels, blockTypes: r.downBlockTypes, doubleZ: true },
    decoder: { ...common, inChannels: r.latentChannels, outChannels: r.outChannels, blockTypes: r.upBlockTypes },
  };
}

export interface LatentDistribution {
  mean: Tensor;
  std: Tensor;
}

export class AutoencoderKL {
  private constructor(
    readonly config: ResolvedAutoencoderKLConfig,
    readonly encoder: Encoder | null,
    readonly decoder: Decoder,
    readonly quant_conv: Conv2d | null,
    readonly post_quant_conv: Conv2d,
    readonly dtype: 'f32' | 'f16',
    private readonly weights: Tensor[],
  ) {}

  /**
   * Loads from a weight scope. With `decoderOnly`, the encoder and quant_conv are not loaded
   * (their keys stay unused: the caller's `finish` must then not be called on this scope).
   */
  static async load(w: WeightScope, config: AutoencoderKLConfig, opts: { decoderOnly?: boolean | undefined } = {}): Promise<AutoencoderKL> {
    const r = resolveAutoencoderKLConfig(config);
    if (w.dtype === 'i32') throw new Error('AutoencoderKL: weights must load as f32 or f16');
    const first = w.loaded.length;
    const cc = coderConfigs(r);
    const L = r.latentChannels;
    const encoder = opts.decoderOnly ? null : await Encoder.load(w.pp('encoder'), cc.encoder);
    const decoder = await Decoder.load(w.pp('decoder'), cc.decoder);
    const quant = opts.decoderOnly ? null : await Conv2d.load(w.pp('quant_conv'), 2 * L, 2 * L, { kernel: 1 });
    const postQuant = await Conv2d.load(w.pp('post_quant_conv'), L, L, { kernel: 1 });
    return new AutoencoderKL(r, encoder, decoder, quant, postQuant, w.dtype, w.loaded.slice(first));
  }

  static describe(config: AutoencoderKLConfig): Map<string, number[]> {
    const r = resolveAutoencoderKLConfig(config);
    const cc = coderConfigs(r);
    const s = new ParamSpec();
    Encoder.describe(s.pp('encoder'), cc.encoder);
    Decoder.describe(s.pp('decoder'), cc.decoder);
    s.conv('quant_conv', 2 * r.latentChannels, 2 * r.latentChannels, 1).conv('post_quant_conv', r.latentChannels, r.latentChannels, 1);
    return s.shapes;
  }

  /** Loads a diffusers `vae/` folder (config.json + safetensors). */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: { dtype?: 'f32' | 'f16' | undefined; variant?: string | undefined } = {}): Promise<AutoencoderKL> {
    return loadFromFolder<AutoencoderKLConfig, AutoencoderKL>(io, dir, opts.variant, (src, config) => AutoencoderKL.fromSource(src, config, device, opts.dtype ?? 'f32'));
  }

  static async fromSource(src: TensorSource, config: AutoencoderKLConfig, device: Device, dtype: 'f32' | 'f16' = 'f32'): Promise<AutoencoderKL> {
    return loadFromSource('AutoencoderKL', src, device, dtype, undefined, (w) => AutoencoderKL.load(w, config));
  }

  /** z [B, latent_channels, h, w] (already divided by scaling_factor) → image [B, out, 8h, 8w] in [-1, 1], unclamped. */
  decode(z: Tensor): Tensor {
    return z.device.scope(() => this.decoder.forward(this.post_quant_conv.forward(this.toModelDType(z))));
  }

  /**
   * x [B, in, H, W] in [-1, 1] → latent distribution (mean, std), each [B, latent, H/8, W/8].
   * (async: std = exp(logvar / 2) of the clamped logvar is computed on the CPU — it is latent-sized.)
   */
  async encode(x: Tensor): Promise<LatentDistribution> {
    if (!this.encoder || !this.quant_conv) throw new Error('AutoencoderKL: this model was loaded decoder-only');
    const enc = this.encoder, quant = this.quant_conv;
    const L = this.config.latentChannels;
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

  private toModelDType(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}
