// Property-based fuzzing of the PNG decoder (fast-check), within a fixed budget (see test/helpers/fuzz.ts:
// FEWSTEP_FUZZ_SECONDS, default 3 s; FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED). Inputs are PNGs of every colour
// type, bit depth and filter type with random pixels and text chunks, and the same files mutated: byte flips,
// truncations and splices (with the CRCs fixed up or not), IHDR fields set to edge values, chunks inserted
// (decompression bombs as IDAT / zTXt / iTXt, hundreds of text chunks, unknown and repeated chunks). Every
// input must give a correct result (encodePng's files decode back exactly; any decoded image has the size its
// IHDR declares, within IMAGE_LIMITS) or one FewstepError naming the file, in bounded time and memory —
// through decodePng and through the CLI's decodeImage (which hands interlaced PNGs to libvips).
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IMAGE_LIMITS, MAX_IMAGE_SIDE, crc32, decodePng, encodePng } from '@fewstep/models';
import { decodeImage } from '../../packages/cli/src/generation/image_inputs';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';
import { hugeDimensionsPng, idatBombPng, ihdr, pngChunk, pngFile, textBombPng, zlibZeros } from './hostile-images';

const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Deterministic bytes from a seed (xorshift). */
function bytesFrom(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

interface TextSpec {
  type: 'tEXt' | 'zTXt' | 'iTXt' | 'iTXtZ';
  key: string;
  value: string;
}
const textSpec: fc.Arbitrary<TextSpec> = fc.record({
  type: fc.constantFrom('tEXt' as const, 'zTXt' as const, 'iTXt' as const, 'iTXtZ' as const),
  key: fc.oneof(fc.constantFrom('parameters', 'Comment', '__proto__', 'constructor', 'a'), fc.string({ minLength: 1, maxLength: 12 })),
  value: fc.string({ maxLength: 40 }),
});

/** A PNG: from encodePng (RGB, exact round trip expected) or written here (any colour type / depth / filter). */
type Source =
  | { kind: 'encoded'; w: number; h: number; seed: number; metadata: Record<string, string> }
  | { kind: 'raw'; w: number; h: number; color: number; depthIndex: number; seed: number; filters: number[]; palette: number; trns: number; texts: TextSpec[]; splitIdat: number };

const source: fc.Arbitrary<Source> = fc.oneof(
  fc.record({
    kind: fc.constant('encoded' as const),
    w: fc.integer({ min: 1, max: 24 }),
    h: fc.integer({ min: 1, max: 24 }),
    seed: fc.integer(),
    metadata: fc.dictionary(fc.constantFrom('parameters', 'prompt', 'Software'), fc.string({ maxLength: 30 }), { maxKeys: 2 }),
  }),
  fc.record({
    kind: fc.constant('raw' as const),
    w: fc.integer({ min: 1, max: 24 }),
    h: fc.integer({ min: 1, max: 24 }),
    color: fc.constantFrom(0, 2, 3, 4, 6),
    depthIndex: fc.nat(4),
    seed: fc.integer(),
    filters: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 5 }),
    palette: fc.integer({ min: 1, max: 256 }),
    trns: fc.integer({ min: -1, max: 256 }),
    texts: fc.array(textSpec, { maxLength: 3 }),
    splitIdat: fc.integer({ min: 1, max: 4 }),
  }),
);

const latin1 = (s: string) => Uint8Array.from([...s].map((c) => c.charCodeAt(0) & 255));
const cat = (...parts: (Uint8Array | number[])[]) => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
function textChunk(t: TextSpec): Uint8Array {
  const key = latin1(t.key);
  const utf8 = new TextEncoder().encode(t.value);
  switch (t.type) {
    case 'tEXt':
      return pngChunk('tEXt', cat(key, [0], latin1(t.value)));
    case 'zTXt':
      return pngChunk('zTXt', cat(key, [0, 0], deflateSync(latin1(t.value))));
    case 'iTXt':
      return pngChunk('iTXt', cat(key, [0, 0, 0], latin1('en'), [0, 0], utf8));
    case 'iTXtZ':
      return pngChunk('iTXt', cat(key, [0, 1, 0, 0, 0], deflateSync(utf8)));
  }
}

