// CLIPModel (vision + text towers, projections, logit_scale) and CLIP score against transformers 4.36.2 on the
// golden clip_score case (a reduced CLIPModel: text 2 × 32, vision 2 × 48 on 224² in 14² patches, projections to 24;
// three images, three prompts), the parameter count of openai/clip-vit-large-patch14 from its config alone, the
// tokenizer + image processor + model end to end from the raw images (CLIPScorer), and the typed errors.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, ShapeError, Tensor, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  CLIPModel,
  CLIPScorer,
  CLIPTextModelWithProjection,
  CLIPVisionModelWithProjection,
  ConfigError,
  ModelFolderError,
  RenamedSource,
  SafetensorsSource,
  clipConfig,
  clipScore,
  l2NormalizeRows,
  loadComponent,
  type RGBImage,
} from '@fewstep/models';
import { CLIP_VIT_L14 } from '@fewstep/models/testing';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { expectClose, type Tol } from '../helpers/compare';
import { componentDir, goldenRoot, openGolden, type GoldenCase } from './golden';

afterAll(closeDevice);

const CASE = 'clip_score';
const caseDir = join(goldenRoot, CASE);
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

/**
 * f16 weights and activations (f32 accumulation; the CPU tail in f32). Measured on lavapipe against transformers'
 * f32: image/text embeds (unit length) 1.5e-4 / 3.6e-4, poolers (|x| ≤ 2.6) 2.0e-3, logits (≈ 9) 1.1e-2, clip
 * score (≈ 60) 1.6e-2 max abs. Bounds: about 3× that plus 1e-3 relative.
 */
const F16_TOL: Record<string, Tol> = {
  'out.image_embeds': { atol: 1e-3, rtol: 1e-3 },
  'out.text_embeds': { atol: 1e-3, rtol: 1e-3 },
  'out.vision_pooler_output': { atol: 6e-3, rtol: 1e-3 },
  'out.text_pooler_output': { atol: 6e-3, rtol: 1e-3 },
  'out.logits_per_image': { atol: 3e-2, rtol: 1e-3 },
  'out.clip_score': { atol: 5e-2, rtol: 1e-3 },
};

async function inputs(g: GoldenCase, d: Device) {
  const shape = (k: string) => g.io.info(k).shape;
  return {
    inputIds: Tensor.from(d, (await g.io.read('in.input_ids', 'i32')) as Int32Array, shape('in.input_ids'), 'i32'),
    attentionMask: Tensor.from(d, (await g.io.read('in.attention_mask', 'i32')) as Int32Array, shape('in.attention_mask'), 'i32'),
    pixelValues: Tensor.from(d, (await g.io.read('in.pixel_values', 'f32')) as Float32Array, shape('in.pixel_values'), 'f32'),
  };
}

/** The case's raw images (HWC float32 holding uint8 values). */
async function rawImages(g: GoldenCase): Promise<RGBImage[]> {
  const out: RGBImage[] = [];
  for (let i = 0; g.io.has(`in.image_${i}`); i++) {
    const [h, w] = g.io.info(`in.image_${i}`).shape as [number, number, number];
    out.push({ width: w, height: h, data: Uint8Array.from((await g.io.read(`in.image_${i}`, 'f32')) as Float32Array) });
  }
  return out;
}

const fmt = (name: string, maxAbs: number, tol: Tol) => `${name}: max abs ${maxAbs.toExponential(2)} (atol ${tol.atol.toExponential(2)}, rtol ${tol.rtol})`;

