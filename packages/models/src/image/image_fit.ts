/**
 * diffusers v0.25.1 `VaeImageProcessor.resize(image, height, width, resize_mode)` for PIL input, on 8-bit
 * RGB images, byte for byte (image_processor.py; Pillow's resize through resample.ts):
 *
 * - 'stretch' (resize_mode="default"): `image.resize((width, height), LANCZOS)` (the processor's default
 *   `resample="lanczos"`; `filter` picks another).
 * - 'crop' (resize_mode="crop", `_resize_and_crop`): scale to cover — `src_w = width` when the target is
 *   wider than the source (`width / height > src_w / src_h`), else `src_w = image.width · height // image.height`
 *   (and `src_h` the same way), Lanczos resize, then paste at `(width // 2 − src_w // 2, height // 2 − src_h // 2)`
 *   onto a black canvas: a centre crop whose offset is `src_w // 2 − width // 2` (not `(src_w − width) // 2`).
 * - 'fit' (resize_mode="fill", `_resize_and_fill`): scale to fit inside, paste centred the same way, then
 *   fill the bands: the top band is the resized image's first row(s) stretched — Pillow `resize` with the
 *   empty box (0, 0, width, 0) and Pillow's default filter (bicubic), which blends the rows next to the edge —
 *   and the bottom band the last ones (box (0, h, width, h)) pasted at `fill + src_h`; left/right bands the
 *   same with columns. Where `height − src_h` is odd the bands do not reach: diffusers leaves those pixels
 *   black (the canvas), and so does this.
 *
 * The crop/fill modes always use Lanczos (diffusers hard-codes `PIL_INTERPOLATION["lanczos"]` there).
 * Browser-safe (no node: imports).
 */

import { InvalidArgumentError } from '@fewstep/tensor';
import { checkRGBImage, type RGBImage } from './rgb_image.js';
import { resizeRGB, type ResampleFilter } from './resample.js';

/**
 * How an image of another size is brought to width × height: 'crop' scales to cover and center-crops
 * (diffusers resize_mode="crop"; fewstep's default: proportions kept), 'fit' scales to fit inside and fills
 * the bands from the edges ("fill"), 'stretch' scales to exactly width × height ("default").
 */
export type FitMode = 'stretch' | 'crop' | 'fit';

export const FIT_MODES: readonly FitMode[] = ['crop', 'fit', 'stretch'];

/** diffusers' resize_mode names → FitMode. */
export const DIFFUSERS_RESIZE_MODES: Readonly<Record<string, FitMode>> = { default: 'stretch', crop: 'crop', fill: 'fit' };

/** Python's `a // b` for integers (floor division). */
const floorDiv = (a: number, b: number) => Math.floor(a / b);

/** Pillow `Image.paste(src, (x, y))` of a whole image onto `dst`, clipped to `dst`'s bounds. */
export function pasteRGB(dst: RGBImage, src: RGBImage, x: number, y: number): void {
  const x0 = Math.max(0, x), y0 = Math.max(0, y);
  const x1 = Math.min(dst.width, x + src.width), y1 = Math.min(dst.height, y + src.height);
  if (x1 <= x0 || y1 <= y0) return;
  const n = (x1 - x0) * 3;
  for (let yy = y0; yy < y1; yy++) {
    const s = ((yy - y) * src.width + (x0 - x)) * 3;
    dst.data.set(src.data.subarray(s, s + n), (yy * dst.width + x0) * 3);
  }
}

function blank(width: number, height: number): RGBImage {
  return { width, height, data: new Uint8Array(width * height * 3) };
}

/** Throws what Pillow would for a zero-sized resize target, naming the mode and the computed size. */
function checkSize(w: number, h: number, mode: FitMode, image: RGBImage, width: number, height: number): void {
  if (w < 1 || h < 1) {
    throw new InvalidArgumentError(
      `fitImage: ${image.width}×${image.height} → ${width}×${height} ('${mode}') would resize the image to ${w}×${h}; the aspect ratio is too extreme for that size`,
      'size',
    );
  }
}

/**
 * Resizes `image` to `width`×`height` as diffusers' VaeImageProcessor does for each resize mode (see the
 * module comment). `filter` only applies to 'stretch' (diffusers' `config.resample`, default lanczos).
 */
export function fitImage(image: RGBImage, width: number, height: number, mode: FitMode = 'stretch', filter: ResampleFilter = 'lanczos'): RGBImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new InvalidArgumentError(`fitImage: width and height must be positive integers, got ${width}×${height}`, 'size');
  }
  if (mode === 'stretch') return resizeRGB(image, width, height, filter);
  if (mode !== 'crop' && mode !== 'fit') {
    throw new InvalidArgumentError(`fitImage: mode must be 'stretch', 'crop' or 'fit', got ${JSON.stringify(mode)}`, 'mode');
  }
  checkRGBImage(image);
  const ratio = width / height;
  const srcRatio = image.width / image.height;
  let srcW: number, srcH: number;
  if (mode === 'crop') {
    srcW = ratio > srcRatio ? width : floorDiv(image.width * height, image.height);
    srcH = ratio <= srcRatio ? height : floorDiv(image.height * width, image.width);
  } else {
    srcW = ratio < srcRatio ? width : floorDiv(image.width * height, image.height);
    srcH = ratio >= srcRatio ? height : floorDiv(image.height * width, image.width);
  }
  checkSize(srcW, srcH, mode, image, width, height);
  const resized = resizeRGB(image, srcW, srcH, 'lanczos');
  const res = blank(width, height);
  pasteRGB(res, resized, floorDiv(width, 2) - floorDiv(srcW, 2), floorDiv(height, 2) - floorDiv(srcH, 2));
  if (mode === 'crop') return res;

  if (ratio < srcRatio) {
    const fill = floorDiv(height, 2) - floorDiv(srcH, 2);
    if (fill > 0) {
      pasteRGB(res, resizeRGB(resized, width, fill, 'bicubic', { box: [0, 0, width, 0] }), 0, 0);
      pasteRGB(res, resizeRGB(resized, width, fill, 'bicubic', { box: [0, resized.height, width, resized.height] }), 0, fill + srcH);
    }
  } else if (ratio > srcRatio) {
    const fill = floorDiv(width, 2) - floorDiv(srcW, 2);
    if (fill > 0) {
      pasteRGB(res, resizeRGB(resized, fill, height, 'bicubic', { box: [0, 0, 0, height] }), 0, 0);
      pasteRGB(res, resizeRGB(resized, fill, height, 'bicubic', { box: [resized.width, 0, resized.width, height] }), fill + srcW, 0);
    }
  }
  return res;
}