async function build(s: Source): Promise<Uint8Array> {
  if (s.kind === 'encoded') return encodePng({ width: s.w, height: s.h, data: bytesFrom(s.seed, s.w * s.h * 3) }, s.metadata);
  const depths = DEPTHS[s.color]!;
  const depth = depths[s.depthIndex % depths.length]!;
  const stride = Math.ceil((s.w * CHANNELS[s.color]! * depth) / 8);
  const raw = bytesFrom(s.seed, s.h * (stride + 1));
  for (let y = 0; y < s.h; y++) raw[y * (stride + 1)] = s.filters[y % s.filters.length]!;
  const z = deflateSync(raw);
  const step = Math.ceil(z.length / s.splitIdat);
  const idats: Uint8Array[] = [];
  for (let o = 0; o < z.length; o += step) idats.push(pngChunk('IDAT', z.subarray(o, o + step)));
  const extra: Uint8Array[] = [];
  // Every index the depth can hold has an entry (a shorter palette is one of the mutations' cases).
  const entries = Math.max(s.palette, 1 << depth);
  if (s.color === 3) extra.push(pngChunk('PLTE', bytesFrom(s.seed + 1, entries * 3)));
  if (s.trns >= 0 && s.color !== 4 && s.color !== 6) extra.push(pngChunk('tRNS', bytesFrom(s.seed + 2, s.color === 3 ? Math.min(s.trns, entries) : s.color === 0 ? 2 : 6)));
  return pngFile([ihdr(s.w, s.h, depth, s.color), ...extra, ...s.texts.map(textChunk), ...idats, pngChunk('IEND', new Uint8Array(0))]);
}

type Mutation =
  | { kind: 'flip'; at: number; byte: number; fixCrc: boolean }
  | { kind: 'truncate'; keep: number }
  | { kind: 'splice'; at: number; del: number; insert: Uint8Array; fixCrc: boolean }
  | { kind: 'ihdr'; field: 'w' | 'h' | 'depth' | 'color' | 'compression' | 'filter' | 'interlace'; value: number }
  | { kind: 'insert'; at: number; chunk: 'bombIdat' | 'bombZtxt' | 'bombItxt' | 'manyText' | 'bigText' | 'random'; size: number; type: string; data: Uint8Array };

const sizeValue = fc.oneof(fc.nat(64), fc.constantFrom(0, 1, 4096, 4097, 8200, 16384, 16385, 65535, 0x7fffffff, 0x80000000, 0xffffffff));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.nat(255), fixCrc: fc.boolean() }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), del: fc.nat(16), insert: fc.uint8Array({ maxLength: 16 }), fixCrc: fc.boolean() }),
  fc.oneof(
    fc.record({ kind: fc.constant('ihdr' as const), field: fc.constantFrom('w' as const, 'h' as const), value: sizeValue }),
    fc.record({ kind: fc.constant('ihdr' as const), field: fc.constantFrom('depth' as const, 'color' as const, 'compression' as const, 'filter' as const, 'interlace' as const), value: fc.oneof(fc.nat(16), fc.nat(255)) }),
  ),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    chunk: fc.constantFrom('bombIdat' as const, 'bombZtxt' as const, 'bombItxt' as const, 'manyText' as const, 'bigText' as const, 'random' as const),
    size: fc.oneof(fc.nat(5000), fc.constantFrom(IMAGE_LIMITS.textChunkBytes, IMAGE_LIMITS.textChunkBytes + 1, 2 ** 24, 2 ** 28), fc.constantFrom(IMAGE_LIMITS.textChunks - 2, IMAGE_LIMITS.textChunks + 1)),
    type: fc.constantFrom('IDAT', 'IHDR', 'PLTE', 'tRNS', 'IEND', 'tEXt', 'zTXt', 'iTXt', 'ABCD', 'abcd', 'a1cd'),
    data: fc.uint8Array({ maxLength: 40 }),
  }),
);

