// Pillow-exact resampling (no GPU): resizeRGB against Pillow 9.4's Image.resize for every filter on awkward sizes
// (odd, 1-pixel, extreme aspect ratios, up/down by non-integer factors, fractional and empty boxes), and fitImage
// against diffusers 0.25.1 VaeImageProcessor's resize modes (default / crop / fill), byte for byte. The expected bytes
// come from test/fixtures/resample/make_fixtures.py (see the README there).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '@fewstep/tensor';
import { resampleFilter, resizeRGB, type ResampleFilter } from '../../packages/models/src/image/resample.js';
import { fitImage, pasteRGB, type FitMode } from '../../packages/models/src/image/image_fit.js';
import type { RGBImage } from '../../packages/models/src/image/rgb_image.js';

const dir = new URL('../fixtures/resample/', import.meta.url).pathname;

interface Index {
  pillow: string;
  images: Record<string, { width: number; height: number; offset: number }>;
  resize: { src: string; width: number; height: number; filter: ResampleFilter; box: [number, number, number, number] | null; offset: number }[];
  fit: { src: string; width: number; height: number; mode: 'default' | 'crop' | 'fill'; offset: number }[];
}
const index = JSON.parse(readFileSync(dir + 'resample.json', 'utf8')) as Index;
const blob = new Uint8Array(readFileSync(dir + 'resample.bin'));
const slice = (offset: number, w: number, h: number) => blob.slice(offset, offset + w * h * 3);
const image = (name: string): RGBImage => {
  const m = index.images[name]!;
  return { width: m.width, height: m.height, data: slice(m.offset, m.width, m.height) };
};

/** Where two byte arrays differ: the count and the first few (pixel, channel, got, want). */
function diff(got: Uint8Array, want: Uint8Array, width: number): string {
  const bad: string[] = [];
  let n = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    if (n++ < 5) bad.push(`(${Math.floor(i / 3) % width},${Math.floor(i / 3 / width)})[${i % 3}] ${got[i]} vs ${want[i]}`);
  }
  return n ? `${n} bytes differ: ${bad.join('; ')}` : 'equal';
}

describe('resizeRGB = Pillow Image.resize', () => {
  it(`fixture made by Pillow ${index.pillow}`, () => {
    expect(index.pillow).toBe('9.4.0');
    expect(index.resize.length).toBeGreaterThan(100);
  });

  for (const c of index.resize) {
    const src = index.images[c.src]!;
    const name = `${c.filter}: ${c.src} → ${c.width}×${c.height}${c.box ? ` box [${c.box.join(', ')}]` : ''}`;
    it(name, () => {
      const input = image(c.src);
      const before = input.data.slice();
      const out = resizeRGB(input, c.width, c.height, c.filter, c.box ? { box: c.box } : {});
      expect([out.width, out.height]).toEqual([c.width, c.height]);
      expect(diff(out.data, slice(c.offset, c.width, c.height), c.width)).toBe('equal');
      expect(input.data).toEqual(before); // the input is not touched
      expect(src.width).toBe(input.width);
    });
  }

  it('same size, whole box: a copy', () => {
    const a = image('s29x31');
    const b = resizeRGB(a, 29, 31, 'lanczos', { box: [0, 0, 29, 31] });
    expect(b.data).toEqual(a.data);
    expect(b.data).not.toBe(a.data);
  });

  it('bad sizes, boxes, filters and images are InvalidArgumentErrors', () => {
    const a = image('n37x23');
    const err = (f: () => unknown, field: string, msg: RegExp) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidArgumentError);
        expect((e as InvalidArgumentError).field).toBe(field);
        expect((e as Error).message).toMatch(msg);
        return;
      }
      throw new Error('expected a throw');
    };
    err(() => resizeRGB(a, 0, 5), 'size', /positive integers, got 0×5/);
    err(() => resizeRGB(a, 2.5, 5), 'size', /positive integers/);
    err(() => resizeRGB(a, 5, 5, 'bicubic', { box: [-1, 0, 5, 5] }), 'box', /can't be negative/);
    err(() => resizeRGB(a, 5, 5, 'bicubic', { box: [0, 0, 38, 5] }), 'box', /exceed original image size/);
    err(() => resizeRGB(a, 5, 5, 'bicubic', { box: [6, 0, 5, 5] }), 'box', /can't be empty/);
    err(() => resizeRGB(a, 5, 5, 'cubic-ish' as ResampleFilter), 'filter', /unknown resampling filter/);
    err(() => resizeRGB({ width: 2, height: 2, data: new Uint8Array(11) }, 5, 5), 'image', /11 bytes/);
  });

  it('Pillow filter codes and names', () => {
    expect([0, 1, 2, 3, 4, 5].map((c) => resampleFilter(c))).toEqual(['nearest', 'lanczos', 'bilinear', 'bicubic', 'box', 'hamming']);
    expect(resampleFilter('BICUBIC')).toBe('bicubic');
    expect(resampleFilter('antialias')).toBe('lanczos');
    expect(() => resampleFilter(6)).toThrow(InvalidArgumentError);
  });
});

describe('fitImage = diffusers VaeImageProcessor.resize', () => {
  const modes: Record<string, FitMode> = { default: 'stretch', crop: 'crop', fill: 'fit' };
  for (const c of index.fit) {
    it(`${modes[c.mode]} (resize_mode="${c.mode}"): ${c.src} → ${c.width}×${c.height}`, () => {
      const out = fitImage(image(c.src), c.width, c.height, modes[c.mode]);
      expect([out.width, out.height]).toEqual([c.width, c.height]);
      expect(diff(out.data, slice(c.offset, c.width, c.height), c.width)).toBe('equal');
    });
  }

  it("'fit' leaves the last row / column black where the bands do not reach, as diffusers does", () => {
    // 37×23 into 20×17: src 20×12, bands of 2 rows at 0 and 14 → row 16 stays black; 19×44 into 11×10: src 4×10,
    // bands of 3 columns at 0 and 7 → column 10 stays black.
    const row = fitImage(image('n37x23'), 20, 17, 'fit');
    expect(row.data.subarray(16 * 20 * 3).every((v) => v === 0)).toBe(true);
    expect(row.data.subarray(15 * 20 * 3, 16 * 20 * 3).some((v) => v !== 0)).toBe(true);
    const col = fitImage(image('n19x44'), 11, 10, 'fit');
    for (let y = 0; y < 10; y++) {
      expect(Array.from(col.data.subarray((y * 11 + 10) * 3, (y * 11 + 11) * 3))).toEqual([0, 0, 0]);
    }
  });

  it('an aspect ratio too extreme for the target size is an InvalidArgumentError', () => {
    // diffusers: src_h = 1 * 8 // 33 = 0, and Pillow refuses a zero-height resize.
    expect(() => fitImage(image('n33x1'), 8, 8, 'fit')).toThrow(/would resize the image to 8×0/);
    expect(() => fitImage(image('n33x1'), 8, 8, 'bogus' as FitMode)).toThrow(InvalidArgumentError);
  });

  it('pasteRGB clips to the destination', () => {
    const dst: RGBImage = { width: 3, height: 2, data: new Uint8Array(18) };
    const src: RGBImage = { width: 2, height: 2, data: Uint8Array.from({ length: 12 }, (_, i) => i + 1) };
    pasteRGB(dst, src, -1, 1);
    expect(Array.from(dst.data)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 6, 0, 0, 0, 0, 0, 0]);
  });
});
