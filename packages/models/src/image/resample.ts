/**
 * Pillow's `Image.resize(size, resample, box)` on 8-bit RGB images, byte for byte (Pillow 9.4, the version
 * diffusers 0.25.1 / transformers 4.36 were checked against; the algorithm has not changed since Pillow 4.x).
 *
 * Convolution filters (box, bilinear, hamming, bicubic, lanczos) follow libImaging's ImagingResample:
 *
 * - Separable, horizontal pass first, then vertical. The horizontal pass only runs over the source rows
 *   the vertical pass will read; a pass whose size and box span are unchanged is skipped (no pass at all
 *   returns a copy).
 * - Per output pixel: `center = in0 + (i + 0.5) · scale`, `scale = (in1 − in0) / out` (box edges are
 *   float32); when shrinking the filter is stretched by `scale` (antialiasing): support · max(scale, 1),
 *   taps from `trunc(center − support + 0.5)` to `trunc(center + support + 0.5)` clipped to the image,
 *   weights `filter((j − center + 0.5) / max(scale, 1))` normalised to sum 1 (in float64).
 * - 8-bit input: weights in 22-bit fixed point (round half away from zero), sums start at 2^21 (rounding),
 *   `>> 22`, clipped to 0..255; the horizontal pass is stored as uint8 before the vertical one.
 * - bicubic is Keys' cubic with a = −0.5 (support 2), lanczos is sinc(x)·sinc(x/3) (support 3), bilinear
 *   the triangle (support 1), hamming sinc(x)·(0.54 + 0.46·cos πx) (support 1), box (support 0.5).
 *
 * Nearest is not a convolution in Pillow: `resize` maps it to an affine transform (ImagingScaleAffine):
 * source x = trunc(box0 + (box2 − box0)/w · 0.5 + i · (box2 − box0)/w), the step added up in float64.
 *
 * `reducing_gap` (Pillow's optional pre-shrink with `Image.reduce`) is not implemented: `resize` does not
 * use it unless asked (transformers and diffusers do not ask), and `box` is Pillow's source rectangle
 * (float, may be empty in one direction: diffusers' fill bands use that).
 *
 * Browser-safe (no node: imports).
 */

import { InvalidArgumentError } from '@fewstep/tensor';
import { checkRGBImage, type RGBImage } from './rgb_image.js';

/** Pillow's resampling filters (`PIL.Image.Resampling`, lower-case). */
export type ResampleFilter = 'nearest' | 'box' | 'bilinear' | 'hamming' | 'bicubic' | 'lanczos';

/** Pillow's integer codes (`Image.Resampling.X.value`, as `resample` in preprocessor configs) → filter. */
export const PIL_RESAMPLE_CODES: Readonly<Record<number, ResampleFilter>> = {
  0: 'nearest',
  1: 'lanczos',
  2: 'bilinear',
  3: 'bicubic',
  4: 'box',
  5: 'hamming',
};

/** A filter from a Pillow code (0..5) or name (any case; 'antialias' is Pillow's old name of lanczos). */
export function resampleFilter(value: number | string, field = 'resample'): ResampleFilter {
  if (typeof value === 'number') {
    const f = PIL_RESAMPLE_CODES[value];
    if (f) return f;
  } else if (typeof value === 'string') {
    const v = value.toLowerCase();
    if (v === 'antialias') return 'lanczos';
    if (v === 'linear') return 'bilinear';
    if (v === 'cubic') return 'bicubic';
    if ((Object.values(PIL_RESAMPLE_CODES) as string[]).includes(v)) return v as ResampleFilter;
  }
  throw new InvalidArgumentError(
    `${field}: unknown resampling filter ${JSON.stringify(value)} (Pillow's 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)`,
    field,
  );
}

interface Filter {
  fn: (x: number) => number;
  support: number;
}

// float32 constants as C's `0.54f` / `0.46f`, promoted to double.
const F054 = Math.fround(0.54);
const F046 = Math.fround(0.46);

function sinc(x: number): number {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

const FILTERS: Record<Exclude<ResampleFilter, 'nearest'>, Filter> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    fn: (x) => {
      if (x < 0) x = -x;
      return x < 1 ? 1 - x : 0;
    },
  },
  hamming: {
    support: 1,
    fn: (x) => {
      if (x < 0) x = -x;
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (F054 + F046 * Math.cos(x));
    },
  },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      if (x < 0) x = -x;
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/** Per output pixel: first source index, tap count, and `ksize` fixed-point weights. */
interface Coeffs {
  ksize: number;
  bounds: Int32Array; // [xmin, count] per output pixel
  weights: Int32Array; // outSize * ksize, 22-bit fixed point
}

