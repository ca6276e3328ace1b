// StableDiffusionPipeline + ControlNet vs diffusers 0.25.1 StableDiffusionControlNetPipeline on golden case
// controlnet_sketch (c): SD1.5 tokenizer (pad <|endoftext|>), clip_text_quickgelu, the DreamShaper-structure UNet
// (no mid block), the sketch ControlNet, TAESD; DEIS and Euler-trailing, 1 step, guidance 0, fixed latents, the
// control image 255 − sketch. Both runs are checked step by step (golden_pipeline.ts tolerances), including the
// ControlNet residuals the UNet consumed; the Euler run goes through fromPretrained({ controlnet: folder }).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  AutoencoderTiny, CLIPTextModel, CLIPTokenizer, ControlNetModel, StableDiffusionPipeline, UNet2DConditionModel, decodePng, invertControlImage,
  preprocessControlImage, readConfig, type RGBImage, type StepTrace,
} from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { componentDir, goldenRoot, openGolden, type GoldenCase } from '../models/golden';
import { checkRun, tolerances, type PipelineCase } from './golden_pipeline';

const tokRoot = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;
const CASE = join(goldenRoot, 'controlnet_sketch');

let d: Device;
let g: GoldenCase;
let c: PipelineCase;
let tokenizer: CLIPTokenizer;
let textEncoder: CLIPTextModel;
let unet: UNet2DConditionModel;
let taesd: AutoencoderTiny;
let controlnet: ControlNetModel;
let unetConfig: Record<string, unknown>;
let controlImage: RGBImage;

beforeAll(async () => {
  d = await gpuDevice();
  g = await openGolden('controlnet_sketch');
  c = g.caseJson as unknown as PipelineCase;
  tokenizer = await CLIPTokenizer.fromFolder(nodeFiles, tokRoot, { configDir: join(tokRoot, 'sd15') });
  const [teDir, c1] = componentDir('clip_text_quickgelu');
  const [vaeDir, c2] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
  try {
    textEncoder = await CLIPTextModel.fromFolder(nodeFiles, teDir, d);
    taesd = await AutoencoderTiny.fromFolder(nodeFiles, vaeDir, d);
  } finally {
    c1();
    c2();
  }
  unet = await UNet2DConditionModel.fromFolder(nodeFiles, join(CASE, 'unet'), d);
  unetConfig = await readConfig(nodeFiles, join(CASE, 'unet'));
  controlnet = await ControlNetModel.fromFolder(nodeFiles, join(CASE, 'controlnet'), d);
  controlImage = { width: 128, height: 128, data: await g.io.readBytes('pipeline.control_image_uint8') };
});

afterAll(async () => {
  for (const m of [textEncoder, unet, taesd, controlnet]) m?.dispose();
  await g?.io.close();
  await closeDevice();
});

/** A pipeline on the shared components; the caller detaches the ControlNet (setControlNet(null)) before dropping it. */
const pipeFor = (run: string, withControlNet = true) => {
  const r = c.runs[run]!;
  return StableDiffusionPipeline.fromComponents(
    { tokenizer, textEncoder, unet, vae: taesd, schedulerConfig: r.scheduler_config, unetConfig, controlnet: withControlNet ? controlnet : undefined },
    { scheduler: r.scheduler },
  );
};

/** The ControlNet residuals of step 0 against `<run>.step0.controlnet_*`. */
async function checkResiduals(run: string, trace: StepTrace): Promise<string[]> {
  const report: string[] = [];
  const tol = tolerances(c.runs[run]!);
  const got = [...trace.controlnetDownBlockResSamples!, trace.controlnetMidBlockResSample!];
  const keys = [0, 1, 2, 3, 4, 5].map((i) => `${run}.step0.controlnet_down_block_res_samples.${i}`).concat(`${run}.step0.controlnet_mid_block_res_sample`);
  expect(got.length).toBe(keys.length);
  for (const [i, key] of keys.entries()) {
    const ref = (await g.io.read(key, 'f32')) as Float32Array;
    const t = tol.perStep(ref);
    const r = expectClose(got[i]!, ref, t, key);
    report.push(`${key}: max abs ${r.maxAbs.toExponential(2)} (atol ${t.atol.toExponential(2)})`);
  }
  return report;
}