/** The chunks of a file (offset, length) while its structure holds. */
function chunks(b: Uint8Array): { at: number; len: number }[] {
  const out: { at: number; len: number }[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let p = 8; p + 12 <= b.length; ) {
    const len = dv.getUint32(p);
    if (p + 12 + len > b.length) break;
    out.push({ at: p, len });
    p += 12 + len;
  }
  return out;
}
function fixCrcs(b: Uint8Array): Uint8Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (const c of chunks(b)) dv.setUint32(c.at + 8 + c.len, crc32(b.subarray(c.at + 4, c.at + 8 + c.len)));
  return b;
}

function insertChunk(m: Extract<Mutation, { kind: 'insert' }>): Uint8Array[] {
  switch (m.chunk) {
    case 'bombIdat':
      return [pngChunk('IDAT', zlibZeros(Math.max(1, m.size)))];
    case 'bombZtxt':
      return [pngChunk('zTXt', cat(latin1('k'), [0, 0], zlibZeros(Math.max(1, m.size))))];
    case 'bombItxt':
      return [pngChunk('iTXt', cat(latin1('k'), [0, 1, 0, 0, 0], zlibZeros(Math.max(1, m.size))))];
    case 'manyText':
      return Array.from({ length: Math.min(m.size, 2000) }, (_, i) => pngChunk('tEXt', cat(latin1(`k${i}`), [0], latin1('v'))));
    case 'bigText':
      return [pngChunk('tEXt', cat(latin1('k'), [0], new Uint8Array(Math.min(m.size, IMAGE_LIMITS.textChunkBytes + 1)).fill(0x61)))];
    case 'random':
      return [pngChunk(m.type, m.data)];
  }
}

function mutate(file: Uint8Array, m: Mutation): Uint8Array {
  switch (m.kind) {
    case 'flip': {
      if (file.length === 0) return file;
      const out = file.slice();
      out[m.at % out.length] = m.byte;
      return m.fixCrc ? fixCrcs(out) : out;
    }
    case 'truncate':
      return file.subarray(0, file.length ? m.keep % (file.length + 1) : 0);
    case 'splice': {
      const at = file.length ? m.at % (file.length + 1) : 0;
      const out = cat(file.subarray(0, at), m.insert, file.subarray(Math.min(file.length, at + m.del)));
      return m.fixCrc ? fixCrcs(out) : out;
    }
    case 'ihdr': {
      if (file.length < 33) return file;
      const out = file.slice();
      const dv = new DataView(out.buffer);
      const off = { w: 16, h: 20, depth: 24, color: 25, compression: 26, filter: 27, interlace: 28 }[m.field];
      if (m.field === 'w' || m.field === 'h') dv.setUint32(off, m.value >>> 0);
      else out[off] = m.value & 255;
      return fixCrcs(out);
    }
    case 'insert': {
      const cs = chunks(file);
      if (cs.length === 0) return file;
      const c = cs[m.at % cs.length]!;
      return cat(file.subarray(0, c.at), ...insertChunk(m), file.subarray(c.at));
    }
  }
}

interface Input {
  source: Source;
  mutations: Mutation[];
}
const input: fc.Arbitrary<Input> = fc.record({
  source,
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([] as Mutation[]) }, { weight: 4, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
});

/** The IHDR size a file declares (for checking a decoded image), if it has one. */
function declared(b: Uint8Array): { w: number; h: number } | undefined {
  if (b.length < 24) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { w: dv.getUint32(16), h: dv.getUint32(20) };
}

