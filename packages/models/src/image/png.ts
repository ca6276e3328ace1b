/**
 * PNG encode/decode (ISO/IEC 15948 / W3C PNG 2nd ed.), browser-safe: zlib through the web-standard
 * `CompressionStream('deflate')` / `DecompressionStream('deflate')` (RFC 1950 zlib streams), CRC-32 here.
 *
 * encodePng: 8-bit RGB, non-interlaced; per-row adaptive filter (the minimum-sum-of-absolute-differences
 * heuristic over all five filter types, as libpng's default); metadata as tEXt (Latin-1 values) or iTXt
 * (UTF-8 values, uncompressed).
 *
 * decodePng: gray, gray+alpha, RGB, RGBA and palette; bit depths 1/2/4/8/16 wherever the format allows them
 * (16-bit samples keep their high byte; 1/2/4-bit gray is scaled to 0..255); all five filter types; tRNS.
 * Alpha (an alpha channel, palette tRNS or a tRNS colour key) is composited over WHITE:
 * out = round((c·a + 255·(255 − a)) / 255), so opaque images come back unchanged. Interlaced (Adam7)
 * images are rejected. Every chunk's CRC is checked. tEXt, zTXt and iTXt are returned in `text`.
 * Hostile files cost bounded memory and time (IMAGE_LIMITS, image_limits.ts): the declared size is checked
 * before anything is inflated, and every zlib stream is inflated as a stream with an output cap. Errors are
 * one line naming the file: FileFormatError (broken) or ResourceLimitError (over a limit).
 */

import { FileFormatError, ResourceLimitError } from '@fewstep/tensor';
import { IMAGE_LIMITS, type ImageLimits } from './image_limits.js';
import { compositeOverWhite, type RGBImage } from './rgb_image.js';

export interface DecodedPng extends RGBImage {
  /** tEXt / zTXt / iTXt entries (a later chunk with the same keyword wins). */
  text: Record<string, string>;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

let crcTable: Uint32Array | null = null;
function table(): Uint32Array {
  if (crcTable) return crcTable;
  crcTable = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crcTable[n] = c >>> 0;
  }
  return crcTable;
}

