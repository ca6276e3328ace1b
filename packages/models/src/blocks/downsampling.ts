/**
 * diffusers `downsampling.py`: `Downsample2D` with `use_conv=True` — a 3×3 stride-2 conv. With
 * `padding=0` (the VAE encoder) diffusers pads right and bottom by one first: F.pad(x, (0, 1, 0, 1)).
 */
import { Tensor } from '@fewstep/tensor';
import { concat } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import type { WeightScope } from '../modeling/weights.js';

export class Downsample2D {
  private constructor(readonly conv: Conv2d, readonly padding: number) {}

  static build(w: WeightScope, channels: number, outChannels: number, padding: number): Downsample2D {
    return new Downsample2D(Conv2d.build(w.pp('conv'), channels, outChannels, { kernel: 3, stride: 2, padding }), padding);
  }

  forward(x: Tensor): Tensor {
    if (this.padding !== 0) return this.conv.forward(x);
    return x.device.scope(() => this.conv.forward(padRightBottom(x)));
  }
}

/** Zero-pads [N, C, H, W] → [N, C, H+1, W+1] (one column right, one row bottom). */
function padRightBottom(x: Tensor): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const zeros = (shape: number[]) => Tensor.from(x.device, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, x.dtype);
  const wide = concat([x, zeros([n, c, h, 1])], 3);
  return concat([wide, zeros([n, c, 1, w + 1])], 2);
}