describe('StableDiffusionPipeline + ControlNet golden controlnet_sketch (c)', () => {
  it('inputs: SD1.5 tokens, control image = 255 − sketch, preprocess = uint8 / 255 (exact), PNGs decode to the stored bytes', async () => {
    const want = await g.io.read('pipeline.prompt_input_ids', 'i32');
    expect(c.prompts.flatMap((p) => tokenizer.encode(p).inputIds)).toEqual([...want]);

    const sketch = await g.io.readBytes('pipeline.sketch_uint8');
    const sketchRGB: RGBImage = { width: 128, height: 128, data: new Uint8Array(128 * 128 * 3).map((_, i) => sketch[Math.floor(i / 3)]!) };
    expect(Buffer.from(invertControlImage(sketchRGB).data).equals(Buffer.from(controlImage.data))).toBe(true);
    const png = await decodePng(new Uint8Array(readFileSync(join(CASE, 'control_image.png'))));
    expect(Buffer.from(png.data).equals(Buffer.from(controlImage.data))).toBe(true);
    const sketchPng = await decodePng(new Uint8Array(readFileSync(join(CASE, 'sketch.png'))));
    expect(Buffer.from(sketchPng.data).equals(Buffer.from(sketchRGB.data))).toBe(true);

    const pre = preprocessControlImage(controlImage);
    expect(pre.shape).toEqual([1, 3, 128, 128]);
    const ref = (await g.io.read('pipeline.control_image', 'f32')) as Float32Array;
    expect(pre.data.findIndex((v, i) => v !== ref[i])).toBe(-1);
  });

  it('deis_1step_cfg0_taesd (fromComponents)', async () => {
    const run = 'deis_1step_cfg0_taesd';
    const pipe = pipeFor(run);
    const traces: StepTrace[] = [];
    try {
      const report = await checkRun(pipe, g.io, c, run, { latentsKey: 'pipeline.latents_in', generate: { control: { image: controlImage, scale: 1 } }, traces });
      report.push(...(await checkResiduals(run, traces[0]!)));
      console.log(report.join('\n'));
    } finally {
      pipe.setControlNet(null);
    }
  });

  it('euler_trailing_1step_cfg0_taesd via fromPretrained (diffusers folder + controlnet folder; lowMemory bit-exact)', async () => {
    const run = 'euler_trailing_1step_cfg0_taesd';
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-sketch-'));
    try {
      const link = (sub: string, from: string, names: string[], as: string[] = names) => {
        mkdirSync(join(dir, sub), { recursive: true });
        names.forEach((n, i) => symlinkSync(join(from, n), join(dir, sub, as[i]!)));
      };
      link('tokenizer', tokRoot, ['vocab.json', 'merges.txt']);
      link('tokenizer', join(tokRoot, 'sd15'), ['tokenizer_config.json', 'special_tokens_map.json']);
      link('text_encoder', join(goldenRoot, 'clip_text_quickgelu'), ['config.json', 'model.safetensors']);
      link('unet', join(CASE, 'unet'), ['config.json', 'model.safetensors'], ['config.json', 'diffusion_pytorch_model.safetensors']);
      link('vae', join(goldenRoot, 'taesd'), ['config.json', 'model.safetensors'], ['config.json', 'diffusion_pytorch_model.safetensors']);
      link('controlnet', join(CASE, 'controlnet'), ['config.json', 'model.safetensors'], ['config.json', 'diffusion_pytorch_model.safetensors']);
      mkdirSync(join(dir, 'scheduler'));
      writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(c.runs[run]!.scheduler_config));
      writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionControlNetPipeline', _diffusers_version: '0.25.1' }));
      const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, controlnet: join(dir, 'controlnet') });
      const traces: StepTrace[] = [];
      let want: Awaited<ReturnType<StableDiffusionPipeline['generate']>> | undefined;
      try {
        expect(pipe.controlnet).toBeInstanceOf(ControlNetModel);
        expect(pipe.defaults).toMatchObject({ steps: 1, guidance: 0 });
        const report = await checkRun(pipe, g.io, c, run, { latentsKey: 'pipeline.latents_in', generate: { control: { image: controlImage } }, traces });
        report.push(...(await checkResiduals(run, traces[0]!)));
        console.log(report.join('\n'));
        want = await pipe.generate({ prompt: 'a cat on a chair', control: { image: controlImage, scale: 0.8 }, seed: 4 });
      } finally {
        pipe.dispose();
      }
      // lowMemory: the ControlNet is loaded with the UNet for the denoising loop and freed with it; bit-exact.
      d.pool.trim();
      const before = d.pool.stats.inUse;
      const low = await StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, controlnet: join(dir, 'controlnet'), lowMemory: true });
      try {
        expect(d.pool.stats.inUse).toBe(before);
        const got = await low.generate({ prompt: 'a cat on a chair', control: { image: controlImage, scale: 0.8 }, seed: 4 });
        expect(Buffer.from(got.images[0]!.data).equals(Buffer.from(want!.images[0]!.data))).toBe(true);
        expect(Buffer.from(got.latents.data.buffer).equals(Buffer.from(want!.latents.data.buffer))).toBe(true);
        expect(d.pool.stats.inUse - low.promptCache.bytes).toBe(before); // the prompt cache's entries stay by design
      } finally {
        low.dispose();
      }
      // Not a ControlNet folder / a hub id without a resolver: one clear error each.
      await expect(StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, controlnet: join(dir, 'unet') })).rejects.toThrow(
        `controlnet ${join(dir, 'unet')}: config.json names "UNet2DConditionModel", not a ControlNetModel`,
      );
      await expect(StableDiffusionPipeline.fromPretrained(dir, { device: d, io: nodeFiles, controlnet: 'IDKiro/sdxs-512-dreamshaper-sketch' })).rejects.toThrow(
        'controlnet IDKiro/sdxs-512-dreamshaper-sketch: not a local ControlNet folder (no config.json); to load a hub id pass `resolveControlNet`',
      );
      // resolveControlNet maps an id to a folder.
      const seen: string[] = [];
      const p2 = await StableDiffusionPipeline.fromPretrained(dir, {
        device: d, io: nodeFiles, controlnet: 'org/sketch', resolveControlNet: async (id) => (seen.push(id), join(dir, 'controlnet')),
      });
      expect(seen).toEqual(['org/sketch']);
      expect(p2.controlnet).toBeInstanceOf(ControlNetModel);
      p2.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('StableDiffusionPipeline + ControlNet behaviour', () => {
  const latentsOf = async () => ({ data: (await g.io.read('pipeline.latents_in', 'f32')) as Float32Array, shape: g.io.info('pipeline.latents_in').shape });

  it('controlScale 0 equals no ControlNet at all; 0.5 differs; width/height default to the control image', async () => {
    const pipe = pipeFor('deis_1step_cfg0_taesd');
    try {
      const latents = await latentsOf();
      const zero = await pipe.generate({ prompt: c.prompts, init: { kind: 'latents', latents }, control: { image: controlImage, scale: 0 }, seed: 1 });
      const half = await pipe.generate({ prompt: c.prompts, init: { kind: 'latents', latents }, control: { image: controlImage, scale: 0.5 }, seed: 1 });
      pipe.setControlNet(null);
      const plain = await pipe.generate({ prompt: c.prompts, init: { kind: 'latents', latents }, seed: 1 });
      expect(zero.latents.data).toEqual(plain.latents.data);
      expect(half.latents.data).not.toEqual(plain.latents.data);
      pipe.setControlNet(controlnet);
      // No latents, no size: the control image's 128×128.
      const sized = await pipe.generate({ prompt: 'a cat', control: { image: controlImage }, seed: 3 });
      expect([sized.images[0]!.width, sized.images[0]!.height]).toEqual([128, 128]);
    } finally {
      pipe.setControlNet(null);
    }
  });

  it('CFG: the control image is repeated for the uncond half (residuals of batch 2B); batchSize repeats it per image', async () => {
    const pipe = pipeFor('deis_1step_cfg0_taesd');
    try {
      const traces: StepTrace[] = [];
      const r = await pipe.generate({ prompt: 'a cat', batchSize: 2, guidance: 2, control: { image: controlImage }, seed: 4, onStep: (s) => traces.push(s) });
      expect(r.images.length).toBe(2);
      // [uncond ×2, cond ×2] at the first skip: 4 × 32 × 16 × 16.
      expect(traces[0]!.controlnetDownBlockResSamples![0]!.length).toBe(4 * 32 * 16 * 16);
      expect(traces[0]!.controlnetMidBlockResSample!.length).toBe(4 * 64 * 4 * 4);
    } finally {
      pipe.setControlNet(null);
    }
  });

  it('rejects bad control options up front, and a ControlNet that does not fit the UNet', async () => {
    const pipe = pipeFor('deis_1step_cfg0_taesd');
    const small: RGBImage = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
    try {
      const bad: [Parameters<typeof pipe.generate>[0], RegExp][] = [
        [{ prompt: 'x', control: { image: { width: 4, height: 16, data: new Uint8Array(4 * 16 * 3) } } }, /control.image: is 4×16, smaller than 8×8/],
        [{ prompt: 'x', control: { image: { width: 16, height: 16, data: new Uint8Array(16 * 16) } } }, /control.image: data has 256 bytes/],
        [{ prompt: 'x', control: { image: controlImage, scale: NaN } }, /control.scale: must be a finite number/],
        [{ prompt: 'x', control: { image: small }, init: { kind: 'image', image: small } }, /control: a control image with an init image \(ControlNet image-to-image\) is not supported/],
      ];
      for (const [o, re] of bad) await expect(pipe.generate(o), re.source).rejects.toThrow(re);
      pipe.setControlNet(null);
      await expect(pipe.generate({ prompt: 'x', control: { image: controlImage } })).rejects.toThrow(/control: a control image needs a ControlNet/);
      const other = await ControlNetModel.random({ block_out_channels: [16, 32, 32], down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'], layers_per_block: 1, cross_attention_dim: 32, norm_num_groups: 8, conditioning_embedding_out_channels: [8, 16] }, d);
      try {
        expect(() => pipe.setControlNet(other)).toThrow('ControlNetModel does not fit this UNet: block_out_channels [16,32,32] vs [32,64,64]');
      } finally {
        other.dispose();
      }
    } finally {
      pipe.setControlNet(null);
    }
  });
});
