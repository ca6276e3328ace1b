/**
 * A full-size diffusers model folder with deterministic random weights (`fewstep bench write-model`): the real
 * configs of SDXS-512-0.9 / DreamShaper / SD1.5, a scheduler config, a CLIP tokenizer copied from a folder you
 * give, and safetensors weights — so the CLI, `fewstep batch` and `fewstep serve` can be timed end to end at full
 * size without downloading weights. Images are noise; timings are real.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { DType } from '@fewstep/tensor';
import { AutoencoderKL, AutoencoderTiny, CLIPTextModel, UNet2DConditionModel } from '@fewstep/models';
import { RandomSource, SD_VAE, TAESD } from '@fewstep/models/testing';
import { UsageError } from '../args.js';
import { writeSafetensorsFile } from '../safetensors_file.js';
import { PIPELINE_CONFIGS } from './pipeline.js';

/** The schedulers the real repos ship (SDXS: Euler, trailing spacing; SD1.5: its PNDM config, run as DDIM). */
const SCHEDULERS: Record<string, Record<string, unknown>> = {
  euler_trailing: {
    _class_name: 'EulerDiscreteScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
    prediction_type: 'epsilon', steps_offset: 1, timestep_spacing: 'trailing', interpolation_type: 'linear', use_karras_sigmas: false,
  },
  ddim: {
    _class_name: 'DDIMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
    clip_sample: false, set_alpha_to_one: false, steps_offset: 1, prediction_type: 'epsilon',
  },
};

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];

async function weights(path: string, shapes: Map<string, number[]>, seed: number, dtype: DType): Promise<void> {
  const src = new RandomSource(shapes, seed);
  const keys = src.keys();
  await writeSafetensorsFile(path, keys.map((k) => ({ name: k, dtype: dtype === 'f16' ? 'F16' : 'F32', shape: src.shape(k) })), async (i) => {
    const v = await src.read(keys[i]!, dtype === 'f16' ? 'f16' : 'f32');
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  });
}

async function json(path: string, value: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(value, null, 2) + '\n');
}

/** Writes the folder; `tokenizerDir` must hold vocab.json and merges.txt (and may hold the two config files). */
export async function writeRandomModelFolder(dir: string, configName: string, dtype: DType, tokenizerDir: string, log: (s: string) => void = () => {}): Promise<void> {
  const cfg = PIPELINE_CONFIGS[configName];
  if (!cfg) throw new UsageError(`--config must be one of ${Object.keys(PIPELINE_CONFIGS).join(', ')}, got "${configName}"`);
  for (const f of ['vocab.json', 'merges.txt']) if (!existsSync(join(tokenizerDir, f))) throw new UsageError(`--tokenizer ${tokenizerDir}: no ${f} (a CLIP tokenizer folder, e.g. a model's tokenizer/)`);
  for (const d of ['tokenizer', 'text_encoder', 'unet', 'vae', 'scheduler']) await mkdir(join(dir, d), { recursive: true });
  const vaeClass = cfg.vae === 'tiny' ? 'AutoencoderTiny' : 'AutoencoderKL';
  await json(join(dir, 'model_index.json'), {
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.25.1', _fewstep_random_weights: true,
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', vaeClass], scheduler: ['diffusers', cfg.cfg ? 'DDIMScheduler' : 'EulerDiscreteScheduler'], safety_checker: [null, null], feature_extractor: [null, null],
  });
  await json(join(dir, 'scheduler', 'scheduler_config.json'), cfg.cfg ? SCHEDULERS['ddim'] : SCHEDULERS['euler_trailing']);
  for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, 'tokenizer', f));
  await json(join(dir, 'text_encoder', 'config.json'), { ...cfg.text, architectures: ['CLIPTextModel'], model_type: 'clip_text_model' });
  await json(join(dir, 'unet', 'config.json'), { ...cfg.unet, _class_name: 'UNet2DConditionModel' });
  const vaeCfg = cfg.vae === 'tiny' ? TAESD : SD_VAE;
  await json(join(dir, 'vae', 'config.json'), { ...vaeCfg, _class_name: vaeClass });
  log(`writing random ${configName} weights (${dtype}) to ${dir}`);
  await weights(join(dir, 'text_encoder', 'model.safetensors'), CLIPTextModel.describe(cfg.text), 1, dtype);
  await weights(join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), UNet2DConditionModel.describe(cfg.unet), 2, dtype);
  await weights(join(dir, 'vae', 'diffusion_pytorch_model.safetensors'), cfg.vae === 'tiny' ? AutoencoderTiny.describe(TAESD) : AutoencoderKL.describe(SD_VAE), 3, dtype);
}
