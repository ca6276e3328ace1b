// The hardening issue's hostile PNGs, built here (nothing large is committed), each refused or decoded within
// bounded time and memory: a 1 MB file declaring 16384×16384 RGBA (it took 32 s and 4 GB), a 261 KB 1×1 file
// whose IDAT inflates to 256 MB, a 261 KB zTXt / iTXt chunk inflating to a 256 MB string, and an 8200×8 init
// image past MAX_IMAGE_SIDE. The limits (IMAGE_LIMITS) are checked at their edges.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError, ResourceLimitError } from '@fewstep/tensor';
import { IMAGE_LIMITS, MAX_IMAGE_SIDE, decodePng, encodePng } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { decodeImage, loadSharp, readImageFlag } from '../../packages/cli/src/generation/image_inputs';
import { blackPng, hugeDimensionsPng, idatBombPng, ihdr, pngChunk, pngFile, textBombPng, zlibZeros } from './hostile-images';

const work = mkdtempSync(join(tmpdir(), 'fewstep-hostile-png-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `fn`, returning its outcome with the time and the memory it kept or spiked (arrayBuffers + heap, peak rss). */
async function measured<T>(fn: () => Promise<T>): Promise<{ value?: T; error?: unknown; ms: number; heapMiB: number; peakRssGrowthMiB: number }> {
  const m0 = process.memoryUsage();
  const peak0 = process.resourceUsage().maxRSS / 1024;
  const t0 = performance.now();
  let value: T | undefined, error: unknown;
  try {
    value = await fn();
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - t0;
  const m1 = process.memoryUsage();
  const peakRssGrowthMiB = process.resourceUsage().maxRSS / 1024 - Math.max(peak0, m0.rss / 2 ** 20);
  return { ...(value !== undefined ? { value } : {}), error, ms, heapMiB: (m1.heapUsed + m1.arrayBuffers - m0.heapUsed - m0.arrayBuffers) / 2 ** 20, peakRssGrowthMiB };
}

const text = (...parts: (string | number)[]) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'number' ? [p] : [...p].map((c) => c.charCodeAt(0)))));
const idat1x1 = () => pngChunk('IDAT', zlibZeros(4));
const iend = () => pngChunk('IEND', new Uint8Array(0));

