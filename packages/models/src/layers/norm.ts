import type { Tensor } from '@fewstep/tensor';
import { groupNorm, layerNorm } from '@fewstep/kernels';
import type { WeightScope } from '../modeling/weights.js';
import { ConfigError } from '../errors.js';

/** torch.nn.GroupNorm (affine). `forward(x, true)` fuses the SiLU that usually follows. */
export class GroupNorm {
  private constructor(readonly weight: Tensor, readonly bias: Tensor, readonly groups: number, readonly eps: number) {}

  static build(w: WeightScope, groups: number, channels: number, eps: number): GroupNorm {
    if (channels % groups) throw new ConfigError(`GroupNorm at "${w.prefix}": ${channels} channels are not divisible by ${groups} groups`);
    return new GroupNorm(w.get('weight', [channels]), w.get('bias', [channels]), groups, eps);
  }

  forward(x: Tensor, silu = false): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps, { silu });
  }
}

/** torch.nn.LayerNorm over the last dim. */
export class LayerNorm {
  private constructor(readonly weight: Tensor, readonly bias: Tensor, readonly eps: number) {}

  static build(w: WeightScope, dim: number, eps: number): LayerNorm {
    return new LayerNorm(w.get('weight', [dim]), w.get('bias', [dim]), eps);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