describe('CLIPModel (golden clip_score, transformers 4.36.2)', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`forward: embeddings, poolers, logits, clip score (${dtype})`, async () => {
      const d = await gpuDevice();
      const g = await openGolden(CASE);
      const [dir, cleanup] = componentDir(CASE);
      const model = await CLIPModel.fromFolder(nodeFiles, dir, d, { dtype });
      cleanup();
      const x = await inputs(g, d);
      try {
        expect(model.dtype).toBe(dtype);
        expect(model.config.projection_dim).toBe(24);
        expect(model.config.vision_config.patch_size).toBe(14);
        expect(model.config.text_config.eos_token_id).toBe(2);
        const o = await model.forward(x);
        const got: Record<string, Float32Array> = {
          'out.image_embeds': await o.imageEmbeds.readF32(),
          'out.text_embeds': await o.textEmbeds.readF32(),
          'out.vision_pooler_output': await o.visionPoolerOutput.readF32(),
          'out.text_pooler_output': await o.textPoolerOutput.readF32(),
          'out.logits_per_image': await o.logitsPerImage.readF32(),
        };
        got['out.clip_score'] = clipScore({ data: got['out.image_embeds']!, shape: [3, 24] }, { data: got['out.text_embeds']!, shape: [3, 24] });
        expect(Object.keys(got).sort()).toEqual(Object.keys(g.caseJson.outputs).sort());
        // logits_per_text is logits_per_image transposed.
        const lpt = await o.logitsPerText.readF32();
        for (let i = 0; i < 3; i++) for (let t = 0; t < 3; t++) expect(lpt[t * 3 + i]).toBe(got['out.logits_per_image']![i * 3 + t]);
        const report: string[] = [];
        for (const [key, spec] of Object.entries(g.caseJson.outputs)) {
          const tol = dtype === 'f32' ? spec.suggested : F16_TOL[key]!;
          const c = expectClose(got[key]!, (await g.io.read(key, 'f32')) as Float32Array, tol, `${CASE} ${dtype} ${key}`);
          report.push(fmt(key, c.maxAbs, tol));
        }
        console.log(`${CASE} ${dtype}\n  ${report.join('\n  ')}`);
        for (const t of Object.values(o)) t.dispose();
      } finally {
        for (const t of Object.values(x)) t.dispose();
        model.dispose();
        await g.io.close();
      }
    });
  }

  it('get_image_features / get_text_features: the projections before normalisation; the text tower is causal, so the mask changes nothing', async () => {
    const d = await gpuDevice();
    const g = await openGolden(CASE);
    const [dir, cleanup] = componentDir(CASE);
    const model = await CLIPModel.fromFolder(nodeFiles, dir, d);
    cleanup();
    const x = await inputs(g, d);
    try {
      const img = await d.scope(() => model.getImageFeatures(x.pixelValues).readF32());
      const txt = await d.scope(async () => (await model.getTextFeatures(x.inputIds, x.attentionMask)).readF32());
      const noMask = await d.scope(async () => (await model.getTextFeatures(x.inputIds)).readF32());
      const tol = g.caseJson.outputs['out.image_embeds']!.suggested;
      expectClose(l2NormalizeRows({ data: img, shape: [3, 24] }), (await g.io.read('out.image_embeds', 'f32')) as Float32Array, tol, 'normalised get_image_features');
      expectClose(l2NormalizeRows({ data: txt, shape: [3, 24] }), (await g.io.read('out.text_embeds', 'f32')) as Float32Array, tol, 'normalised get_text_features');
      expectClose(noMask, txt, { atol: 1e-6, rtol: 1e-6 }, 'text features without attention_mask');
      // The raw projections are not unit length (transformers' get_*_features do not normalise).
      expect(Math.hypot(...img.subarray(0, 24))).not.toBeCloseTo(1, 2);
      const score = clipScore({ data: img, shape: [3, 24] }, { data: txt, shape: [3, 24] });
      expectClose(score, (await g.io.read('out.clip_score', 'f32')) as Float32Array, g.caseJson.outputs['out.clip_score']!.suggested, 'clipScore of raw features');
    } finally {
      for (const t of Object.values(x)) t.dispose();
      model.dispose();
      await g.io.close();
    }
  });

  it('CLIPTextModelWithProjection and CLIPVisionModelWithProjection: the same towers from their own keys', async () => {
    const d = await gpuDevice();
    const g = await openGolden(CASE);
    const cfg = readJson(join(caseDir, 'config.json'));
    const src = await SafetensorsSource.open(nodeFiles, [join(caseDir, 'model.safetensors')]);
    const subset = (prefixes: string[]) => RenamedSource.of(src, new Map(src.keys().filter((k) => prefixes.some((p) => k.startsWith(p))).map((k) => [k, k])));
    const text = await CLIPTextModelWithProjection.fromSource(subset(['text_model.', 'text_projection.']), cfg, d);
    const vision = await CLIPVisionModelWithProjection.fromSource(subset(['vision_model.', 'visual_projection.']), cfg, d);
    await src.close();
    const x = await inputs(g, d);
    try {
      expect(text.config.hidden_size).toBe(32);
      expect(vision.config.hidden_size).toBe(48);
      const t = await text.forward(x.inputIds, { attentionMask: x.attentionMask });
      const v = vision.forward(x.pixelValues);
      expect(v.lastHiddenState.shape).toEqual([3, 257, 48]);
      const tol = g.caseJson.outputs['out.text_embeds']!.suggested;
      expectClose(l2NormalizeRows({ data: await t.textEmbeds.readF32(), shape: [3, 24] }), (await g.io.read('out.text_embeds', 'f32')) as Float32Array, tol, 'CLIPTextModelWithProjection text_embeds');
      expectClose(await t.poolerOutput.readF32(), (await g.io.read('out.text_pooler_output', 'f32')) as Float32Array, tol, 'CLIPTextModelWithProjection pooler');
      expectClose(l2NormalizeRows({ data: await v.imageEmbeds.readF32(), shape: [3, 24] }), (await g.io.read('out.image_embeds', 'f32')) as Float32Array, tol, 'CLIPVisionModelWithProjection image_embeds');
      expectClose(await v.poolerOutput.readF32(), (await g.io.read('out.vision_pooler_output', 'f32')) as Float32Array, tol, 'CLIPVisionModelWithProjection pooler');
      for (const r of [t.lastHiddenState, t.textEmbeds, ...t.hiddenStates, v.lastHiddenState, v.poolerOutput, v.imageEmbeds]) r.dispose();
    } finally {
      for (const t of Object.values(x)) t.dispose();
      text.dispose();
      vision.dispose();
      await g.io.close();
    }
  });

  it('loadComponent builds a CLIPModel from architectures[0]', async () => {
    const d = await gpuDevice();
    const [dir, cleanup] = componentDir(CASE);
    try {
      const m = await loadComponent(nodeFiles, dir, d);
      expect(m).toBeInstanceOf(CLIPModel);
      m.dispose();
    } finally {
      cleanup();
    }
  });
});

