/**
 * diffusers v0.25.1 `VaeImageProcessor` (image_processor.py), the parts StableDiffusionPipeline uses,
 * on the CPU with float32 rounding where torch/numpy round:
 *
 * - postprocess: `(x / 2 + 0.5).clamp(0, 1)` (torch f32) → NCHW → NHWC float image; uint8 =
 *   `(image * 255).round()` (numpy f32 multiply, round half to even) as `numpy_to_pil` does.
 * - preprocess (img2img): uint8 RGB → `/ 255` (f32) → `2x − 1` → [1, 3, H, W].
 *
 * Browser-safe (no node: imports).
 */

import { checkRGBImage, type RGBImage } from '../image/rgb_image.js';

const f = Math.fround;

/** numpy `np.round` / `ndarray.round()`: round half to even. */
export function roundHalfToEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; an exact tie that landed on an odd number goes back down.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface PostprocessResult {
  /** NHWC float32 in [0, 1] (diffusers `output_type='np'`). */
  float: Float32Array;
  /** One uint8 RGB image per batch item (diffusers `output_type='pil'` pixels). */
  images: RGBImage[];
}

/** Decoder output `x` [B, 3, H, W] in [-1, 1] (unclamped) → float NHWC image and uint8 RGB images. */
export function postprocess(x: Float32Array, shape: readonly number[]): PostprocessResult {
  const [B, C, H, W] = shape as [number, number, number, number];
  if (shape.length !== 4 || C !== 3) throw new Error(`postprocess: expected a decoded image [B, 3, H, W], got [${shape.join(', ')}]`);
  if (x.length !== B * C * H * W) throw new Error(`postprocess: ${x.length} values do not fill [${shape.join(', ')}]`);
  const out = new Float32Array(x.length);
  const images: RGBImage[] = [];
  const plane = H * W;
  for (let b = 0; b < B; b++) {
    const data = new Uint8Array(plane * 3);
    for (let c = 0; c < 3; c++) {
      const src = (b * 3 + c) * plane;
      for (let p = 0; p < plane; p++) {
        let v = f(f(x[src + p]! / 2) + 0.5);
        v = v < 0 ? 0 : v > 1 ? 1 : v; // NaN stays NaN (torch.clamp propagates it); it becomes 0 below
        const o = p * 3 + c;
        out[b * plane * 3 + o] = v;
        const u = roundHalfToEven(f(v * 255));
        data[o] = Number.isNaN(u) ? 0 : u;
      }
    }
    images.push({ width: W, height: H, data });
  }
  return { float: out, images };
}

/** uint8 RGB → float32 [1, 3, H, W] in [-1, 1] (`pil_to_numpy` / 255, then `normalize` 2x − 1). */
export function preprocess(img: RGBImage): { data: Float32Array; shape: [number, number, number, number] } {
  checkRGBImage(img);
  const { width: W, height: H, data } = img;
  const plane = H * W;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = f(f(2 * f(data[p * 3 + c]! / 255)) - 1);
  }
  return { data: out, shape: [1, 3, H, W] };
}

/**
 * ControlNet control image: uint8 RGB → float32 [1, 3, H, W] in [0, 1] — diffusers'
 * `VaeImageProcessor(do_convert_rgb=True, do_normalize=False).preprocess` (`/ 255`, no `2x − 1`). No resizing:
 * the image must already have the output size.
 */
export function preprocessControlImage(img: RGBImage): { data: Float32Array; shape: [number, number, number, number] } {
  checkRGBImage(img, 'control image');
  const { width: W, height: H, data } = img;
  const plane = H * W;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = f(data[p * 3 + c]! / 255);
  }
  return { data: out, shape: [1, 3, H, W] };
}

/**
 * 255 − every byte: a sketch drawn black on white becomes white strokes on black. IDKiro's SDXS sketch demo
 * (`demo_sketch.py`) passes `255 - np.array(image)` to the pipeline; fewstep leaves that step to the caller
 * (CLI `--invert-control`), since which polarity the sketch ControlNet expects depends on where the image comes from.
 */
export function invertControlImage(img: RGBImage): RGBImage {
  checkRGBImage(img, 'control image');
  return { width: img.width, height: img.height, data: img.data.map((v) => 255 - v) };
}
