/**
 * diffusers `upsampling.py`: `Upsample2D` with `use_conv=True` — nearest ×2 (or nearest to an
 * explicit `outputSize`, which the UNet passes when skip shapes are odd) then a 3×3 conv.
 */
import { UnsupportedError, type Tensor } from '@fewstep/tensor';
import { slice, upsampleNearest2x } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import type { WeightScope } from '../modeling/weights.js';

export class Upsample2D {
  private constructor(readonly conv: Conv2d) {}

  static build(w: WeightScope, channels: number, outChannels: number): Upsample2D {
    return new Upsample2D(Conv2d.build(w.pp('conv'), channels, outChannels, { kernel: 3, padding: 1 }));
  }

  /** x [N, C, H, W] → [N, O, 2H, 2W], or [N, O, ...outputSize]. */
  forward(x: Tensor, outputSize?: readonly [number, number]): Tensor {
    return x.device.scope(() => this.conv.forward(resizeNearest(x, outputSize)));
  }
}

/**
 * F.interpolate(mode="nearest") to 2× or to `size`. torch picks source index floor(i·in/out); for
 * out = 2·in that is i/2, and for out = 2·in − 1 (an odd skip that was halved rounding up) it is
 * still floor(i/2), so both are a ×2 upsample cropped to size. Other sizes are not needed by the UNet.
 */
export function resizeNearest(x: Tensor, size?: readonly [number, number]): Tensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  if (!size || (size[0] === 2 * h && size[1] === 2 * w)) return upsampleNearest2x(x);
  const [oh, ow] = size;
  if ((oh !== 2 * h && oh !== 2 * h - 1) || (ow !== 2 * w && ow !== 2 * w - 1)) {
    throw new UnsupportedError(`Upsample2D: nearest resize of ${h}×${w} to ${oh}×${ow} is not supported (only to 2× or 2× − 1)`);
  }
  return x.device.scope(() => {
    let y = upsampleNearest2x(x);
    if (oh !== 2 * h) y = slice(y, 2, 0, oh);
    if (ow !== 2 * w) y = slice(y, 3, 0, ow);
    return y;
  });
}