describe('CLIPModel parameters (no weights)', () => {
  it('openai/clip-vit-large-patch14 (real_config.json): 427,616,513 parameters; the known config is the same model', () => {
    const real = readJson(join(caseDir, 'real_config.json'));
    const caseJson = readJson(join(caseDir, 'case.json')) as { real_model: { parameters: number } };
    expect(CLIPModel.parameterCount(real)).toBe(427_616_513);
    expect(caseJson.real_model.parameters).toBe(427_616_513);
    expect([...CLIPModel.describe(CLIP_VIT_L14)]).toEqual([...CLIPModel.describe(real)]);
    const shapes = CLIPModel.describe(real);
    expect(shapes.get('vision_model.embeddings.patch_embedding.weight')).toEqual([1024, 3, 14, 14]);
    expect(shapes.get('vision_model.embeddings.position_embedding.weight')).toEqual([257, 1024]);
    expect(shapes.get('vision_model.pre_layrnorm.weight')).toEqual([1024]);
    expect(shapes.get('visual_projection.weight')).toEqual([768, 1024]);
    expect(shapes.get('text_projection.weight')).toEqual([768, 768]);
    expect(shapes.get('logit_scale')).toEqual([]);
  });

  it("describe equals the golden model's state dict (1,681,313 parameters)", async () => {
    const src = await SafetensorsSource.open(nodeFiles, [join(caseDir, 'model.safetensors')]);
    const want = new Map(src.keys().map((k) => [k, src.shape(k)]));
    await src.close();
    const got = CLIPModel.describe(readJson(join(caseDir, 'config.json')));
    const sorted = (m: Map<string, number[]>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));
    expect(sorted(got)).toEqual(sorted(want));
    expect(CLIPModel.parameterCount(readJson(join(caseDir, 'config.json')))).toBe(1_681_313);
  });
});