/** CRC-32 (ISO 3309 / ITU-T V.42, as PNG and zlib's crc32), optionally continuing from `crc`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const t = table();
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

async function pipe(data: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

const deflate = (data: Uint8Array) => pipe(data, new CompressionStream('deflate'));

/** A keyword or message from a file, fit for a one-line error: control characters escaped, at most 80 characters. */
function oneLineKey(s: string): string {
  const cut = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  // eslint-disable-next-line no-control-regex
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// ------------------------------------------------------------------------------------------- encoding

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Writes filter type `f` of `row` (prev = the previous raw row or zeros) into out[1..], out[0] = f. */
function filterRow(f: number, row: Uint8Array, prev: Uint8Array, bpp: number, out: Uint8Array): void {
  out[0] = f;
  const n = row.length;
  for (let i = 0; i < n; i++) {
    const x = row[i]!, a = i >= bpp ? row[i - bpp]! : 0, b = prev[i]!, c = i >= bpp ? prev[i - bpp]! : 0;
    let v: number;
    switch (f) {
      case 0: v = x; break;
      case 1: v = x - a; break;
      case 2: v = x - b; break;
      case 3: v = x - ((a + b) >> 1); break;
      default: v = x - paeth(a, b, c);
    }
    out[i + 1] = v & 0xff;
  }
}

/** Sum of the filtered bytes read as signed values (libpng's heuristic). */
function cost(out: Uint8Array): number {
  let s = 0;
  for (let i = 1; i < out.length; i++) {
    const v = out[i]!;
    s += v < 128 ? v : 256 - v;
  }
  return s;
}

const isLatin1Keyword = (k: string) => k.length >= 1 && k.length <= 79 && /^[\x20-\x7e\xa1-\xff]+$/.test(k) && !/^ | $| {2}/.test(k);
const isLatin1Text = (s: string) => /^[\x01-\xff]*$/.test(s);

function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

const latin1 = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/**
 * 8-bit RGB PNG. `metadata` keys must be PNG keywords (1–79 Latin-1 characters, no leading, trailing or double
 * spaces); values that are not Latin-1 (or contain NUL) are written as iTXt (UTF-8).
 */
export async function encodePng(image: RGBImage, metadata: Record<string, string> = {}): Promise<Uint8Array> {
  const { width: w, height: h, data } = image;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || w > 0x7fffffff || h > 0x7fffffff) {
    throw new Error(`encodePng: bad image size ${w}x${h}`);
  }
  if (data.length !== w * h * 3) throw new Error(`encodePng: ${w}x${h} RGB needs ${w * h * 3} bytes, got ${data.length}`);
  const parts: Uint8Array[] = [Uint8Array.from(SIGNATURE)];
  parts.push(chunk('IHDR', Uint8Array.from([...u32(w), ...u32(h), 8, 2, 0, 0, 0])));
  const enc = new TextEncoder();
  for (const [k, v] of Object.entries(metadata)) {
    if (!isLatin1Keyword(k)) throw new Error(`encodePng: metadata key "${k}" is not a PNG keyword (1-79 Latin-1 characters, no leading/trailing/double spaces)`);
    if (isLatin1Text(v)) {
      parts.push(chunk('tEXt', Uint8Array.from([...latin1(k), 0, ...latin1(v)])));
    } else {
      // keyword \0, compression flag 0, method 0, language tag "" \0, translated keyword "" \0, UTF-8 text.
      const head = Uint8Array.from([...latin1(k), 0, 0, 0, 0, 0]);
      const body = enc.encode(v);
      const d = new Uint8Array(head.length + body.length);
      d.set(head);
      d.set(body, head.length);
      parts.push(chunk('iTXt', d));
    }
  }
  const stride = w * 3;
  const raw = new Uint8Array(h * (stride + 1));
  const cand = [0, 1, 2, 3, 4].map(() => new Uint8Array(stride + 1));
  let prev: Uint8Array = new Uint8Array(stride);
  for (let y = 0; y < h; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    let best = 0, bestCost = Infinity;
    for (let f = 0; f < 5; f++) {
      filterRow(f, row, prev, 3, cand[f]!);
      const c = cost(cand[f]!);
      if (c < bestCost) {
        bestCost = c;
        best = f;
      }
    }
    raw.set(cand[best]!, y * (stride + 1));
    prev = row;
  }
  const z = await deflate(raw);
  // IDAT chunks of at most 1 MiB (any split is valid; small chunks stream better).
  for (let o = 0; o < z.length || o === 0; o += 1 << 20) {
    parts.push(chunk('IDAT', z.subarray(o, Math.min(z.length, o + (1 << 20)))));
    if (z.length === 0) break;
  }
  parts.push(chunk('IEND', new Uint8Array(0)));
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// ------------------------------------------------------------------------------------------- decoding

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

/**
 * Inflates the zlib stream made of `parts` as a stream, keeping at most `cap` bytes: it stops reading as soon
 * as the output passes `cap` (`more`: the stream went on; at most one more output chunk was inflated), so a
 * small stream that inflates to gigabytes costs no more than `cap`. `into`, when given, receives the bytes
 * (its length is `cap`); else a buffer grows as output comes. A corrupt stream rejects (the decoder's error).
 */
async function inflateCapped(parts: readonly Uint8Array[], cap: number, into?: Uint8Array): Promise<{ data: Uint8Array; length: number; more: boolean }> {
  const ds = new DecompressionStream('deflate');
  const writer = ds.writable.getWriter();
  const reader = ds.readable.getReader();
  // Fed while read; when reading stops early the writes reject (cancelled), which is expected.
  void (async () => {
    for (const p of parts) await writer.write(p as Uint8Array<ArrayBuffer>);
    await writer.close();
  })().catch(() => {});
  let out = into ?? new Uint8Array(Math.min(cap, 64 * 1024));
  let n = 0;
  let more = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, cap - n);
      if (n + take > out.length) {
        const grown = new Uint8Array(Math.min(cap, Math.max(out.length * 2, n + take)));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      out.set(take === value.length ? value : value.subarray(0, take), n);
      n += take;
      if (take < value.length) {
        more = true;
        break;
      }
    }
  } finally {
    if (more) await reader.cancel().catch(() => {});
  }
  return { data: out, length: n, more };
}

