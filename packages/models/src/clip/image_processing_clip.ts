/**
 * transformers v4.36 `CLIPImageProcessor` (models/clip/image_processing_clip.py) on 8-bit RGB images:
 *
 * 1. resize (do_resize): `size = {shortest_edge: s}` → the short side becomes s and the long one
 *    `int(s · long / short)` (float64, truncated: transformers' get_resize_output_image_size); `{height, width}`
 *    → exactly that. Through PIL (`Image.resize(..., resample)`, no reducing_gap) on the uint8 image:
 *    resizeRGB here, byte-exact to Pillow.
 * 2. center crop (do_center_crop) to crop_size: `top = (h − crop_h) // 2`, `left = (w − crop_w) // 2` (floor
 *    division). An image smaller than the crop is zero-padded first the way transformers' `center_crop` does it
 *    (pad offset `(crop − size) // 2`), which for odd differences can leave the result one pixel short of
 *    crop_size — transformers' own behaviour, kept.
 * 3. rescale (do_rescale): uint8 · rescale_factor in float64 (numpy's uint8 × Python float), stored as float32.
 * 4. normalize (do_normalize): `(x − mean) / std` in float32 (mean and std cast to float32 first).
 * 5. channels first: `pixel_values` [N, 3, H, W] float32.
 *
 * The config is a `preprocessor_config.json` object with its own keys: `size` / `crop_size` as dicts or in the
 * older int form (`"size": 224` means shortest_edge 224, `"crop_size": 224` means 224×224, as transformers'
 * get_size_dict reads them), `resample` as Pillow's code (3 = bicubic). do_convert_rgb is accepted; images here
 * are RGB already (alpha is composited by the decoders, see rgb_image.ts).
 *
 * Browser-safe (no node: imports).
 */

import { InvalidArgumentError, type FileSource } from '@fewstep/tensor';
import { ConfigError } from '../errors.js';
import { resampleFilter, resizeRGB, type ResampleFilter } from '../image/resample.js';
import { checkRGBImage, type RGBImage } from '../image/rgb_image.js';

/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD. */
export const OPENAI_CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** A size dict as transformers' get_size_dict makes it. */
export type ImageSizeDict = { height: number; width: number } | { shortest_edge: number; longest_edge?: number };

/** `preprocessor_config.json` of a CLIP image processor (other keys are ignored, as transformers does). */
export interface CLIPImageProcessorConfigJson {
  do_resize?: boolean;
  size?: number | readonly number[] | Record<string, number>;
  resample?: number | string;
  do_center_crop?: boolean;
  crop_size?: number | readonly number[] | Record<string, number>;
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number | readonly number[];
  image_std?: number | readonly number[];
  do_convert_rgb?: boolean;
  [key: string]: unknown;
}

export interface CLIPImageProcessorOutput {
  /** Float32 [N, 3, H, W], channels first (transformers' `pixel_values`). */
  pixelValues: Float32Array;
  shape: [number, number, number, number];
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** transformers' get_size_dict (+ convert_to_size_dict, is_valid_size_dict). */
function getSizeDict(value: unknown, defaultToSquare: boolean, param: string): ImageSizeDict {
  const bad = (why: string) => new ConfigError(`CLIPImageProcessor: ${param} ${JSON.stringify(value)} ${why}`);
  if (isInt(value)) return defaultToSquare ? { height: value, width: value } : { shortest_edge: value };
  if (Array.isArray(value)) {
    if (value.length !== 2 || !value.every(isInt)) throw bad('is not an int, an [height, width] pair or a size dict');
    return { height: value[0] as number, width: value[1] as number };
  }
  if (value === null || typeof value !== 'object') throw bad('is not an int, an [height, width] pair or a size dict');
  const d = value as Record<string, unknown>;
  const keys = Object.keys(d).sort().join(',');
  if (!['height,width', 'shortest_edge', 'longest_edge,shortest_edge', 'longest_edge'].includes(keys)) {
    throw bad("must have the keys {height, width}, {shortest_edge}, {shortest_edge, longest_edge} or {longest_edge}");
  }
  for (const [k, v] of Object.entries(d)) if (!isInt(v) || v < 1) throw bad(`has ${k} = ${JSON.stringify(v)}, not a positive integer`);
  return d as ImageSizeDict;
}

function channelList(value: unknown, fallback: readonly number[], param: string): [number, number, number] {
  if (value === undefined || value === null) return [...fallback] as [number, number, number];
  if (typeof value === 'number' && Number.isFinite(value)) return [value, value, value];
  if (Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    return [...value] as [number, number, number];
  }
  throw new ConfigError(`CLIPImageProcessor: ${param} ${JSON.stringify(value)} is not a number or a list of 3 numbers (one per RGB channel)`);
}

function flag(value: unknown, fallback: boolean, param: string): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new ConfigError(`CLIPImageProcessor: ${param} ${JSON.stringify(value)} is not true or false`);
  return value;
}