describe('hostile PNGs: refused or decoded in bounded time and memory', () => {
  it('a 1 MB file declaring 16384×16384 RGBA is refused at IHDR, before its 1 GiB of image data is inflated', async () => {
    const file = hugeDimensionsPng();
    expect(file.length).toBeGreaterThan(1_000_000);
    expect(file.length).toBeLessThan(1_100_000);
    const r = await measured(() => decodePng(file, 'huge.png'));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect((r.error as Error).message).toBe(`huge.png: the image is 16384×16384 = 268435456 pixels; at most ${IMAGE_LIMITS.maxPixels}`);
    expect(r.ms).toBeLessThan(1000);
    expect(r.peakRssGrowthMiB).toBeLessThan(64);
  });

  it('a 261 KB 1×1 file whose IDAT inflates to 256 MiB decodes, inflating only the 4 bytes it needs', async () => {
    const file = idatBombPng();
    expect(file.length).toBeLessThan(270_000);
    const r = await measured(() => decodePng(file, 'bomb.png'));
    expect(r.error).toBeUndefined();
    expect([r.value!.width, r.value!.height, [...r.value!.data]]).toEqual([1, 1, [0, 0, 0]]);
    expect(r.ms).toBeLessThan(1000);
    expect(r.peakRssGrowthMiB).toBeLessThan(64);
  });

  for (const type of ['zTXt', 'iTXt'] as const) {
    it(`a 261 KB ${type} chunk inflating to 256 MiB of text is refused after ${IMAGE_LIMITS.textChunkBytes} bytes`, async () => {
      const r = await measured(() => decodePng(textBombPng(256 * 2 ** 20, type), 'text.png'));
      expect(r.error).toBeInstanceOf(ResourceLimitError);
      expect((r.error as Error).message).toBe(`text.png: ${type} "Comment" inflates to more than ${IMAGE_LIMITS.textChunkBytes} bytes of text`);
      expect(r.ms).toBeLessThan(2000);
      expect(r.peakRssGrowthMiB).toBeLessThan(128);
    });
  }

  it('an IDAT that inflates to more than the scanlines is read no further; one that ends short is an error', async () => {
    // 3×2 RGB: 2 × (1 + 9) = 20 bytes of scanlines.
    const long = await decodePng(pngFile([ihdr(3, 2, 8, 2), pngChunk('IDAT', zlibZeros(21)), iend()]), 'x.png');
    expect(long.data).toEqual(new Uint8Array(18));
    await expect(decodePng(pngFile([ihdr(3, 2, 8, 2), pngChunk('IDAT', zlibZeros(19)), iend()]), 'x.png')).rejects.toThrow(/^x\.png: image data is 19 bytes, 20 expected$/);
    // Exactly the scanlines with a wrong checksum: still caught (the stream's end is read).
    const bad = zlibZeros(20);
    bad[bad.length - 1]! ^= 1;
    await expect(decodePng(pngFile([ihdr(3, 2, 8, 2), pngChunk('IDAT', bad), iend()]), 'x.png')).rejects.toThrow(/^x\.png: corrupt image data \(/);
  });
});

describe('IMAGE_LIMITS at their edges', () => {
  it('the largest side and pixel count decode; one more is a ResourceLimitError naming the file', async () => {
    const side = Math.sqrt(IMAGE_LIMITS.maxPixels);
    // 1-bit gray keeps the files and their scanlines small.
    const ok = await decodePng(pngFile([ihdr(side, side, 1, 0), pngChunk('IDAT', zlibZeros(side * (side / 8 + 1))), iend()]), 'max.png');
    expect([ok.width, ok.height]).toEqual([side, side]);
    await expect(decodePng(pngFile([ihdr(side + 1, side, 1, 0), idat1x1(), iend()]), 'p.png')).rejects.toThrow(
      new ResourceLimitError(`p.png: the image is ${side + 1}×${side} = ${(side + 1) * side} pixels; at most ${IMAGE_LIMITS.maxPixels}`),
    );
    await expect(decodePng(pngFile([ihdr(IMAGE_LIMITS.maxSide + 1, 1, 8, 2), idat1x1(), iend()]), 'w.png')).rejects.toThrow(
      `w.png: the image is ${IMAGE_LIMITS.maxSide + 1}×1; at most ${IMAGE_LIMITS.maxSide} pixels a side`,
    );
    const wide = await decodePng(blackPng(IMAGE_LIMITS.maxSide, 1), 'w.png');
    expect(wide.width).toBe(IMAGE_LIMITS.maxSide);
  });

  it('a caller may tighten the limits (maxSide for generation)', async () => {
    const wide = blackPng(8200, 8);
    expect((await decodePng(wide, 'w.png')).width).toBe(8200);
    await expect(decodePng(wide, 'w.png', { maxSide: MAX_IMAGE_SIDE })).rejects.toThrow(new ResourceLimitError('w.png: the image is 8200×8; at most 4096 pixels a side'));
    await expect(decodePng(wide, 'w.png', { maxPixels: 1000 })).rejects.toThrow('w.png: the image is 8200×8 = 65600 pixels; at most 1000');
    await expect(decodePng(blackPng(64, 64), 'b.png', { decompressedBytes: 1000 })).rejects.toThrow('b.png: the image is 64×64 at 8 bits × 3 channels: 12352 bytes of image data; at most 1000');
  });

  it('text: one chunk of exactly textChunkBytes is read, one byte more is refused; so are too many chunks and too much text in all', async () => {
    const L = { textChunkBytes: 100, textBytes: 250, textChunks: 3 };
    const z = (n: number) => zlibZeros(n);
    const zt = (key: string, n: number) => pngChunk('zTXt', Uint8Array.from([...text(key, 0, 0), ...z(n)]));
    const tx = (key: string, n: number) => pngChunk('tEXt', Uint8Array.from([...text(key, 0), ...new Uint8Array(n).fill(0x61)]));
    const png = (...chunks: Uint8Array[]) => pngFile([ihdr(1, 1, 8, 2), ...chunks, idat1x1(), iend()]);
    expect((await decodePng(png(zt('a', 100)), 't.png', L)).text['a']!.length).toBe(100);
    await expect(decodePng(png(zt('a', 101)), 't.png', L)).rejects.toThrow(new ResourceLimitError('t.png: zTXt "a" inflates to more than 100 bytes of text'));
    expect((await decodePng(png(tx('a', 100)), 't.png', L)).text['a']!.length).toBe(100);
    await expect(decodePng(png(tx('a', 101)), 't.png', L)).rejects.toThrow('t.png: tEXt "a" holds more than 100 bytes of text');
    await expect(decodePng(png(tx('a', 1), tx('b', 1), tx('c', 1), tx('d', 1)), 't.png', L)).rejects.toThrow('t.png: more than 3 text chunks');
    await expect(decodePng(png(tx('a', 100), tx('b', 100), tx('c', 100)), 't.png', L)).rejects.toThrow('t.png: more than 250 bytes of text in all');
    await expect(decodePng(png(tx('a', 100), tx('b', 100), zt('c', 100)), 't.png', L)).rejects.toThrow('t.png: the text chunks inflate to more than 250 bytes in all');
  });

  it('a keyword "__proto__" is an entry like any other; keywords in errors are one line', async () => {
    const png = pngFile([ihdr(1, 1, 8, 2), pngChunk('tEXt', text('__proto__', 0, 'x')), pngChunk('tEXt', text('constructor', 0, 'y')), idat1x1(), iend()]);
    const { text: t } = await decodePng(png, 'p.png');
    expect(Object.keys(t).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(t, '__proto__')?.value).toBe('x');
    const bad = pngFile([ihdr(1, 1, 8, 2), pngChunk('iTXt', text('a\nb', 0, 0, 0, 0, 0, 0xff)), idat1x1(), iend()]);
    await expect(decodePng(bad, 'p.png')).rejects.toThrow(new FileFormatError('p.png', 'iTXt "a\\u000ab" is not valid UTF-8'));
  });
});

describe('the CLI: images are held to the --width/--height limit before they are decoded', () => {
  async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
    const out: string[] = [], err: string[] = [];
    const io: CliIO = { stdout: (s) => void out.push(s), stdoutBytes: async (b) => void out.push(`<${b.length} bytes>`), stderr: (s) => void err.push(s), isTTY: false };
    const code = await main(args, io);
    return { code, stderr: err.join(''), stdout: out.join('') };
  }

  it('an 8200×8 --init-image or --control-image is refused even with --width/--height (exit 2, one line)', async () => {
    const wide = join(work, 'wide.png');
    writeFileSync(wide, blackPng(8200, 8));
    const out = join(work, 'out.png');
    const r = await cli(['generate', 'cat', '--out', out, '--init-image', wide, '-W', '512', '-H', '512']);
    expect([r.code, r.stderr]).toEqual([2, `fewstep generate: --init-image ${wide}: the image is 8200×8; at most ${MAX_IMAGE_SIDE} pixels a side\n`]);
    const cn = join(work, 'controlnet');
    mkdirSync(cn);
    writeFileSync(join(cn, 'config.json'), '{}');
    const c = await cli(['generate', 'cat', '--out', out, '--controlnet', cn, '--control-image', wide, '-W', '512', '-H', '512']);
    expect([c.code, c.stderr]).toEqual([2, `fewstep generate: --control-image ${wide}: the image is 8200×8; at most ${MAX_IMAGE_SIDE} pixels a side\n`]);
    await expect(readImageFlag(wide, '--init-images')).rejects.toThrow(`--init-images ${wide}: the image is 8200×8; at most ${MAX_IMAGE_SIDE} pixels a side`);
    // A 4096-wide one is taken.
    const ok = join(work, 'ok.png');
    writeFileSync(ok, blackPng(MAX_IMAGE_SIDE, 8));
    expect((await readImageFlag(ok, '--init-image')).width).toBe(MAX_IMAGE_SIDE);
  });

  it('JPEG, WebP and interlaced PNG (libvips) get the same limits from their headers; a PNG over a limit never reaches libvips', async () => {
    const sharp = await loadSharp();
    const jpeg = new Uint8Array(await sharp({ create: { width: 8200, height: 8, channels: 3, background: '#000' } }).jpeg().toBuffer());
    const webp = new Uint8Array(await sharp({ create: { width: 8, height: 4100, channels: 3, background: '#000' } }).webp().toBuffer());
    const interlaced = new Uint8Array(await sharp({ create: { width: 4100, height: 8, channels: 3, background: '#000' } }).png({ progressive: true }).toBuffer());
    await expect(decodeImage(jpeg, 'a.jpg', { maxSide: 4096 })).rejects.toThrow(new ResourceLimitError('a.jpg: the image is 8200×8; at most 4096 pixels a side'));
    await expect(decodeImage(webp, 'a.webp', { maxSide: 4096 })).rejects.toThrow(new ResourceLimitError('a.webp: the image is 8×4100; at most 4096 pixels a side'));
    await expect(decodeImage(interlaced, 'a.png', { maxSide: 4096 })).rejects.toThrow(new ResourceLimitError('a.png: the image is 4100×8; at most 4096 pixels a side'));
    await expect(decodeImage(jpeg, 'a.jpg', { maxPixels: 60_000 })).rejects.toThrow('a.jpg: the image is 8200×8 = 65600 pixels; at most 60000');
    expect((await decodeImage(interlaced, 'a.png')).width).toBe(4100);
    // The 1 MB 16384² PNG: refused from IHDR, not retried through libvips.
    const r = await measured(() => decodeImage(hugeDimensionsPng(), 'huge.png'));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect(r.ms).toBeLessThan(1000);
    // A normal image is unchanged.
    const img = await decodeImage(await encodePng({ width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) }), 'n.png');
    expect([...img.data]).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