/** libImaging precompute_coeffs + normalize_coeffs_8bpc for one axis (in0/in1: float32 box edges). */
function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number, filter: Filter): Coeffs {
  const scale = Math.fround(in1 - in0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      let w = k[x]!;
      if (ww !== 0) w /= ww;
      // (int)(±0.5 + w · 2^22): round half away from zero, as C's truncating cast does it.
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

/** clip8(ss): `ss >> 22` clamped to 0..255. */
function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass over source rows [y0, y0 + rows) of an RGB image `inW` wide → `outW` × rows. */
function resampleHorizontal(src: Uint8Array, inW: number, y0: number, rows: number, outW: number, c: Coeffs): Uint8Array {
  const out = new Uint8Array(outW * rows * 3);
  const { ksize, bounds, weights } = c;
  for (let yy = 0; yy < rows; yy++) {
    const rowIn = (yy + y0) * inW * 3;
    const rowOut = yy * outW * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2]!;
      const n = bounds[xx * 2 + 1]!;
      const kb = xx * ksize;
      let s0 = HALF, s1 = HALF, s2 = HALF;
      let p = rowIn + xmin * 3;
      for (let x = 0; x < n; x++, p += 3) {
        const w = weights[kb + x]!;
        s0 += src[p]! * w;
        s1 += src[p + 1]! * w;
        s2 += src[p + 2]! * w;
      }
      const o = rowOut + xx * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/** Vertical pass: `src` is `w` wide; output row yy reads rows bounds[yy] − yShift … */
function resampleVertical(src: Uint8Array, w: number, outH: number, c: Coeffs, yShift: number): Uint8Array {
  const out = new Uint8Array(w * outH * 3);
  const { ksize, bounds, weights } = c;
  const stride = w * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2]! - yShift;
    const n = bounds[yy * 2 + 1]!;
    const kb = yy * ksize;
    const rowOut = yy * stride;
    for (let i = 0; i < stride; i++) {
      let s = HALF;
      let p = ymin * stride + i;
      for (let y = 0; y < n; y++, p += stride) s += src[p]! * weights[kb + y]!;
      out[rowOut + i] = clip8(s);
    }
  }
  return out;
}

/** Pillow's `resize` with NEAREST: ImagingScaleAffine, the source position stepped in float64. */
function resizeNearest(img: RGBImage, width: number, height: number, box: readonly number[]): Uint8Array {
  const [b0, b1, b2, b3] = box as [number, number, number, number];
  const a0 = Math.fround(b2 - b0) / width;
  const a4 = Math.fround(b3 - b1) / height;
  const coord = (v: number) => (v < 0 ? -1 : Math.trunc(v));
  const xin = new Int32Array(width);
  let xo = b0 + a0 * 0.5;
  for (let x = 0; x < width; x++) {
    xin[x] = coord(xo);
    xo += a0;
  }
  const out = new Uint8Array(width * height * 3); // zero fill where the source is outside, as Pillow's fill=1
  let yo = b1 + a4 * 0.5;
  for (let y = 0; y < height; y++) {
    const yi = coord(yo);
    yo += a4;
    if (yi < 0 || yi >= img.height) continue;
    const rowIn = yi * img.width * 3;
    for (let x = 0; x < width; x++) {
      const xi = xin[x]!;
      if (xi < 0 || xi >= img.width) continue;
      const s = rowIn + xi * 3;
      const o = (y * width + x) * 3;
      out[o] = img.data[s]!;
      out[o + 1] = img.data[s + 1]!;
      out[o + 2] = img.data[s + 2]!;
    }
  }
  return out;
}

export interface ResizeOptions {
  /**
   * Pillow's `box`: the source rectangle [left, upper, right, lower] to scale (float; stored as float32 as
   * Pillow does). Default the whole image. It may be empty in one direction (right = left or lower = upper).
   */
  box?: readonly [number, number, number, number];
}

/**
 * `PIL.Image.resize((width, height), resample=filter, box=box)` on an RGB image (8-bit, 3 bytes per
 * pixel, row-major); returns a new image (a copy when nothing changes). Default filter: bicubic, as
 * Pillow's default for RGB.
 */
export function resizeRGB(
  image: RGBImage,
  width: number,
  height: number,
  filter: ResampleFilter = 'bicubic',
  options: ResizeOptions = {},
): RGBImage {
  checkRGBImage(image);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new InvalidArgumentError(`resizeRGB: width and height must be positive integers, got ${width}×${height}`, 'size');
  }
  if (width * height > 2 ** 28) throw new InvalidArgumentError(`resizeRGB: ${width}×${height} is too large`, 'size');
  if (filter !== 'nearest' && !(filter in FILTERS)) resampleFilter(filter as string, 'filter');
  const W = image.width, H = image.height;
  let box: [number, number, number, number] = [0, 0, W, H];
  if (options.box !== undefined) {
    const b = options.box;
    if (b.length !== 4 || !b.every((v) => Number.isFinite(v))) throw new InvalidArgumentError(`resizeRGB: box must be 4 finite numbers, got [${b.join(', ')}]`, 'box');
    box = b.map((v) => Math.fround(v)) as [number, number, number, number];
    // Pillow's checks, in its order and words.
    if (box[0] < 0 || box[1] < 0) throw new InvalidArgumentError("resizeRGB: box offset can't be negative", 'box');
    if (box[2] > W || box[3] > H) throw new InvalidArgumentError("resizeRGB: box can't exceed original image size", 'box');
    if (box[2] - box[0] < 0 || box[3] - box[1] < 0) throw new InvalidArgumentError("resizeRGB: box can't be empty", 'box');
  }
  const fullBox = box[0] === 0 && box[1] === 0 && box[2] === W && box[3] === H;
  if (width === W && height === H && fullBox) return { width, height, data: image.data.slice() };
  if (filter === 'nearest') return { width, height, data: resizeNearest(image, width, height, box) };

  const f = FILTERS[filter];
  const needH = width !== W || box[0] !== 0 || box[2] !== width;
  const needV = height !== H || box[1] !== 0 || box[3] !== height;
  const vert = precomputeCoeffs(H, box[1], box[3], height, f);
  let data = image.data;
  let w = W;
  let yShift = 0;
  if (needH) {
    const yFirst = vert.bounds[0]!;
    const yLast = vert.bounds[(height - 1) * 2]! + vert.bounds[(height - 1) * 2 + 1]!;
    const horiz = precomputeCoeffs(W, box[0], box[2], width, f);
    data = resampleHorizontal(data, W, yFirst, yLast - yFirst, width, horiz);
    w = width;
    yShift = yFirst;
  }
  if (needV) data = resampleVertical(data, w, height, vert, yShift);
  else if (data === image.data) data = data.slice();
  return { width, height, data };
}