describe('CLIP random weights (benchmarks)', () => {
  it('CLIPModel.random: logit_scale = logit_scale_init_value, class_embedding in ±1/sqrt(D), a finite forward', async () => {
    const d = await gpuDevice();
    const cfg = readJson(join(caseDir, 'config.json'));
    const src = CLIPModel.randomSource(cfg, 7);
    expect(src.shape('logit_scale')).toEqual([]);
    expect([...((await src.read('logit_scale', 'f32')) as Float32Array)]).toEqual([Math.fround(2.6592)]);
    const cls = (await src.read('vision_model.embeddings.class_embedding', 'f32')) as Float32Array;
    expect(cls.length).toBe(48);
    expect(Math.max(...cls.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(48));
    const m = await CLIPModel.random(cfg, d, { seed: 7 });
    const v = await CLIPVisionModelWithProjection.random(cfg['vision_config'] as Record<string, unknown>, d);
    const px = Tensor.from(d, new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i)), [1, 3, 224, 224]);
    const ids = Tensor.from(d, [49406, 320, 49407], [1, 3], 'i32');
    try {
      expect(await m.logitScale()).toBe(Math.fround(Math.exp(Math.fround(2.6592))));
      const o = await m.forward({ inputIds: ids, pixelValues: px });
      for (const t of Object.values(o)) expect((await t.readF32()).every(Number.isFinite)).toBe(true);
      for (const t of Object.values(o)) t.dispose();
      const vo = v.forward(px);
      expect(vo.imageEmbeds.shape).toEqual([1, 24]);
      expect((await vo.imageEmbeds.readF32()).every(Number.isFinite)).toBe(true);
      for (const t of Object.values(vo)) t.dispose();
    } finally {
      px.dispose();
      ids.dispose();
      m.dispose();
      v.dispose();
    }
  });
});

/** openai/clip-vit-large-patch14's preprocessor_config.json. */
const PREPROCESSOR_L14 = {
  crop_size: 224, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, size: 224,
};

/** A CLIPModel folder laid out like openai/clip-vit-large-patch14 (all at the root) from the golden model and the SD1.5 tokenizer. */
function scorerDir(opts: { preprocessor?: boolean } = {}): [string, () => void] {
  const [dir, cleanup] = componentDir(CASE);
  const tok = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;
  for (const f of ['vocab.json', 'merges.txt']) symlinkSync(join(tok, f), join(dir, f));
  for (const f of ['tokenizer_config.json', 'special_tokens_map.json']) symlinkSync(join(tok, 'sd15', f), join(dir, f));
  if (opts.preprocessor !== false) writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(PREPROCESSOR_L14));
  return [dir, cleanup];
}

describe('CLIPScorer (tokenizer + image processor + CLIPModel, torchmetrics CLIPScore)', () => {
  it('scores the raw images against the prompts as transformers + torchmetrics do', async () => {
    const d = await gpuDevice();
    const g = await openGolden(CASE);
    const [dir, cleanup] = scorerDir();
    const prompts = (readJson(join(caseDir, 'case.json')) as { prompts: string[] }).prompts;
    try {
      const scorer = await CLIPScorer.fromFolder(nodeFiles, dir, d, { batchSize: 2 });
      // torchmetrics: padding=True pads to the longest prompt ("a photo of a cat": BOS + 5 + EOS = 7 tokens).
      const t = scorer.tokenize(prompts);
      expect(t.shape).toEqual([3, 7]);
      const ids = (await g.io.read('in.input_ids', 'i32')) as Int32Array;
      const mask = (await g.io.read('in.attention_mask', 'i32')) as Int32Array;
      for (let b = 0; b < 3; b++) {
        expect([...t.inputIds.subarray(b * 7, b * 7 + 7)]).toEqual([...ids.subarray(b * 77, b * 77 + 7)]);
        expect([...t.attentionMask.subarray(b * 7, b * 7 + 7)]).toEqual([...mask.subarray(b * 77, b * 77 + 7)]);
      }
      const scores = await scorer.score(await rawImages(g), prompts);
      const tol = g.caseJson.outputs['out.clip_score']!.suggested;
      const c = expectClose(scores, (await g.io.read('out.clip_score', 'f32')) as Float32Array, tol, 'CLIPScorer.score');
      console.log(`CLIPScorer.score ${scores.map((s) => s.toFixed(4)).join(', ')}: ${fmt('clip_score', c.maxAbs, tol)}`);
      // A prompt longer than max_position_embeddings is cut to 77 tokens (torchmetrics), its EOS lost.
      const long = scorer.tokenize([Array(100).fill('cat').join(' ')]);
      expect(long.shape).toEqual([1, 77]);
      expect(long.inputIds[76]).not.toBe(49407);
      expect(await scorer.score([], [])).toEqual([]);
      scorer.dispose();
    } finally {
      cleanup();
      await g.io.close();
    }
  });
});