describe('fuzz: PNG decoder', () => {
  it(`valid and mutated PNGs: a correct result or one FewstepError naming the file, in bounded time and memory (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('png');
    const name = 'fuzz.png';
    const regressions: Input[] = [
      { source: { kind: 'encoded', w: 2, h: 2, seed: 1, metadata: {} }, mutations: [{ kind: 'ihdr', field: 'w', value: 16384 }, { kind: 'ihdr', field: 'h', value: 16384 }] },
      { source: { kind: 'encoded', w: 1, h: 1, seed: 2, metadata: {} }, mutations: [{ kind: 'insert', at: 2, chunk: 'bombIdat', size: 2 ** 28, type: 'IDAT', data: new Uint8Array(0) }] },
      { source: { kind: 'encoded', w: 1, h: 1, seed: 3, metadata: {} }, mutations: [{ kind: 'insert', at: 1, chunk: 'bombZtxt', size: 2 ** 28, type: 'zTXt', data: new Uint8Array(0) }] },
      { source: { kind: 'encoded', w: 8, h: 1, seed: 4, metadata: {} }, mutations: [{ kind: 'ihdr', field: 'w', value: 8200 }] },
    ];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(input, async (inp) => {
        const label = `input ${i++} (${inp.source.kind}${inp.mutations.map((m) => `+${m.kind}${m.kind === 'insert' ? `:${m.chunk}` : ''}`).join('')})`;
        const valid = await build(inp.source);
        const bytes = inp.mutations.reduce(mutate, valid);
        await stats.one(label, async () => {
          const img = await stats.settle(name, `${label} decodePng`, () => decodePng(bytes, name));
          if (img) {
            const d = declared(bytes)!;
            expect([img.width, img.height], `${label}: the declared size`).toEqual([d.w, d.h]);
            expect(img.width * img.height).toBeLessThanOrEqual(IMAGE_LIMITS.maxPixels);
            expect(img.data.length).toBe(img.width * img.height * 3);
            for (const v of Object.values(img.text)) expect(typeof v).toBe('string');
          }
          if (inp.mutations.length === 0) {
            expect(img, `${label}: a valid file decodes`).toBeDefined();
            if (inp.source.kind === 'encoded') {
              expect(Buffer.from(img!.data).equals(Buffer.from(bytesFrom(inp.source.seed, inp.source.w * inp.source.h * 3))), `${label}: round trip`).toBe(true);
              expect(img!.text).toEqual(inp.source.metadata);
            }
          }
          // The CLI's path (libvips for what decodePng refuses, except a file over a limit), at generation's limit.
          const cli = await stats.settle(name, `${label} decodeImage`, () => decodeImage(bytes, name, { maxSide: MAX_IMAGE_SIDE }));
          if (cli) {
            expect(Math.max(cli.width, cli.height)).toBeLessThanOrEqual(MAX_IMAGE_SIDE);
            expect(cli.data.length).toBe(cli.width * cli.height * 3);
          }
          if (img && Math.max(img.width, img.height) <= MAX_IMAGE_SIDE) expect(cli && Buffer.from(cli.data).equals(Buffer.from(img.data)), `${label}: decodeImage = decodePng`).toBe(true);
          return img !== undefined;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());

  it("the issue's files among the inputs: 16384² RGBA in 1 MB, a 1×1 IDAT of 256 MB, zTXt and iTXt of 256 MB", async () => {
    const stats = new FuzzStats('png (issue files)');
    for (const [label, bytes] of [
      ['huge', hugeDimensionsPng()],
      ['idat bomb', idatBombPng()],
      ['zTXt bomb', textBombPng(2 ** 28, 'zTXt')],
      ['iTXt bomb', textBombPng(2 ** 28, 'iTXt')],
    ] as const) {
      await stats.one(label, async () => (await stats.settle('p.png', label, () => decodePng(bytes, 'p.png'))) !== undefined);
    }
    expect(stats.opened).toBe(1);
    expect(stats.worstMs).toBeLessThan(2000);
  });
});