/** Python's `a // b` for integers. */
const floorDiv = (a: number, b: number) => Math.floor(a / b);

/** transformers' get_resize_output_image_size for a size dict → [height, width]. */
export function clipResizeOutputSize(height: number, width: number, size: ImageSizeDict): [number, number] {
  if ('shortest_edge' in size) {
    // CLIPImageProcessor.resize uses shortest_edge only (longest_edge is not passed on as max_size).
    const s = size.shortest_edge;
    const [short, long] = width <= height ? [width, height] : [height, width];
    const newLong = Math.trunc((s * long) / short);
    return width <= height ? [newLong, s] : [s, newLong];
  }
  if ('height' in size) return [size.height, size.width];
  throw new InvalidArgumentError("CLIPImageProcessor: size must contain either 'shortest_edge' or 'height' and 'width'", 'size');
}

/**
 * transformers' image_transforms.center_crop on an RGB image: crop at ((h − ch) // 2, (w − cw) // 2); when the
 * image is smaller than the crop in either direction it is zero-padded first, exactly as transformers pads.
 */
export function centerCropRGB(image: RGBImage, cropHeight: number, cropWidth: number): RGBImage {
  const { width: W, height: H } = image;
  let top = floorDiv(H - cropHeight, 2);
  let bottom = top + cropHeight;
  let left = floorDiv(W - cropWidth, 2);
  let right = left + cropWidth;
  let src = image;
  let newH = H, newW = W;
  if (!(top >= 0 && bottom <= H && left >= 0 && right <= W)) {
    newH = Math.max(cropHeight, H);
    newW = Math.max(cropWidth, W);
    const padded = new Uint8Array(newH * newW * 3);
    const topPad = floorDiv(newH - H, 2);
    const leftPad = floorDiv(newW - W, 2);
    for (let y = 0; y < H; y++) padded.set(image.data.subarray(y * W * 3, (y + 1) * W * 3), ((y + topPad) * newW + leftPad) * 3);
    src = { width: newW, height: newH, data: padded };
    top += topPad;
    bottom += topPad;
    left += leftPad;
    right += leftPad;
    top = Math.max(0, top);
    bottom = Math.min(newH, bottom);
    left = Math.max(0, left);
    right = Math.min(newW, right);
  }
  const outW = Math.max(0, right - left), outH = Math.max(0, bottom - top);
  const data = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    const s = ((y + top) * newW + left) * 3;
    data.set(src.data.subarray(s, s + outW * 3), y * outW * 3);
  }
  return { width: outW, height: outH, data };
}

/** transformers' `CLIPImageProcessor`, constructed from a `preprocessor_config.json` object. */
export class CLIPImageProcessor {
  readonly doResize: boolean;
  readonly size: ImageSizeDict;
  readonly resample: ResampleFilter;
  readonly doCenterCrop: boolean;
  readonly cropSize: { height: number; width: number };
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  readonly imageMean: [number, number, number];
  readonly imageStd: [number, number, number];
  readonly doConvertRgb: boolean;

