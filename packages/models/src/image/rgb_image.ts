/**
 * The one image type of fewstep: 8-bit RGB, row-major, 3 bytes per pixel, no alpha. Decoders return it
 * (PNG here; JPEG/WebP in the CLI; `createImageBitmap` + a canvas in browsers), the pipeline takes and
 * returns it, the encoders write it. Browser-safe.
 */
import { InvalidArgumentError } from '@fewstep/tensor';

export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Checks an RGBImage's fields and buffer size; `what` names it in errors (and is the error's `field`). */
export function checkRGBImage(img: RGBImage, what = 'image'): void {
  if (!img || typeof img !== 'object') throw new InvalidArgumentError(`${what}: expected { width, height, data: Uint8Array }`, what);
  const { width, height, data } = img;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new InvalidArgumentError(`${what}: width and height must be positive integers, got ${width}×${height}`, what);
  }
  if (!((data as unknown) instanceof Uint8Array)) throw new InvalidArgumentError(`${what}: data must be a Uint8Array of RGB bytes`, what);
  if (data.length !== width * height * 3) {
    throw new InvalidArgumentError(`${what}: data has ${data.length} bytes, expected ${width}×${height}×3 = ${width * height * 3} (RGB, no alpha)`, what);
  }
}

/** One 8-bit channel `c` with alpha `a` over white: round((c·a + 255·(255 − a)) / 255); opaque stays as is. */
export function compositeOverWhite(c: number, a: number): number {
  return a === 255 ? c : Math.round((c * a + 255 * (255 - a)) / 255);
}

/**
 * RGBA bytes (a canvas' ImageData, a decoder's output) → RGB, alpha composited over white — what the CLI
 * and the page do with transparent PNGs (PIL's `convert("RGB")` would drop alpha instead; white keeps a
 * transparent sketch readable).
 */
export function rgbaToRGB(width: number, height: number, rgba: Uint8Array | Uint8ClampedArray): RGBImage {
  const n = width * height;
  if (rgba.length !== n * 4) throw new InvalidArgumentError(`rgbaToRGB: ${rgba.length} bytes for ${width}×${height} RGBA (expected ${n * 4})`, 'rgba');
  const data = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    const a = rgba[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) data[p * 3 + c] = compositeOverWhite(rgba[p * 4 + c]!, a);
  }
  return { width, height, data };
}
