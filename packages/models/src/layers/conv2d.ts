import type { Tensor } from '@fewstep/tensor';
import { conv2d } from '@fewstep/kernels';
import type { WeightScope } from '../modeling/weights.js';

export interface Conv2dConfig {
  kernel: number;
  stride?: number | undefined;
  padding?: number | undefined;
  bias?: boolean | undefined;
}

/** torch.nn.Conv2d (square kernel, symmetric zero padding): weight [O, C, k, k], bias [O]. */
export class Conv2d {
  private constructor(readonly weight: Tensor, readonly bias: Tensor | undefined, readonly stride: number, readonly padding: number) {}

  static build(w: WeightScope, inChannels: number, outChannels: number, cfg: Conv2dConfig): Conv2d {
    const weight = w.get('weight', [outChannels, inChannels, cfg.kernel, cfg.kernel]);
    const bias = cfg.bias === false ? undefined : w.get('bias', [outChannels]);
    return new Conv2d(weight, bias, cfg.stride ?? 1, cfg.padding ?? 0);
  }

  /** `relu` fuses a following ReLU into the convolution's output pass; `residual` is added before it. */
  forward(x: Tensor, opts: { relu?: boolean | undefined; residual?: Tensor | undefined } = {}): Tensor {
    return conv2d(x, this.weight, { stride: this.stride, padding: this.padding, bias: this.bias, relu: opts.relu, residual: opts.residual });
  }
}