describe('CLIP errors', () => {
  it('pixel_values of the wrong size or dtype: ShapeError naming pixel_values and the expected shape', async () => {
    const d = await gpuDevice();
    const [dir, cleanup] = componentDir(CASE);
    const model = await CLIPModel.fromFolder(nodeFiles, dir, d);
    cleanup();
    const px = Tensor.empty(d, [1, 3, 256, 256]);
    const ids = Tensor.from(d, [49406, 49407], [1, 2], 'i32');
    try {
      let e: unknown;
      try {
        model.getImageFeatures(px);
      } catch (err) {
        e = err;
      }
      expect(e).toBeInstanceOf(ShapeError);
      expect(e).toMatchObject({ code: 'shape_mismatch', field: 'pixel_values' });
      expect((e as Error).message).toBe('CLIPModel: pixel_values has shape [1, 3, 256, 256], expected [batch, 3, 224, 224] (vision_config num_channels 3, image_size 224)');
      await expect(model.forward({ inputIds: ids, pixelValues: px })).rejects.toThrow(ShapeError);
      const ints = Tensor.empty(d, [1, 3, 224, 224], 'i32');
      expect(() => model.getImageFeatures(ints)).toThrow('CLIPModel: pixel_values must be float (f32 or f16), got i32');
      ints.dispose();
    } finally {
      px.dispose();
      ids.dispose();
      model.dispose();
    }
  });

  it('a config without vision_config (or text_config) is a ConfigError naming it', () => {
    const cfg = readJson(join(caseDir, 'config.json'));
    const { vision_config: _v, ...noVision } = cfg;
    const { text_config: _t, ...noText } = cfg;
    expect(() => CLIPModel.describe(noVision)).toThrow(ConfigError);
    expect(() => clipConfig(noVision, 'x/config.json')).toThrow('x/config.json: no "vision_config" (a CLIPModel config.json holds both text_config and vision_config)');
    expect(() => clipConfig(noText)).toThrow('config.json: no "text_config"');
    expect(() => clipConfig({ ...cfg, vision_config: { ...(cfg['vision_config'] as object), hidden_size: 50 } }, 'x/config.json')).toThrow(
      'x/config.json vision_config: hidden_size 50 is not divisible by num_attention_heads 4',
    );
    expect(() => clipConfig({ ...cfg, projection_dim: '24' })).toThrow(ConfigError);
  });

  it('CLIPScorer: a folder without preprocessor_config.json is ModelFolderError; unpaired inputs InvalidArgumentError', async () => {
    const d = await gpuDevice();
    const [dir, cleanup] = scorerDir({ preprocessor: false });
    try {
      const e = CLIPScorer.fromFolder(nodeFiles, dir, d);
      await expect(e).rejects.toThrow(ModelFolderError);
      await expect(CLIPScorer.fromFolder(nodeFiles, dir, d)).rejects.toThrow('no preprocessor_config.json');
    } finally {
      cleanup();
    }
    const [dir2, cleanup2] = scorerDir();
    try {
      const scorer = await CLIPScorer.fromFolder(nodeFiles, dir2, d);
      const img: RGBImage = { width: 2, height: 2, data: new Uint8Array(12) };
      await expect(scorer.score([img], ['a', 'b'])).rejects.toThrow(InvalidArgumentError);
      await expect(scorer.score([img], ['a', 'b'])).rejects.toThrow('CLIPScorer.score pairs images[i] with prompts[i]: got 1 images and 2 prompts');
      scorer.dispose();
    } finally {
      cleanup2();
    }
    expect(() => clipScore({ data: new Float32Array(4), shape: [2, 2] }, { data: new Float32Array(2), shape: [1, 2] })).toThrow(InvalidArgumentError);
    const dir3 = mkdtempSync(join(tmpdir(), 'fewstep-clip-'));
    try {
      await expect(CLIPScorer.fromFolder(nodeFiles, dir3, d)).rejects.toThrow(ModelFolderError);
    } finally {
      rmSync(dir3, { recursive: true, force: true });
    }
  });
});