  /** Missing keys take transformers' defaults (shortest_edge 224, bicubic, 224×224 crop, 1/255, OpenAI mean/std). */
  constructor(config: CLIPImageProcessorConfigJson = {}) {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new ConfigError(`CLIPImageProcessor: the config must be a JSON object, got ${JSON.stringify(config)}`);
    }
    this.doResize = flag(config.do_resize, true, 'do_resize');
    let size = getSizeDict(config.size ?? { shortest_edge: 224 }, false, 'size');
    const r = config.resample ?? 3;
    try {
      this.resample = resampleFilter(r);
    } catch {
      throw new ConfigError(`CLIPImageProcessor: resample ${JSON.stringify(r)} is not a Pillow filter (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)`);
    }
    this.doCenterCrop = flag(config.do_center_crop, true, 'do_center_crop');
    const crop = getSizeDict(config.crop_size ?? { height: 224, width: 224 }, true, 'crop_size');
    if (!('height' in crop)) throw new ConfigError(`CLIPImageProcessor: crop_size must have 'height' and 'width', got ${JSON.stringify(config.crop_size)}`);
    this.cropSize = { height: crop.height, width: crop.width };
    this.doRescale = flag(config.do_rescale, true, 'do_rescale');
    const rf = config.rescale_factor ?? 1 / 255;
    if (typeof rf !== 'number' || !Number.isFinite(rf)) throw new ConfigError(`CLIPImageProcessor: rescale_factor ${JSON.stringify(rf)} is not a number`);
    this.rescaleFactor = rf;
    this.doNormalize = flag(config.do_normalize, true, 'do_normalize');
    this.imageMean = channelList(config.image_mean, OPENAI_CLIP_MEAN, 'image_mean');
    this.imageStd = channelList(config.image_std, OPENAI_CLIP_STD, 'image_std');
    this.doConvertRgb = flag(config.do_convert_rgb, true, 'do_convert_rgb');
    // transformers 4.36: "for backwards compatibility of KOSMOS-2" a `use_square_size` key (any value) makes
    // the resize square at shortest_edge.
    if ('use_square_size' in config) {
      if (!('shortest_edge' in size)) throw new ConfigError('CLIPImageProcessor: use_square_size needs size.shortest_edge');
      size = { height: size.shortest_edge, width: size.shortest_edge };
    }
    this.size = size;
    if (this.doResize && 'longest_edge' in this.size && !('shortest_edge' in this.size)) {
      throw new ConfigError("CLIPImageProcessor: size must contain either 'shortest_edge' or 'height' and 'width'");
    }
  }

  /** Reads `preprocessor_config.json` from a model folder (or its `feature_extractor/` subfolder, as diffusers keeps it). */
  static async fromFolder(files: FileSource, dir: string): Promise<CLIPImageProcessor> {
    let path = files.join(dir, 'preprocessor_config.json');
    if (!(await files.exists(path))) {
      const sub = files.join(dir, 'feature_extractor', 'preprocessor_config.json');
      if (await files.exists(sub)) path = sub;
    }
    let json: unknown;
    try {
      json = JSON.parse(await files.readText(path));
    } catch (e) {
      throw new ConfigError(`${path}: ${e instanceof SyntaxError ? `not valid JSON (${e.message})` : `cannot be read (${(e as Error).message})`}`);
    }
    return new CLIPImageProcessor(json as CLIPImageProcessorConfigJson);
  }

  /** Step 1: the resized uint8 image (a copy when the size does not change). */
  resize(image: RGBImage): RGBImage {
    const [h, w] = clipResizeOutputSize(image.height, image.width, this.size);
    return resizeRGB(image, w, h, this.resample);
  }

  /** Step 2: the center crop to crop_size. */
  centerCrop(image: RGBImage): RGBImage {
    return centerCropRGB(image, this.cropSize.height, this.cropSize.width);
  }

  /** Steps 3–5 on one resized, cropped image: float32 [3, H, W] written into `out` at `offset`. */
  private toPixelValues(image: RGBImage, out: Float32Array, offset: number): void {
    const f = Math.fround;
    const plane = image.width * image.height;
    const mean = this.imageMean.map(f), std = this.imageStd.map(f);
    const scale = this.rescaleFactor;
    const d = image.data;
    for (let c = 0; c < 3; c++) {
      const m = mean[c]!, s = std[c]!;
      const o = offset + c * plane;
      for (let p = 0; p < plane; p++) {
        let v = d[p * 3 + c]!;
        if (this.doRescale) v = f(v * scale);
        if (this.doNormalize) v = f(f(v - m) / s);
        out[o + p] = v;
      }
    }
  }

  /** `processor(images, return_tensors="pt").pixel_values` as float32 [N, 3, H, W]. */
  preprocess(images: RGBImage | readonly RGBImage[]): CLIPImageProcessorOutput {
    const list: readonly RGBImage[] = Array.isArray(images) ? images : [images as RGBImage];
    if (list.length === 0) throw new InvalidArgumentError('CLIPImageProcessor.preprocess: no images', 'images');
    const done = list.map((img, i) => {
      checkRGBImage(img, `images[${i}]`);
      let x = img;
      if (this.doResize) x = this.resize(x);
      if (this.doCenterCrop) x = this.centerCrop(x);
      return x;
    });
    const { width: W, height: H } = done[0]!;
    const odd = done.findIndex((x) => x.width !== W || x.height !== H);
    if (odd >= 0) {
      throw new InvalidArgumentError(
        `CLIPImageProcessor.preprocess: images[${odd}] comes out ${done[odd]!.width}×${done[odd]!.height} but images[0] ${W}×${H}; they cannot be batched (use do_center_crop or a fixed size)`,
        'images',
      );
    }
    const plane = 3 * W * H;
    const pixelValues = new Float32Array(done.length * plane);
    done.forEach((x, i) => this.toPixelValues(x, pixelValues, i * plane));
    return { pixelValues, shape: [done.length, 3, H, W] };
  }
}
