/**
 * What a pipeline needs of a VAE, whichever one it is: `AutoencoderTiny` (TAESD) and `AutoencoderKL` (the SD
 * VAE) both implement `Vae`, so a pipeline decodes, encodes and scales latents without asking which.
 * Neither method applies `scaling_factor`: as in diffusers, the pipeline divides latents by it before
 * `decode` and multiplies encoded latents by it.
 */
import type { Tensor } from '@fewstep/tensor';

/**
 * Standard-normal noise of a given shape, as `torch.randn(shape, generator=g)`. `TorchGenerator` is one, so a
 * pipeline passes its torch-exact generator and gets diffusers' draws in diffusers' order.
 */
export interface NoiseGenerator {
  randn(shape: readonly number[]): Float32Array | Float64Array;
}

export interface Vae {
  /** diffusers' class name. */
  readonly className: 'AutoencoderTiny' | 'AutoencoderKL';
  /** The dtype of the weights and of `decode`'s output. */
  readonly dtype: 'f32' | 'f16';
  /** `config.scaling_factor` (TAESD 1.0, the SD VAE 0.18215). */
  readonly scalingFactor: number;
  /** Image pixels per latent pixel along each side (8): diffusers' pipeline `vae_scale_factor`. */
  readonly spatialScaleFactor: number;
  /** `config.latent_channels` (4). */
  readonly latentChannels: number;
  /**
   * latents [B, latent_channels, h, w], already divided by `scalingFactor`, in any float dtype → image
   * [B, out_channels, h·f, w·f] in [-1, 1] (not clamped) in the model's dtype; the caller owns it.
   */
  decode(latents: Tensor): Tensor;
  /**
   * The latents an image encodes to, as diffusers' `retrieve_latents(vae.encode(image), generator)`: image
   * [B, in_channels, H, W] in [-1, 1], any float dtype → f32 latents [B, latent_channels, H/f, W/f], not yet
   * multiplied by `scalingFactor`. AutoencoderTiny: its encoder's output (deterministic; `generator` is not
   * drawn from). AutoencoderKL: `latent_dist.sample(generator)` = mean + std · randn, one draw of the
   * latents' shape from `generator`, in float32 as torch computes it.
   */
  encodeLatents(image: Tensor, generator: NoiseGenerator): Promise<Tensor>;
  /** Frees the weights. */
  dispose(): void;
}
