/**
 * What decoding one image may cost, in one place. A small hostile file must not take unbounded memory or
 * time: a 1 MB PNG can declare 16384×16384 RGBA (4 GiB of pixels), a 261 KB zlib stream inflates to 256 MB.
 * decodePng checks the declared size against these limits at IHDR, before anything is inflated, then
 * inflates as a stream that stops at exactly the bytes the declared size needs (text: at the text limits),
 * and the CLI gives libvips (JPEG, WebP, interlaced PNG) the same pixel limit. A file over a limit is one
 * ResourceLimitError (code 'resource_limit') naming it.
 *
 * Every value is far above what fewstep needs: it generates at most 4096×4096 (MAX_IMAGE_SIDE), and its
 * own metadata is a few KB of text.
 */
export interface ImageLimits {
  readonly maxSide: number;
  readonly maxPixels: number;
  readonly textChunkBytes: number;
  readonly textBytes: number;
  readonly textChunks: number;
  readonly decompressedBytes: number;
}

export const IMAGE_LIMITS: ImageLimits = Object.freeze({
  /** Largest width or height decodable (images for generation are held to MAX_IMAGE_SIDE = 4096 by their callers). */
  maxSide: 16384,
  /** Most pixels in one image (4096×4096): up to 128 MiB of 16-bit RGBA scanlines, 48 MiB of RGB out. */
  maxPixels: 4096 * 4096,
  /** Longest text of one tEXt / zTXt / iTXt chunk, in bytes (as stored, or after inflating). */
  textChunkBytes: 4 * 2 ** 20,
  /** All text of one file together (keywords and values), in bytes. */
  textBytes: 16 * 2 ** 20,
  /** Most text chunks in one file. */
  textChunks: 1024,
  /**
   * All inflated bytes of one file together: the image data (exactly the scanlines its size needs; at most
   * maxPixels × 8 bytes plus a filter byte per row) and the text.
   */
  decompressedBytes: 160 * 2 ** 20,
});

