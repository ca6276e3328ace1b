// StableDiffusionPipeline vs diffusers 0.25.1 on golden case pipeline_yoso: SD1.5 tokenizer, clip_text_quickgelu,
// unet_sd15 with the lora_yoso LoRA fused (kohya keys, alpha/rank = 2), LCMScheduler from the SD1.5 config,
// 2 steps, guidance 1.5 (CFG with the empty negative prompt, one batch of [uncond, cond]), AutoencoderKL and
// TAESD; plus DDIM / Euler / DDPM from the same config. The LoRA goes in through fromPretrained's
// weightTransform hook (loadLora + loraTransform); the other runs reuse that pipeline's components.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny, StableDiffusionPipeline, loadLora, loraTransform, type LoraAdapter, type ProgressEvent } from '@fewstep/models';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { componentDir, goldenRoot, openGolden, type GoldenCase } from '../models/golden';
import { checkRun, type PipelineCase } from './golden_pipeline';

const tokRoot = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;

let d: Device;
let g: GoldenCase;
let c: PipelineCase;
let base: StableDiffusionPipeline;
let taesd: AutoencoderTiny;
let lora: LoraAdapter;
let dir: string;
const events: ProgressEvent[] = [];

beforeAll(async () => {
  d = await gpuDevice();
  g = await openGolden('pipeline_yoso');
  c = g.caseJson as unknown as PipelineCase;
  // A diffusers folder assembled from the golden component folders (vae/ = the AutoencoderKL).
  dir = mkdtempSync(join(tmpdir(), 'fewstep-yoso-'));
  const link = (sub: string, from: string, names: string[], as?: string[]) => {
    mkdirSync(join(dir, sub), { recursive: true });
    names.forEach((n, i) => symlinkSync(join(from, n), join(dir, sub, as?.[i] ?? n)));
  };
  link('tokenizer', tokRoot, ['vocab.json', 'merges.txt']);
  link('tokenizer', join(tokRoot, 'sd15'), ['tokenizer_config.json', 'special_tokens_map.json']);
  link('text_encoder', join(goldenRoot, 'clip_text_quickgelu'), ['config.json', 'model.safetensors']);
  link('unet', join(goldenRoot, 'unet_sd15'), ['config.json', 'model.safetensors'], ['config.json', 'diffusion_pytorch_model.safetensors']);
  link('vae', join(goldenRoot, 'vae_kl'), ['config.json', 'model.safetensors']);
  mkdirSync(join(dir, 'scheduler'));
  // Every run's scheduler_config is the same SD1.5 (PNDM) config; the run names the class.
  writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(Object.values(c.runs)[0]!.scheduler_config));

  lora = await loadLora(nodeFiles, join(goldenRoot, 'lora_yoso', 'lora.safetensors'));
  base = await StableDiffusionPipeline.fromPretrained(dir, {
    device: d,
    io: nodeFiles,
    scheduler: 'LCMScheduler',
    weightTransform: (component) => loraTransform([lora], component),
    onProgress: (e) => events.push(e),
  });
  const [tdir, cleanup] = componentDir('taesd');
  try {
    taesd = await AutoencoderTiny.fromFolder(nodeFiles, tdir, d);
  } finally {
    cleanup();
  }
});

afterAll(async () => {
  base?.dispose();
  taesd?.dispose();
  await g?.io.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await closeDevice();
});

const pipeFor = (run: string) => {
  const r = c.runs[run]!;
  if (r.scheduler === 'LCMScheduler' && r.vae === 'vae_kl') return base;
  return StableDiffusionPipeline.fromComponents(
    { tokenizer: base.tokenizer, textEncoder: base.textEncoder, unet: base.unet, vae: r.vae === 'taesd' ? taesd : base.vae, schedulerConfig: r.scheduler_config },
    { scheduler: r.scheduler },
  );
};

describe('StableDiffusionPipeline golden pipeline_yoso', () => {
  it('loads through fromPretrained with the LoRA fused into every targeted UNet weight', async () => {
    lora.assertAllApplied('unet');
    expect(events.map((e) => e.stage)).toEqual(['load']);
    expect(base.defaults).toEqual({ steps: 4, guidance: 1, width: 128, height: 128 });
    const want = await g.io.read('negative_input_ids', 'i32');
    expect(base.tokenizer.encode('').inputIds).toEqual([...want]);
    expect(c.prompts.flatMap((p) => base.tokenizer.encode(p).inputIds)).toEqual([...(await g.io.read('prompt_input_ids', 'i32'))]);
  });

  for (const run of ['lcm_2step_cfg1.5_vaekl', 'lcm_2step_cfg1.5_taesd', 'ddim_2step_cfg1.5_vaekl', 'euler_2step_cfg1.5_vaekl', 'ddpm_2step_cfg1.5_vaekl']) {
    it(run, async () => {
      const report = await checkRun(pipeFor(run), g.io, c, run);
      console.log(report.join('\n'));
    });
  }
});
