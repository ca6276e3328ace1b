// PNG encode/decode (no GPU, no external tools): round trips, metadata (tEXt / iTXt), every colour type, bit depth and
// filter type through a small independent PNG writer below, the golden pipeline PNGs against their uint8 arrays, and
// exact error messages for corrupt input.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { crc32, decodePng, encodePng } from '@fewstep/models';

const goldenRoot = new URL('../fixtures/golden/', import.meta.url).pathname;

function rand(n: number, seed: number): Uint8Array {
  let s = seed >>> 0;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Smooth-ish content (so the adaptive filter picks Sub/Up/Average/Paeth, not only None). */
function gradient(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = (x * (c + 1) * 3 + y * 5 + ((x * y) % 7)) & 0xff;
  return out;
}

// ---------------------------------------------------------------- an independent writer for test inputs

const be32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
function rawChunk(type: string, data: ArrayLike<number>): number[] {
  const body = Uint8Array.from([...type].map((c) => c.charCodeAt(0)).concat(Array.from(data)));
  return [...be32(data.length), ...body, ...be32(crc32(body))];
}
async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(s).arrayBuffer());
}
function predictor(f: number, a: number, b: number, c: number): number {
  if (f === 0) return 0;
  if (f === 1) return a;
  if (f === 2) return b;
  if (f === 3) return (a + b) >> 1;
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
interface Build {
  w: number;
  h: number;
  color: number;
  depth: number;
  /** Unfiltered packed scanlines. */
  rows: Uint8Array[];
  /** Filter type per row (cycles). */
  filters?: number[];
  interlace?: number;
  before?: number[][]; // extra chunks before IDAT
  splitIdat?: number;
}
async function buildPng(b: Build): Promise<Uint8Array> {
  const bpp = Math.max(1, (b.depth * ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[b.color]!) >> 3);
  const filters = b.filters ?? [0];
  const parts: number[] = [];
  let prev: Uint8Array = new Uint8Array(b.rows[0]!.length);
  b.rows.forEach((row, y) => {
    const f = filters[y % filters.length]!;
    parts.push(f);
    for (let i = 0; i < row.length; i++) {
      const a = i >= bpp ? row[i - bpp]! : 0, c = i >= bpp ? prev[i - bpp]! : 0;
      parts.push((row[i]! - predictor(f > 4 ? 0 : f, a, prev[i]!, c)) & 255);
    }
    prev = row;
  });
  const z = await zlib(Uint8Array.from(parts));
  const n = b.splitIdat ?? 1;
  const step = Math.ceil(z.length / n);
  const idats: number[] = [];
  for (let o = 0; o < z.length; o += step) idats.push(...rawChunk('IDAT', z.subarray(o, o + step)));
  return Uint8Array.from([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
    ...rawChunk('IHDR', [...be32(b.w), ...be32(b.h), b.depth, b.color, 0, 0, b.interlace ?? 0]),
    ...(b.before ?? []).flat(),
    ...idats,
    ...rawChunk('IEND', []),
  ]);
}
/** Packs samples (one per element) of `depth` bits MSB-first into rows. */
function pack(samples: number[], w: number, h: number, perPixel: number, depth: number): Uint8Array[] {
  const rows: Uint8Array[] = [];
  const stride = Math.ceil((w * perPixel * depth) / 8);
  for (let y = 0; y < h; y++) {
    const row = new Uint8Array(stride);
    for (let i = 0; i < w * perPixel; i++) {
      const v = samples[y * w * perPixel + i]!;
      if (depth === 16) {
        row[i * 2] = v >> 8;
        row[i * 2 + 1] = v & 255;
      } else if (depth === 8) row[i] = v;
      else {
        const bit = i * depth;
        row[bit >> 3]! |= v << (8 - depth - (bit & 7));
      }
    }
    rows.push(row);
  }
  return rows;
}
const chunkTypes = (png: Uint8Array) => {
  const out: string[] = [];
  const dv = new DataView(png.buffer, png.byteOffset);
  for (let p = 8; p < png.length; ) {
    const len = dv.getUint32(p);
    out.push(String.fromCharCode(...png.subarray(p + 4, p + 8)));
    p += 12 + len;
  }
  return out;
};
/** Index of the first differing byte (or length difference), -1 when equal: fast on big arrays, unlike toEqual. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
const over = (c: number, a: number) => Math.round((c * a + 255 * (255 - a)) / 255);

describe('PNG round trip', () => {
  for (const [w, h] of [[1, 1], [7, 5], [33, 17], [64, 3]] as const) {
    it(`random ${w}x${h} and gradient ${w}x${h}`, async () => {
      for (const data of [rand(w * h * 3, w * 131 + h), gradient(w, h)]) {
        const png = await encodePng({ width: w, height: h, data });
        expect(chunkTypes(png)).toEqual(['IHDR', 'IDAT', 'IEND']);
        const back = await decodePng(png, 'r.png');
        expect([back.width, back.height]).toEqual([w, h]);
        expect(back.data).toEqual(data);
        expect(back.text).toEqual({});
      }
    });
  }

  it('smooth content compresses well (filters are used)', async () => {
    const png = await encodePng({ width: 256, height: 256, data: gradient(256, 256) });
    expect(png.length).toBeLessThan(256 * 256 * 3 / 4);
    // Filter bytes actually vary (decode the zlib stream and look at the row prefixes).
    const idat = png.subarray(8 + 25 + 8, png.length - 12 - 4);
    const raw = new Uint8Array(await new Response(new Blob([idat as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('deflate'))).arrayBuffer());
    const filters = new Set(Array.from({ length: 256 }, (_, y) => raw[y * (256 * 3 + 1)]));
    expect(filters.size).toBeGreaterThan(1);
  });

  it('metadata: Latin-1 values as tEXt, UTF-8 values (emoji, CJK) as iTXt', async () => {
    const meta = {
      parameters: 'a photo of a cat\nSteps: 1, Sampler: Euler, CFG scale: 0, Seed: 42, Size: 512x512',
      Comment: 'café — naïve', // em dash is not Latin-1 → iTXt
      Software: 'fewstep',
      Title: 'Ünïcödé Latin-1',
      prompt: 'a 🐱 astronaut, 宇宙飛行士',
      empty: '',
    };
    const png = await encodePng({ width: 2, height: 2, data: rand(12, 1) }, meta);
    expect(chunkTypes(png)).toEqual(['IHDR', 'tEXt', 'iTXt', 'tEXt', 'tEXt', 'iTXt', 'tEXt', 'IDAT', 'IEND']);
    const back = await decodePng(png, 'm.png');
    expect(back.text).toEqual(meta);
  });

  it('rejects bad metadata keywords and bad images', async () => {
    const img = { width: 1, height: 1, data: new Uint8Array(3) };
    await expect(encodePng(img, { '': 'x' })).rejects.toThrow('metadata key "" is not a PNG keyword');
    await expect(encodePng(img, { ['k'.repeat(80)]: 'x' })).rejects.toThrow('is not a PNG keyword');
    await expect(encodePng(img, { 'prompt ✨': 'x' })).rejects.toThrow('metadata key "prompt ✨" is not a PNG keyword');
    await expect(encodePng(img, { ' lead': 'x' })).rejects.toThrow('is not a PNG keyword');
    await expect(encodePng({ width: 2, height: 1, data: new Uint8Array(3) })).rejects.toThrow('encodePng: 2x1 RGB needs 6 bytes, got 3');
    await expect(encodePng({ width: 0, height: 1, data: new Uint8Array(0) })).rejects.toThrow('encodePng: bad image size 0x1');
  });
});

describe('PNG decode: colour types, bit depths, filters', () => {
  const w = 9, h = 6;
  it('RGB 8 with all five filter types and split IDAT', async () => {
    const data = gradient(w, h);
    const rows = Array.from({ length: h }, (_, y) => data.subarray(y * w * 3, (y + 1) * w * 3));
    const png = await buildPng({ w, h, color: 2, depth: 8, rows, filters: [0, 1, 2, 3, 4, 4], splitIdat: 3 });
    expect((await decodePng(png)).data).toEqual(data);
  });

  it('RGBA 8 and 16 (alpha over white), RGB 16 (high byte)', async () => {
    const px = Array.from(rand(w * h * 4, 3));
    const png = await buildPng({ w, h, color: 6, depth: 8, rows: pack(px, w, h, 4, 8), filters: [1, 2, 3, 4] });
    const want = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) want[i * 3 + c] = over(px[i * 4 + c]!, px[i * 4 + 3]!);
    expect((await decodePng(png)).data).toEqual(want);

    const px16 = Array.from({ length: w * h * 4 }, (_, i) => (px[i]! << 8) | ((i * 37) & 255));
    const png16 = await buildPng({ w, h, color: 6, depth: 16, rows: pack(px16, w, h, 4, 16), filters: [4, 3, 2, 1, 0] });
    expect((await decodePng(png16)).data).toEqual(want);

    const rgb16 = Array.from({ length: w * h * 3 }, (_, i) => (px[i]! << 8) | 0xab);
    const pngRgb16 = await buildPng({ w, h, color: 2, depth: 16, rows: pack(rgb16, w, h, 3, 16), filters: [3] });
    expect((await decodePng(pngRgb16)).data).toEqual(Uint8Array.from(px.slice(0, w * h * 3)));
  });

  it('gray 1/2/4/8/16 and gray+alpha 8/16', async () => {
    for (const depth of [1, 2, 4, 8, 16]) {
      const max = (1 << depth) - 1;
      const g = Array.from(rand(w * h, depth), (v) => (depth === 16 ? (v << 8) | 7 : v & max));
      const png = await buildPng({ w, h, color: 0, depth, rows: pack(g, w, h, 1, depth), filters: [0, 1, 2, 3, 4] });
      const want = new Uint8Array(w * h * 3);
      g.forEach((v, i) => want.fill(depth === 16 ? v >> 8 : Math.round((v * 255) / max), i * 3, i * 3 + 3));
      expect((await decodePng(png)).data, `gray ${depth}`).toEqual(want);
    }
    for (const depth of [8, 16]) {
      const ga = Array.from(rand(w * h * 2, 9));
      const samples = depth === 16 ? ga.map((v) => (v << 8) | 0x55) : ga;
      const png = await buildPng({ w, h, color: 4, depth, rows: pack(samples, w, h, 2, depth), filters: [2, 4] });
      const want = new Uint8Array(w * h * 3);
      for (let i = 0; i < w * h; i++) want.fill(over(ga[i * 2]!, ga[i * 2 + 1]!), i * 3, i * 3 + 3);
      expect((await decodePng(png)).data, `gray+alpha ${depth}`).toEqual(want);
    }
  });

  it('palette 1/2/4/8 with tRNS, and tRNS colour keys for gray and RGB', async () => {
    for (const depth of [1, 2, 4, 8]) {
      const n = 1 << depth;
      const pal = rand(n * 3, 100 + depth);
      const alpha = Array.from({ length: Math.min(n, 3) }, (_, i) => [0, 128, 255][i]!);
      const idx = Array.from(rand(w * h, depth), (v) => v % n);
      const png = await buildPng({ w, h, color: 3, depth, rows: pack(idx, w, h, 1, depth), filters: [1, 4], before: [rawChunk('PLTE', pal), rawChunk('tRNS', alpha)] });
      const want = new Uint8Array(w * h * 3);
      idx.forEach((p, i) => {
        for (let c = 0; c < 3; c++) want[i * 3 + c] = over(pal[p * 3 + c]!, p < alpha.length ? alpha[p]! : 255);
      });
      expect((await decodePng(png)).data, `palette ${depth}`).toEqual(want);
    }
    const g = Array.from({ length: w * h }, (_, i) => (i % 3 === 0 ? 40 : i & 255));
    const pngG = await buildPng({ w, h, color: 0, depth: 8, rows: pack(g, w, h, 1, 8), before: [rawChunk('tRNS', [0, 40])] });
    const wantG = new Uint8Array(w * h * 3);
    g.forEach((v, i) => wantG.fill(v === 40 ? 255 : v, i * 3, i * 3 + 3));
    expect((await decodePng(pngG)).data).toEqual(wantG);
    const rgb = Array.from(gradient(w, h));
    rgb.splice(0, 3, 1, 2, 3);
    const pngC = await buildPng({ w, h, color: 2, depth: 8, rows: pack(rgb, w, h, 3, 8), before: [rawChunk('tRNS', [0, 1, 0, 2, 0, 3])] });
    const got = (await decodePng(pngC)).data;
    expect(Array.from(got.subarray(0, 3))).toEqual([255, 255, 255]);
    expect(got.subarray(3)).toEqual(Uint8Array.from(rgb.slice(3)));
  });

  it('reads zTXt and compressed iTXt', async () => {
    const z = await zlib(new TextEncoder().encode('compressed latin'));
    const zi = await zlib(new TextEncoder().encode('ünïcode 🎨'));
    const key = (k: string) => [...k].map((c) => c.charCodeAt(0));
    const png = await buildPng({
      w: 1, h: 1, color: 2, depth: 8, rows: [new Uint8Array(3)],
      before: [rawChunk('zTXt', [...key('Description'), 0, 0, ...z]), rawChunk('iTXt', [...key('prompt'), 0, 1, 0, ...key('en'), 0, 0, ...zi])],
    });
    expect((await decodePng(png)).text).toEqual({ Description: 'compressed latin', prompt: 'ünïcode 🎨' });
  });
});

describe('PNG golden files (pipeline_sdxs: PIL output vs the uint8 image array)', () => {
  it('every <run>_<b>.png decodes to <run>.image_uint8[b]', async () => {
    const dir = join(goldenRoot, 'pipeline_sdxs');
    const io = await SafetensorsFile.open(nodeFiles, join(dir, 'io.safetensors'));
    try {
      const pngs = readdirSync(dir).filter((n) => n.endsWith('.png')).sort();
      expect(pngs.length).toBe(10);
      for (const name of pngs) {
        const [, run, b] = /^(.+)_(\d+)\.png$/.exec(name)!;
        const key = `${run}.image_uint8`;
        const [, H, W, C] = io.info(key).shape as [number, number, number, number];
        const all = await io.readBytes(key);
        const want = all.subarray(Number(b) * H * W * C, (Number(b) + 1) * H * W * C);
        const img = await decodePng(readFileSync(join(dir, name)), name);
        expect([img.width, img.height], name).toEqual([W, H]);
        expect(firstDiff(img.data, want), name).toBe(-1);
        // And our encoder round-trips it.
        expect(firstDiff((await decodePng(await encodePng(img))).data, want), name).toBe(-1);
      }
    } finally {
      await io.close();
    }
  });
});

describe('PNG decode errors', () => {
  const good = () => encodePng({ width: 5, height: 4, data: gradient(5, 4) }, { parameters: 'x' });

  it('not a PNG file', async () => {
    await expect(decodePng(new TextEncoder().encode('GIF89a...........'), 'x.png')).rejects.toThrow(/^x\.png: not a PNG file$/);
    await expect(decodePng(new Uint8Array(0), 'x.png')).rejects.toThrow(/^x\.png: not a PNG file$/);
    await expect(decodePng(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46]), 'x.jpg')).rejects.toThrow(/^x\.jpg: not a PNG file$/);
  });

  it('truncated anywhere', async () => {
    const png = await good();
    for (const n of [4, 8, 12, 20, 40, png.length - 30, png.length - 12, png.length - 1]) {
      await expect(decodePng(png.subarray(0, n), 'x.png'), `${n} bytes`).rejects.toThrow(/^x\.png: truncated$/);
    }
  });

  it('CRC mismatch names the chunk', async () => {
    const png = await good();
    const types = chunkTypes(png);
    expect(types).toEqual(['IHDR', 'tEXt', 'IDAT', 'IEND']);
    const dv = new DataView(png.buffer);
    let p = 8;
    for (const t of types) {
      const len = dv.getUint32(p);
      const bad = png.slice();
      bad[len ? p + 8 + (len >> 1) : p + 8 + len] ^= 0x10; // a data byte, or the CRC itself for IEND
      await expect(decodePng(bad, 'x.png'), t).rejects.toThrow(new RegExp(`^x\\.png: CRC mismatch in ${t}$`));
      p += 12 + len;
    }
  });

  it('interlaced, bad filter type, corrupt zlib, short data, bad IHDR', async () => {
    const rows = [new Uint8Array(6), new Uint8Array(6)];
    await expect(decodePng(await buildPng({ w: 2, h: 2, color: 2, depth: 8, rows, interlace: 1 }), 'x.png')).rejects.toThrow(
      /^x\.png: interlaced \(Adam7\) PNGs are not supported$/,
    );
    await expect(decodePng(await buildPng({ w: 2, h: 2, color: 2, depth: 8, rows, filters: [0, 5] }), 'x.png')).rejects.toThrow(/^x\.png: bad filter type 5 in row 1$/);
    await expect(decodePng(await buildPng({ w: 2, h: 2, color: 2, depth: 4, rows }), 'x.png')).rejects.toThrow(/^x\.png: bit depth 4 is not allowed for color type 2$/);
    await expect(decodePng(await buildPng({ w: 2, h: 3, color: 2, depth: 8, rows }), 'x.png')).rejects.toThrow(/^x\.png: image data is 14 bytes, 21 expected$/);
    await expect(decodePng(await buildPng({ w: 2, h: 2, color: 3, depth: 8, rows: [new Uint8Array(2), new Uint8Array(2)] }), 'x.png')).rejects.toThrow(
      /^x\.png: palette image without PLTE$/,
    );
    const junk = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
      ...rawChunk('IHDR', [...be32(1), ...be32(1), 8, 2, 0, 0, 0]), ...rawChunk('IDAT', [1, 2, 3, 4, 5]), ...rawChunk('IEND', [])]);
    await expect(decodePng(junk, 'x.png')).rejects.toThrow(/^x\.png: corrupt image data \(/);
    const noIend = junk.subarray(0, junk.length - 12);
    await expect(decodePng(noIend, 'x.png')).rejects.toThrow(/^x\.png: truncated$/);
  });
});
