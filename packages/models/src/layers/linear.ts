import type { Tensor } from '@fewstep/tensor';
import { linear } from '@fewstep/kernels';
import type { WeightScope } from '../modeling/weights.js';

/** torch.nn.Linear: weight [out, in], optional bias [out]. */
export class Linear {
  private constructor(readonly weight: Tensor, readonly bias: Tensor | undefined, readonly inFeatures: number, readonly outFeatures: number) {}

  static build(w: WeightScope, inFeatures: number, outFeatures: number, bias = true): Linear {
    const weight = w.get('weight', [outFeatures, inFeatures]);
    const b = bias ? w.get('bias', [outFeatures]) : undefined;
    return new Linear(weight, b, inFeatures, outFeatures);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}
