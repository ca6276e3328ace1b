// transformers 4.36 CLIPImageProcessor (no GPU): the golden clip_score case's pixel_values from its three raw images
// (512×512, 96×128, 300×200: square, portrait and landscape through shortest-edge 224 + center crop), the config
// forms of preprocessor_config.json, and the crop/pad rounding of transformers' center_crop.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { InvalidArgumentError, SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  CLIPImageProcessor,
  OPENAI_CLIP_STD,
  centerCropRGB,
  clipResizeOutputSize,
} from '../../packages/models/src/clip/image_processing_clip.js';
import { ConfigError } from '../../packages/models/src/errors.js';
import type { RGBImage } from '../../packages/models/src/image/rgb_image.js';

const caseDir = new URL('../fixtures/golden/clip_score/', import.meta.url).pathname;

/** The case's raw images: HWC float32 holding the uint8 values. */
async function goldenInputs(): Promise<{ images: RGBImage[]; pixelValues: Float32Array; shape: number[] }> {
  const io = await SafetensorsFile.open(nodeFiles, join(caseDir, 'io.safetensors'));
  try {
    const images: RGBImage[] = [];
    for (let i = 0; io.has(`in.image_${i}`); i++) {
      const [h, w, c] = io.info(`in.image_${i}`).shape as [number, number, number];
      expect(c).toBe(3);
      const f = (await io.read(`in.image_${i}`)) as Float32Array;
      const data = Uint8Array.from(f);
      expect(data.every((v, k) => v === f[k])).toBe(true); // integers 0..255, as the case says
      images.push({ width: w, height: h, data });
    }
    const pixelValues = (await io.read('in.pixel_values')) as Float32Array;
    return { images, pixelValues, shape: io.info('in.pixel_values').shape };
  } finally {
    await io.close();
  }
}

/** openai/clip-vit-large-patch14's preprocessor_config.json (the older int form of size / crop_size). */
const OPENAI_L14 = {
  crop_size: 224,
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 224,
};
/** The same as a current transformers writes it. */
const CURRENT = {
  crop_size: { height: 224, width: 224 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_processor_type: 'CLIPImageProcessor',
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 224 },
};

