/**
 * diffusers `autoencoders/autoencoder_kl.py`: `AutoencoderKL` (the SD VAE). `decode(z)` runs
 * post_quant_conv → Decoder and returns the image in [-1, 1] convention, unclamped; `encode(x)` runs
 * Encoder → quant_conv and returns the diagonal Gaussian's mean and std (logvar clamped to
 * [-30, 20]). Dividing latents by `scaling_factor` is the pipeline's job.
 */
import { InvalidArgumentError, ShapeError, Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { cast, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { countParameters, disposeAll, loadModel, recordParameters, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { RandomSource, type RandomWeightsOptions } from '../modeling/random_weights.js';
import { loadFromFolder, loadFromSource, type FromFolderOptions, type FromSourceOptions } from '../modeling/component.js';
import { Decoder, Encoder, type VaeCoderConfig } from './vae.js';
import type { NoiseGenerator, Vae } from './autoencoder.js';

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

export class AutoencoderKL implements Vae {
  readonly className = 'AutoencoderKL';

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
   * The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`).
   * With `decoderOnly`, the encoder and quant_conv are not built (their keys stay unused).
   */
  static build(w: WeightScope, config: AutoencoderKLConfig, opts: { decoderOnly?: boolean | undefined } = {}): AutoencoderKL {
    const r = resolveAutoencoderKLConfig(config);
    const first = w.loaded.length;
    const cc = coderConfigs(r);
    const L = r.latentChannels;
    const encoder = opts.decoderOnly ? null : Encoder.build(w.pp('encoder'), cc.encoder);
    const decoder = Decoder.build(w.pp('decoder'), cc.decoder);
    const quant = opts.decoderOnly ? null : Conv2d.build(w.pp('quant_conv'), 2 * L, 2 * L, { kernel: 1 });
    const postQuant = Conv2d.build(w.pp('post_quant_conv'), L, L, { kernel: 1 });
    return new AutoencoderKL(r, encoder, decoder, quant, postQuant, w.dtype, w.loaded.slice(first));
  }

  /**
   * Builds from a loading scope (keys relative to it), checks that every key was used (not with
   * `decoderOnly`, which leaves the encoder's keys unused), then reads the weights.
   */
  static load(w: WeightScope, config: AutoencoderKLConfig, opts: { decoderOnly?: boolean | undefined } = {}): Promise<AutoencoderKL> {
    return loadModel(w, opts.decoderOnly ? null : 'AutoencoderKL', (s) => AutoencoderKL.build(s, config, opts));
  }

  /** Every parameter key → shape the config implies (diffusers state-dict names): `build` with a recording scope. */
  static describe(config: AutoencoderKLConfig): Map<string, number[]> {
    return recordParameters((w) => AutoencoderKL.build(w, config));
  }

  /** Number of parameters the config implies (SD's VAE: 83,653,863). */
  static parameterCount(config: AutoencoderKLConfig): number {
    return countParameters(AutoencoderKL.describe(config));
  }

  /** Loads a diffusers `vae/` folder (config.json + safetensors). */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<AutoencoderKL> {
    return loadFromFolder<AutoencoderKLConfig, AutoencoderKL>(io, dir, opts.variant, (src, config) => AutoencoderKL.fromSource(src, config, device, opts));
  }

  /** Loads from any TensorSource holding exactly this model's keys. */
  static async fromSource(src: TensorSource, config: AutoencoderKLConfig, device: Device, opts: FromSourceOptions = {}): Promise<AutoencoderKL> {
    return loadFromSource('AutoencoderKL', src, device, opts, (w) => AutoencoderKL.build(w, config));
  }

  /** An AutoencoderKL with deterministic random weights (benchmarks, memory tests). */
  static random(config: AutoencoderKLConfig, device: Device, opts: RandomWeightsOptions = {}): Promise<AutoencoderKL> {
    return AutoencoderKL.fromSource(new RandomSource(AutoencoderKL.describe(config), opts.seed ?? 0), config, device, opts);
  }

  /** z [B, latent_channels, h, w] (already divided by scaling_factor) → image [B, out, 8h, 8w] in [-1, 1], unclamped. */
  decode(z: Tensor): Tensor {
    this.check('decode', 'z', z, this.config.latentChannels);
    return z.device.scope(() => this.decoder.forward(this.post_quant_conv.forward(this.toModelDType(z))));
  }

  /**
   * x [B, in, H, W] in [-1, 1] → latent distribution (mean, std), each [B, latent, H/8, W/8].
   * (async: std = exp(logvar / 2) of the clamped logvar is computed on the CPU — it is latent-sized.)
   */
  async encode(x: Tensor): Promise<LatentDistribution> {
    if (!this.encoder || !this.quant_conv) throw new Error('AutoencoderKL: this model was loaded decoder-only');
    this.check('encode', 'sample', x, this.config.inChannels);
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
    return this.config.scalingFactor;
  }

  /** Image pixels per latent pixel along each side: 2^(len(block_out_channels) − 1) = 8 for SD's VAE. */
  get spatialScaleFactor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  get latentChannels(): number {
    return this.config.latentChannels;
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
