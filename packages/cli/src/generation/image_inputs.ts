/**
 * Input files of generate: images (--init-image, --control-image, --init-images) and latent tensors
 * (--latents, --init-latents). Only the files themselves are checked here (readable, a PNG/JPEG/WebP image,
 * a float "latents" tensor); whether their sizes and shapes fit the request is resolveGenerateOptions' call.
 *
 * PNGs are decoded by @fewstep/models' decodePng (exact, no native code); JPEG and WebP — and the interlaced
 * PNGs decodePng refuses — by sharp (libvips), imported only when such a file comes, EXIF orientation
 * applied. Either way transparency is composited over white by the same rule (models' rgbaToRGB / decodePng),
 * and the same size limits hold (models' IMAGE_LIMITS; images for generation: MAX_IMAGE_SIDE a side, the
 * --width/--height limit), checked on the declared size before anything is decoded.
 */
import { readFile, stat } from 'node:fs/promises';
import { FileFormatError, ResourceLimitError, SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { IMAGE_LIMITS, MAX_IMAGE_SIDE, decodePng, rgbaToRGB, type HostTensor, type PngDecodeLimits, type RGBImage } from '@fewstep/models';
import { UsageError } from '../args.js';

export type ImageFormat = 'png' | 'jpeg' | 'webp';

/** The format by the file's first bytes (not its name). */
export function sniffImageFormat(b: Uint8Array): ImageFormat | null {
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  const ascii = (o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 4) === 'WEBP') return 'webp';
  return null;
}

const NAMES: Record<ImageFormat, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP' };
const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

/** sharp, loaded on first use (a native module: `fewstep --help` and PNG-only runs never load it). */
export async function loadSharp(): Promise<(typeof import('sharp'))['default']> {
  return (await import('sharp')).default;
}

/**
 * Any image sharp reads → RGB (EXIF orientation applied, alpha over white). The declared size is checked against
 * the limits from the header first (ResourceLimitError naming `name`); libvips gets the pixel limit too.
 */
async function decodeWithSharp(bytes: Uint8Array, name: string, limits: PngDecodeLimits): Promise<RGBImage> {
  const sharp = await loadSharp();
  const maxSide = limits.maxSide ?? IMAGE_LIMITS.maxSide, maxPixels = limits.maxPixels ?? IMAGE_LIMITS.maxPixels;
  const { width, height } = await sharp(bytes, { failOn: 'error', limitInputPixels: false }).metadata();
  if (width !== undefined && height !== undefined) {
    if (width > maxSide || height > maxSide) throw new ResourceLimitError(`${name}: the image is ${width}×${height}; at most ${maxSide} pixels a side`);
    if (width * height > maxPixels) throw new ResourceLimitError(`${name}: the image is ${width}×${height} = ${width * height} pixels; at most ${maxPixels}`);
  }
  const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels }).rotate().toColourspace('srgb').ensureAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new FileFormatError('image', `decoded to ${info.channels} channels, expected RGBA`);
  return rgbaToRGB(info.width, info.height, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/**
 * Decodes PNG / JPEG / WebP bytes to RGB; errors are FileFormatErrors naming `name`, or a ResourceLimitError
 * for an image larger than `limits` (IMAGE_LIMITS by default), refused before it is decoded.
 */
export async function decodeImage(bytes: Uint8Array, name: string, limits: PngDecodeLimits = {}): Promise<RGBImage> {
  const format = sniffImageFormat(bytes);
  if (!format) throw new FileFormatError(name, 'not a PNG, JPEG or WebP image');
  if (format === 'png') {
    try {
      const { width, height, data } = await decodePng(bytes, name, limits);
      return { width, height, data };
    } catch (e) {
      // Over a limit: refused, never handed to libvips.
      if (e instanceof ResourceLimitError) throw e;
      // decodePng does not do interlaced (Adam7) PNGs; libvips does. A broken file fails both ways.
      try {
        return await decodeWithSharp(bytes, name, limits);
      } catch (e2) {
        if (e2 instanceof ResourceLimitError) throw e2;
        throw new FileFormatError(name, `not a readable PNG (${firstLine(e).replace(`${name}: `, '').replace(/^png: /, '')})`);
      }
    }
  }
  try {
    return await decodeWithSharp(bytes, name, limits);
  } catch (e) {
    if (e instanceof ResourceLimitError) throw e;
    throw new FileFormatError(name, `not a readable ${NAMES[format]} (${firstLine(e)})`);
  }
}

/**
 * Reads and decodes an image flag to RGB; any problem is one UsageError line naming the flag and file. An
 * image over `maxSide` pixels a side (default MAX_IMAGE_SIDE, the --width/--height limit) is refused from its
 * header, before it is decoded.
 */
export async function readImageFlag(path: string, flag: string, maxSide = MAX_IMAGE_SIDE): Promise<RGBImage> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`${flag} ${path}: ${code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder, not an image file' : `cannot read (${code ?? firstLine(e)})`}`);
  }
  try {
    return await decodeImage(bytes, path, { maxSide });
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${firstLine(e).replace(`${path}: `, '')}`);
  }
}

/** Reads the `latents` tensor of a safetensors file (diffusers' `latents=`): a float tensor, as f32. */
export async function readLatentsFlag(path: string, flag: string): Promise<HostTensor> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) throw new UsageError(`${flag} ${path}: file not found`);
  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(nodeFiles, path);
  } catch (e) {
    throw new UsageError(`${flag} ${path}: not a readable safetensors file (${firstLine(e)})`);
  }
  try {
    if (!f.has('latents')) throw new UsageError(`${flag} ${path}: no tensor named "latents" (found: ${[...f.tensors.keys()].join(', ') || 'none'})`);
    const info = f.info('latents');
    if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new UsageError(`${flag} ${path}: "latents" is ${info.dtype}; expected a float tensor`);
    return { data: (await f.read('latents', 'f32')) as Float32Array, shape: [...info.shape] };
  } finally {
    await f.close();
  }
}