/**
 * What decodePng may cost; each defaults to IMAGE_LIMITS' value. Callers tighten them (the CLI holds images
 * for generation to maxSide = MAX_IMAGE_SIDE).
 */
export type PngDecodeLimits = Partial<ImageLimits>;

/**
 * Decodes a PNG to 8-bit RGB (see the module comment for alpha). Errors are one line starting with `name`:
 * FileFormatError for a broken file, ResourceLimitError for one over `limits` (IMAGE_LIMITS by default: the
 * declared size is checked at IHDR, before anything is inflated; image data is inflated as a stream that stops
 * at exactly the scanline bytes the size needs; text chunks at their limits).
 */
export async function decodePng(bytes: Uint8Array, name = 'image.png', limits: PngDecodeLimits = {}): Promise<DecodedPng> {
  const L: ImageLimits = { ...IMAGE_LIMITS, ...limits };
  const fail = (msg: string): never => {
    throw new FileFormatError(name, msg);
  };
  const over = (msg: string): never => {
    throw new ResourceLimitError(`${name}: ${msg}`);
  };
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    if (bytes.length < 8 && bytes.length > 0 && SIGNATURE.slice(0, bytes.length).every((b, i) => bytes[i] === b)) fail('truncated');
    fail('not a PNG file');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let ihdr: { w: number; h: number; depth: number; color: number; stride: number; rawBytes: number } | null = null;
  let palette: Uint8Array | null = null;
  let trns: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  // A Map, then Object.fromEntries: any keyword ("__proto__" too) is an own key of the result.
  const text = new Map<string, string>();
  let textChunks = 0;
  let textBytes = 0;
  const latin1Dec = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  /** Counts a text chunk's keyword and text against the limits. */
  const countText = (type: string, key: string, n: number) => {
    if (++textChunks > L.textChunks) over(`more than ${L.textChunks} text chunks`);
    if (n > L.textChunkBytes) over(`${type} "${oneLineKey(key)}" holds more than ${L.textChunkBytes} bytes of text`);
    textBytes += key.length + n;
    if (textBytes > L.textBytes) over(`more than ${L.textBytes} bytes of text in all`);
  };
  /** Room left for the text of one compressed chunk: one byte more than allowed, so that "over" is seen. */
  const textRoom = (key: string) => Math.max(0, Math.min(L.textChunkBytes, L.textBytes - textBytes - key.length, L.decompressedBytes - (ihdr?.rawBytes ?? 0) - textBytes - key.length)) + 1;
  const inflateText = async (type: string, key: string, z: Uint8Array): Promise<Uint8Array> => {
    const room = textRoom(key);
    const r = await inflateCapped([z], room).catch(() => fail(`corrupt ${type} data`));
    if (r.more || r.length >= room) {
      if (r.length >= L.textChunkBytes) over(`${type} "${oneLineKey(key)}" inflates to more than ${L.textChunkBytes} bytes of text`);
      over(`the text chunks inflate to more than ${Math.min(L.textBytes, L.decompressedBytes - (ihdr?.rawBytes ?? 0))} bytes in all`);
    }
    return r.data.subarray(0, r.length);
  };
  let ended = false;
  while (!ended) {
    if (pos + 8 > bytes.length) fail('truncated');
    const len = dv.getUint32(pos);
    const type = latin1Dec.decode(bytes.subarray(pos + 4, pos + 8));
    if (!/^[A-Za-z]{4}$/.test(type)) fail(`bad chunk type at byte ${pos}`);
    if (len > 0x7fffffff || pos + 12 + len > bytes.length) fail('truncated');
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (crc32(bytes.subarray(pos + 4, pos + 8 + len)) !== dv.getUint32(pos + 8 + len)) fail(`CRC mismatch in ${type}`);
    pos += 12 + len;
    if (!ihdr && type !== 'IHDR') fail(`first chunk is ${type}, not IHDR`);
    switch (type) {
      case 'IHDR': {
        if (ihdr) fail('more than one IHDR');
        if (len !== 13) fail(`IHDR has ${len} bytes, not 13`);
        const d = new DataView(data.buffer, data.byteOffset, 13);
        const w = d.getUint32(0), h = d.getUint32(4), depth = data[8]!, color = data[9]!;
        if (w === 0 || h === 0 || w > 0x7fffffff || h > 0x7fffffff) fail(`bad image size ${w}x${h}`);
        if (!(color in CHANNELS)) fail(`bad color type ${color}`);
        if (!DEPTHS[color]!.includes(depth)) fail(`bit depth ${depth} is not allowed for color type ${color}`);
        if (data[10] !== 0) fail(`unknown compression method ${data[10]}`);
        if (data[11] !== 0) fail(`unknown filter method ${data[11]}`);
        if (data[12] === 1) fail('interlaced (Adam7) PNGs are not supported');
        if (data[12] !== 0) fail(`unknown interlace method ${data[12]}`);
        // The declared size against the limits, before anything is inflated.
        if (w > L.maxSide || h > L.maxSide) over(`the image is ${w}×${h}; at most ${L.maxSide} pixels a side`);
        if (w * h > L.maxPixels) over(`the image is ${w}×${h} = ${w * h} pixels; at most ${L.maxPixels}`);
        const stride = Math.ceil((w * CHANNELS[color]! * depth) / 8);
        const rawBytes = h * (stride + 1);
        if (rawBytes > L.decompressedBytes) over(`the image is ${w}×${h} at ${depth} bits × ${CHANNELS[color]} channels: ${rawBytes} bytes of image data; at most ${L.decompressedBytes}`);
        ihdr = { w, h, depth, color, stride, rawBytes };
        break;
      }
      case 'PLTE':
        if (len % 3 !== 0 || len === 0 || len > 768) fail(`PLTE has ${len} bytes`);
        palette = data;
        break;
      case 'tRNS':
        trns = data;
        break;
      case 'IDAT':
        idat.push(data);
        break;
      case 'IEND':
        ended = true;
        break;
      case 'tEXt': {
        const z = data.indexOf(0);
        if (z > 0) {
          const key = latin1Dec.decode(data.subarray(0, z));
          countText(type, key, len - z - 1);
          text.set(key, latin1Dec.decode(data.subarray(z + 1)));
        }
        break;
      }
      case 'zTXt': {
        const z = data.indexOf(0);
        if (z > 0) {
          const key = latin1Dec.decode(data.subarray(0, z));
          const raw = await inflateText(type, key, data.subarray(z + 2));
          countText(type, key, raw.length);
          text.set(key, latin1Dec.decode(raw));
        }
        break;
      }
      case 'iTXt': {
        const z = data.indexOf(0);
        if (z <= 0 || z + 2 >= data.length) break;
        const key = latin1Dec.decode(data.subarray(0, z));
        const compressed = data[z + 1] === 1;
        const l = data.indexOf(0, z + 3);
        const t = l < 0 ? -1 : data.indexOf(0, l + 1);
        if (t < 0) fail('malformed iTXt');
        let body = data.subarray(t + 1);
        if (compressed) body = await inflateText(type, key, body);
        countText(type, key, body.length);
        try {
          text.set(key, utf8.decode(body));
        } catch {
          fail(`iTXt "${oneLineKey(key)}" is not valid UTF-8`);
        }
        break;
      }
      default:
        // Unknown critical chunks (uppercase first letter) must not be ignored.
        if (type.charCodeAt(0) < 97) fail(`unknown critical chunk ${type}`);
    }
  }
  const { w, h, depth, color, stride, rawBytes } = ihdr!;
  if (!idat.length) fail('no IDAT chunk');
  if (color === 3 && !palette) fail('palette image without PLTE');
  // Exactly the scanlines the size needs: the stream is read no further (data past them is ignored, as
  // libpng and browsers do); a stream that ends right there still has its checksum checked.
  const inflated = await inflateCapped(idat, rawBytes, new Uint8Array(rawBytes)).catch((e: Error) => fail(`corrupt image data (${oneLineKey(e.message)})`));
  const raw = inflated.data;
  if (inflated.length < rawBytes) fail(`image data is ${inflated.length} bytes, ${rawBytes} expected`);
  const channels = CHANNELS[color]!;
  const bitsPP = channels * depth;
  const bpp = Math.max(1, bitsPP >> 3);

  // Unfilter in place: row y's bytes are raw[y·(stride+1) + 1 ..], after its filter-type byte.
  let prev: Uint8Array = new Uint8Array(stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)]!;
    const cur = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    switch (f) {
      case 0: break;
      case 1: for (let i = bpp; i < stride; i++) cur[i] = cur[i]! + cur[i - bpp]!; break;
      case 2: for (let i = 0; i < stride; i++) cur[i] = cur[i]! + prev[i]!; break;
      case 3: for (let i = 0; i < stride; i++) cur[i] = cur[i]! + (((i >= bpp ? cur[i - bpp]! : 0) + prev[i]!) >> 1); break;
      case 4: for (let i = 0; i < stride; i++) cur[i] = cur[i]! + paeth(i >= bpp ? cur[i - bpp]! : 0, prev[i]!, i >= bpp ? prev[i - bpp]! : 0); break;
      default: fail(`bad filter type ${f} in row ${y}`);
    }
    prev = cur;
  }
  const px = raw;

  // Sample reader: value of channel c of pixel x in row y, at the file's bit depth.
  const sample = (row: number, x: number, c: number): number => {
    const base = row * (stride + 1) + 1;
    if (depth === 8) return px[base + x * channels + c]!;
    if (depth === 16) {
      const i = base + (x * channels + c) * 2;
      return (px[i]! << 8) | px[i + 1]!;
    }
    const bit = x * depth; // channels == 1 here
    return (px[base + (bit >> 3)]! >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  };
  const to8 = depth === 16 ? (v: number) => v >> 8 : depth < 8 ? (v: number) => Math.round((v * 255) / ((1 << depth) - 1)) : (v: number) => v;

  const out = new Uint8Array(w * h * 3);
  // tRNS colour keys compare raw samples (at the file's bit depth).
  const tdv = trns ? new DataView(trns.buffer, trns.byteOffset, trns.byteLength) : null;
  const keyGray = color === 0 && tdv && trns!.length >= 2 ? tdv.getUint16(0) : -1;
  const keyRgb = color === 2 && tdv && trns!.length >= 6 ? [tdv.getUint16(0), tdv.getUint16(2), tdv.getUint16(4)] : null;
  const nPal = palette ? palette.length / 3 : 0;
  for (let y = 0, q = 0; y < h; y++) {
    for (let x = 0; x < w; x++, q += 3) {
      let r: number, g: number, b: number, a = 255;
      switch (color) {
        case 0: {
          const v = sample(y, x, 0);
          r = g = b = to8(v);
          if (v === keyGray) a = 0;
          break;
        }
        case 2: {
          const v0 = sample(y, x, 0), v1 = sample(y, x, 1), v2 = sample(y, x, 2);
          r = to8(v0); g = to8(v1); b = to8(v2);
          if (keyRgb && v0 === keyRgb[0] && v1 === keyRgb[1] && v2 === keyRgb[2]) a = 0;
          break;
        }
        case 3: {
          const i = sample(y, x, 0);
          if (i >= nPal) fail(`palette index ${i} out of range (${nPal} entries)`);
          r = palette![i * 3]!; g = palette![i * 3 + 1]!; b = palette![i * 3 + 2]!;
          if (trns && i < trns.length) a = trns[i]!;
          break;
        }
        case 4:
          r = g = b = to8(sample(y, x, 0));
          a = to8(sample(y, x, 1));
          break;
        default:
          r = to8(sample(y, x, 0)); g = to8(sample(y, x, 1)); b = to8(sample(y, x, 2));
          a = to8(sample(y, x, 3));
      }
      out[q] = compositeOverWhite(r, a);
      out[q + 1] = compositeOverWhite(g, a);
      out[q + 2] = compositeOverWhite(b, a);
    }
  }
  return { width: w, height: h, data: out, text: Object.fromEntries(text) };
}
