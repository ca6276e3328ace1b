// CPU reference for conv2d (NCHW, zero padding): plain loops, float64 accumulation.
import type { Shape } from '../tensor.js';

/** x [N, C, H, W] ⊛ w [O, C, kh, kw] (+ bias [O]) → [values, shape [N, O, H', W']]. */
export function cpuConv2d(
  x: ArrayLike<number>, xs: Shape, w: ArrayLike<number>, ws: Shape,
  opts: { stride?: number | undefined; padding?: number | undefined; bias?: ArrayLike<number> | undefined } = {},
): [Float32Array, number[]] {
  const { stride = 1, padding = 0, bias } = opts;
  const [N, C, H, W] = xs as [number, number, number, number];
  const [O, , KH, KW] = ws as [number, number, number, number];
  const OH = Math.floor((H + 2 * padding - KH) / stride) + 1;
  const OW = Math.floor((W + 2 * padding - KW) / stride) + 1;
  const y = new Float32Array(N * O * OH * OW);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = bias ? bias[o]! : 0;
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < KH; ky++) {
              const ih = oh * stride - padding + ky;
              if (ih < 0 || ih >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const iw = ow * stride - padding + kx;
                if (iw < 0 || iw >= W) continue;
                s += x[((n * C + c) * H + ih) * W + iw]! * w[((o * C + c) * KH + ky) * KW + kx]!;
              }
            }
          y[((n * O + o) * OH + oh) * OW + ow] = s;
        }
  return [y, [N, O, OH, OW]];
}