describe('CLIPImageProcessor (transformers 4.36)', () => {
  it('golden clip_score pixel_values: every value equal', async () => {
    const g = await goldenInputs();
    expect(g.images.map((i) => `${i.width}x${i.height}`)).toEqual(['512x512', '96x128', '300x200']);
    for (const cfg of [{}, OPENAI_L14, CURRENT]) {
      const out = new CLIPImageProcessor(cfg).preprocess(g.images);
      expect(out.shape).toEqual(g.shape);
      // Requirement: within 1/255 in rescaled units (|Δ| · std) on ≥ 99.9 % of values; reached: bit-exact.
      const plane = 224 * 224;
      let within = 0, exact = 0, maxRescaled = 0;
      for (let i = 0; i < g.pixelValues.length; i++) {
        const d = Math.abs(out.pixelValues[i]! - g.pixelValues[i]!) * OPENAI_CLIP_STD[Math.floor(i / plane) % 3]!;
        maxRescaled = Math.max(maxRescaled, d);
        if (d <= 1 / 255 + 1e-6) within++;
        if (out.pixelValues[i] === g.pixelValues[i]) exact++;
      }
      expect(within / g.pixelValues.length).toBeGreaterThanOrEqual(0.999);
      expect({ exact, maxRescaled }).toEqual({ exact: g.pixelValues.length, maxRescaled: 0 });
    }
  });

  it('one image at a time gives the batch rows', async () => {
    const g = await goldenInputs();
    const p = new CLIPImageProcessor();
    const n = 3 * 224 * 224;
    g.images.forEach((img, i) => {
      const one = p.preprocess(img);
      expect(one.shape).toEqual([1, 3, 224, 224]);
      const want = g.pixelValues.subarray(i * n, (i + 1) * n);
      expect(one.pixelValues.every((v, k) => v === want[k])).toBe(true);
    });
  });

  it('resize sizes: shortest edge, int() truncation of the long side, explicit height/width', () => {
    expect(clipResizeOutputSize(128, 96, { shortest_edge: 224 })).toEqual([298, 224]); // 224·128/96 = 298.67
    expect(clipResizeOutputSize(200, 300, { shortest_edge: 224 })).toEqual([224, 336]);
    expect(clipResizeOutputSize(512, 512, { shortest_edge: 224 })).toEqual([224, 224]);
    expect(clipResizeOutputSize(7, 1000, { shortest_edge: 224 })).toEqual([224, 32000]);
    expect(clipResizeOutputSize(100, 50, { height: 30, width: 40 })).toEqual([30, 40]);
    expect(clipResizeOutputSize(100, 50, { shortest_edge: 20, longest_edge: 30 })).toEqual([40, 20]); // longest_edge unused, as in 4.36
  });

  it('center crop: floor-division offsets, zero padding when the image is smaller (one short for odd differences)', () => {
    const img: RGBImage = { width: 5, height: 4, data: Uint8Array.from({ length: 60 }, (_, i) => i + 1) };
    const px = (im: RGBImage, x: number, y: number) => Array.from(im.data.subarray((y * im.width + x) * 3, (y * im.width + x) * 3 + 3));
    const a = centerCropRGB(img, 2, 2); // top (4-2)//2 = 1, left (5-2)//2 = 1
    expect([a.width, a.height]).toEqual([2, 2]);
    expect(px(a, 0, 0)).toEqual(px(img, 1, 1));
    const b = centerCropRGB(img, 3, 2); // top (4-3)//2 = 0, left 1
    expect(px(b, 0, 0)).toEqual(px(img, 1, 0));
    // 5×4 → 8×8: transformers pads to 8×8 with the image at (1, 2) and slices rows max(0,-2+2)…min(8,-2+8+2) = 0…8,
    // cols max(0,-2+1)…min(8,-2+8+1) = 0…7: 7 wide.
    const c = centerCropRGB(img, 8, 8);
    expect([c.width, c.height]).toEqual([7, 8]);
    expect(px(c, 1, 2)).toEqual(px(img, 0, 0));
    expect(px(c, 0, 0)).toEqual([0, 0, 0]);
    const d = centerCropRGB(img, 6, 7); // even differences: exactly the crop size
    expect([d.width, d.height]).toEqual([7, 6]);
    expect(px(d, 1, 1)).toEqual(px(img, 0, 0));
  });

  it('rescale / normalize switches and the config forms', () => {
    const img: RGBImage = { width: 2, height: 1, data: Uint8Array.from([0, 128, 255, 1, 2, 3]) };
    const raw = new CLIPImageProcessor({ do_resize: false, do_center_crop: false, do_normalize: false, do_rescale: false }).preprocess(img);
    expect(Array.from(raw.pixelValues)).toEqual([0, 1, 128, 2, 255, 3]);
    const r = new CLIPImageProcessor({ do_resize: false, do_center_crop: false, do_normalize: false }).preprocess(img);
    expect(r.pixelValues[4]).toBe(1);
    expect(r.pixelValues[2]).toBe(Math.fround(128 / 255));
    const n = new CLIPImageProcessor({ do_resize: false, do_center_crop: false, image_mean: 0.5, image_std: [0.5, 0.25, 0.5] }).preprocess(img);
    expect(n.pixelValues[0]).toBe(-1);
    expect(n.pixelValues[4]).toBe(Math.fround(Math.fround(Math.fround(255 / 255) - 0.5) / 0.5));
    const p = new CLIPImageProcessor({ size: 7, crop_size: [3, 5] });
    expect(p.size).toEqual({ shortest_edge: 7 });
    expect(p.cropSize).toEqual({ height: 3, width: 5 });
    expect(new CLIPImageProcessor({ size: { shortest_edge: 4 }, use_square_size: true }).size).toEqual({ height: 4, width: 4 });
    expect(new CLIPImageProcessor({ resample: 1 }).resample).toBe('lanczos');
  });

  it('bad configs are ConfigErrors, bad images InvalidArgumentErrors', () => {
    expect(() => new CLIPImageProcessor({ size: { width: 3 } })).toThrow(ConfigError);
    expect(() => new CLIPImageProcessor({ crop_size: { shortest_edge: 3 } })).toThrow(/crop_size must have 'height' and 'width'/);
    expect(() => new CLIPImageProcessor({ resample: 9 })).toThrow(ConfigError);
    expect(() => new CLIPImageProcessor({ image_mean: [1, 2] })).toThrow(/one per RGB channel/);
    expect(() => new CLIPImageProcessor({ do_resize: 'yes' as unknown as boolean })).toThrow(ConfigError);
    const p = new CLIPImageProcessor();
    expect(() => p.preprocess([])).toThrow(InvalidArgumentError);
    expect(() => p.preprocess({ width: 2, height: 2, data: new Uint8Array(3) })).toThrow(/images\[0\]/);
    const q = new CLIPImageProcessor({ do_center_crop: false, size: 4 });
    const a: RGBImage = { width: 4, height: 4, data: new Uint8Array(48) };
    const b: RGBImage = { width: 8, height: 4, data: new Uint8Array(96) };
    expect(() => q.preprocess([a, b])).toThrow(/cannot be batched/);
  });

  it('fromFolder reads preprocessor_config.json (or feature_extractor/)', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'clipproc-'));
    mkdirSync(join(dir, 'feature_extractor'));
    writeFileSync(join(dir, 'feature_extractor', 'preprocessor_config.json'), JSON.stringify({ ...OPENAI_L14, size: 32, crop_size: 30 }));
    const p = await CLIPImageProcessor.fromFolder(nodeFiles, dir);
    expect(p.size).toEqual({ shortest_edge: 32 });
    expect(p.cropSize).toEqual({ height: 30, width: 30 });
    writeFileSync(join(dir, 'preprocessor_config.json'), '{ nope');
    await expect(CLIPImageProcessor.fromFolder(nodeFiles, dir)).rejects.toThrow(/not valid JSON/);
  });
});
