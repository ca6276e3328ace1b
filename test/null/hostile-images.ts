// Hostile PNG files, built in the test (none is committed): decompression bombs cost a few hundred KB to
// describe gigabytes. Used by hostile-png.test.ts and fuzz-png.test.ts.
import { crc32 } from '@fewstep/models';

/** A bit writer for deflate streams: fields LSB-first, Huffman codes MSB-first (RFC 1951 §3.1.1). */
class Bits {
  bytes: Uint8Array;
  n = 0;
  constructor(capacityBits: number) {
    this.bytes = new Uint8Array(Math.ceil(capacityBits / 8) + 8);
  }
  field(value: number, bits: number): void {
    for (let i = 0; i < bits; i++) this.bit((value >>> i) & 1);
  }
  code(code: string): void {
    for (const c of code) this.bit(c === '1' ? 1 : 0);
  }
  bit(b: number): void {
    if (b) this.bytes[this.n >> 3]! |= 1 << (this.n & 7);
    this.n++;
  }
}

/**
 * A zlib stream (RFC 1950) of `n` zero bytes in about n / 1032 bytes — deflate's best ratio — written directly
 * (deflating a gigabyte to make one would take seconds): one dynamic-Huffman block whose codes are literal 0
 * ("10"), <length 258> ("0") with <distance 1> ("0"), end of block ("11"); every 258 bytes cost two zero bits.
 */
export function zlibZeros(n: number): Uint8Array {
  if (n < 1) throw new Error('zlibZeros: n ≥ 1');
  const repeats = Math.floor((n - 1) / 258);
  const tail = n - 1 - repeats * 258;
  const w = new Bits(200 + repeats * 2 + tail * 2);
  w.field(1, 1); // BFINAL
  w.field(2, 2); // BTYPE = dynamic
  w.field(286 - 257, 5); // HLIT: literal/length codes 0..285
  w.field(0, 5); // HDIST: one distance code
  w.field(18 - 4, 4); // HCLEN: code-length codes up to the order's 18th (symbol 1)
  // Code-length code lengths in the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1: 18 → 1, 2 → 2, 1 → 2.
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1];
  const clen: Record<number, number> = { 18: 1, 2: 2, 1: 2 };
  for (const s of order) w.field(clen[s] ?? 0, 3);
  // Canonical codes: 18 → "0", 1 → "10", 2 → "11".
  const zeros = (k: number) => {
    w.code('0');
    w.field(k - 11, 7);
  };
  // Literal/length lengths: 0 → 2, 1..255 → 0, 256 → 2, 257..284 → 0, 285 → 1; then distance 0 → 1.
  w.code('11');
  zeros(138);
  zeros(117);
  w.code('11');
  zeros(28);
  w.code('10');
  w.code('10');
  // Literal/length codes: 285 → "0", 0 → "10", 256 → "11"; distance 0 → "0".
  w.code('10'); // the first zero byte, a literal
  w.n += repeats * 2; // <258, distance 1>: two zero bits each
  for (let i = 0; i < tail; i++) w.code('10');
  w.code('11'); // end of block
  const body = w.bytes.subarray(0, Math.ceil(w.n / 8));
  const out = new Uint8Array(2 + body.length + 4);
  out.set([0x78, 0x9c]);
  out.set(body, 2);
  new DataView(out.buffer).setUint32(2 + body.length, (((n % 65521) << 16) | 1) >>> 0); // Adler-32 of n zeros
  return out;
}

const be32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];

/** One PNG chunk with its CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A PNG file from its chunks (the signature added). */
export function pngFile(chunks: Uint8Array[]): Uint8Array {
  const sig = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const out = new Uint8Array(8 + chunks.reduce((s, c) => s + c.length, 0));
  out.set(sig);
  let o = 8;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export function ihdr(w: number, h: number, depth = 8, color = 6): Uint8Array {
  return pngChunk('IHDR', Uint8Array.from([...be32(w), ...be32(h), depth, color, 0, 0, 0]));
}

const iend = () => pngChunk('IEND', new Uint8Array(0));

/** The first file: ~1 MB declaring 16384×16384 RGBA, its IDAT the 1 GiB of zero scanlines it claims. */
export function hugeDimensionsPng(side = 16384): Uint8Array {
  return pngFile([ihdr(side, side, 8, 6), pngChunk('IDAT', zlibZeros(side * (side * 4 + 1))), iend()]);
}

/** A 1×1 RGB image whose IDAT inflates to `bytes` (256 MiB: 261 KB of file). */
export function idatBombPng(bytes = 256 * 2 ** 20): Uint8Array {
  return pngFile([ihdr(1, 1, 8, 2), pngChunk('IDAT', zlibZeros(bytes)), iend()]);
}

/** A valid 1×1 RGB image with a zTXt (or compressed iTXt) chunk whose text inflates to `bytes` NULs. */
export function textBombPng(bytes = 256 * 2 ** 20, type: 'zTXt' | 'iTXt' = 'zTXt'): Uint8Array {
  const key = [...'Comment'].map((c) => c.charCodeAt(0));
  const z = zlibZeros(bytes);
  const head = type === 'zTXt' ? [...key, 0, 0] : [...key, 0, 1, 0, 0, 0];
  const data = new Uint8Array(head.length + z.length);
  data.set(head);
  data.set(z, head.length);
  return pngFile([ihdr(1, 1, 8, 2), pngChunk(type, data), pngChunk('IDAT', zlibZeros(4)), iend()]);
}

/** An 8-bit RGB image of w×h black pixels (valid, small on disk): e.g. 8200×8, wider than MAX_IMAGE_SIDE. */
export function blackPng(w: number, h: number): Uint8Array {
  return pngFile([ihdr(w, h, 8, 2), pngChunk('IDAT', zlibZeros(h * (w * 3 + 1))), iend()]);
}
