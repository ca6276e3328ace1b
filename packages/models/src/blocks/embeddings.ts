/**
 * diffusers `embeddings.py`: the sinusoidal `Timesteps` projection and the `TimestepEmbedding` MLP
 * (linear_1 → SiLU → linear_2).
 */
import type { Tensor } from '@fewstep/tensor';
import { silu, timestepEmbedding } from '@fewstep/kernels';
import { Linear } from '../layers/linear.js';
import type { WeightScope } from '../modeling/weights.js';

/** diffusers `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)`: no weights. */
export class Timesteps {
  constructor(readonly numChannels: number, readonly flipSinToCos: boolean, readonly downscaleFreqShift: number) {}

  /**
   * timesteps f32 [B] → [B, numChannels] in `dtype`. diffusers casts the timesteps to float32 and
   * computes the embedding in float32 whatever the model dtype, then casts.
   */
  forward(timesteps: Tensor, dtype: 'f32' | 'f16'): Tensor {
    return timestepEmbedding(timesteps, this.numChannels, { flipSinToCos: this.flipSinToCos, downscaleFreqShift: this.downscaleFreqShift }, dtype);
  }
}

/** diffusers `TimestepEmbedding(in_channels, time_embed_dim, act_fn='silu')`. */
export class TimestepEmbedding {
  private constructor(readonly linear_1: Linear, readonly linear_2: Linear) {}

  static build(w: WeightScope, inChannels: number, timeEmbedDim: number, outDim?: number): TimestepEmbedding {
    return new TimestepEmbedding(Linear.build(w.pp('linear_1'), inChannels, timeEmbedDim), Linear.build(w.pp('linear_2'), timeEmbedDim, outDim ?? timeEmbedDim));
  }

  forward(x: Tensor): Tensor {
    return x.device.scope(() => this.linear_2.forward(silu(this.linear_1.forward(x))));
  }
}
