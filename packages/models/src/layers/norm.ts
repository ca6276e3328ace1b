import type { Tensor } from '@fewstep/tensor';
import { groupNorm, layerNorm } from '@fewstep/kernels';
import type { WeightScope } from '../modeling/weights.js';

/** torch.nn.GroupNorm (affine). `forward(x, true)` fuses the SiLU that usually follows. */
export class GroupNorm {
  private constructor(readonly weight: Tensor, readonly bias: Tensor, readonly groups: number, readonly eps: number) {}

  static async load(w: WeightScope, groups: number, channels: number, eps: number): Promise<GroupNorm> {
    if (channels % groups) throw new Error(`GroupNorm at "${w.prefix}": ${channels} channels are not divisible by ${groups} groups`);
    return new GroupNorm(await w.get('weight', [channels]), await w.get('bias', [channels]), groups, eps);
  }

  forward(x: Tensor, silu = false): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps, { silu });
  }
}

/** torch.nn.LayerNorm over the last dim. */
export class LayerNorm {
  private constructor(readonly weight: Tensor, readonly bias: Tensor, readonly eps: number) {}

  static async load(w: WeightScope, dim: number, eps: number): Promise<LayerNorm> {
    return new LayerNorm(await w.get('weight', [dim]), await w.get('bias', [dim]), eps);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
