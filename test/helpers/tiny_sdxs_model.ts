// A tiny diffusers-layout SDXS-style model folder assembled from the golden components (as
// pipeline_sdxs/config.json describes): SD2 tokenizer (pad "!"), clip_text_gelu, unet_sdxs, TAESD in
// vae/ and the AutoencoderKL in vae_large/, SDXS's Euler "trailing" scheduler config (models.md §1.3).
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeFile } from './fake_hub';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const golden = join(fixtures, 'golden');
const tok = join(fixtures, 'clip-tokenizer');

export const SDXS_SCHEDULER_CONFIG = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.19.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'trailing',
  trained_betas: null,
  use_karras_sigmas: false,
};

export const MODEL_INDEX = {
  _class_name: 'StableDiffusionPipeline',
  _diffusers_version: '0.25.1',
  feature_extractor: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ['diffusers', 'EulerDiscreteScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderTiny'],
};

/** Repo path → where its bytes come from (a file) or its JSON text. */
export function tinyModelEntries(): { path: string; from?: string; text?: string; lfs?: boolean }[] {
  return [
    { path: 'model_index.json', text: JSON.stringify(MODEL_INDEX, null, 2) + '\n' },
    { path: 'scheduler/scheduler_config.json', text: JSON.stringify(SDXS_SCHEDULER_CONFIG, null, 2) + '\n' },
    { path: 'tokenizer/vocab.json', from: join(tok, 'vocab.json') },
    { path: 'tokenizer/merges.txt', from: join(tok, 'merges.txt') },
    { path: 'tokenizer/special_tokens_map.json', from: join(tok, 'sd2', 'special_tokens_map.json') },
    { path: 'tokenizer/tokenizer_config.json', from: join(tok, 'sd2', 'tokenizer_config.json') },
    { path: 'text_encoder/config.json', from: join(golden, 'clip_text_gelu', 'config.json') },
    { path: 'text_encoder/model.safetensors', from: join(golden, 'clip_text_gelu', 'model.safetensors'), lfs: true },
    { path: 'unet/config.json', from: join(golden, 'unet_sdxs', 'config.json') },
    { path: 'unet/diffusion_pytorch_model.safetensors', from: join(golden, 'unet_sdxs', 'model.safetensors'), lfs: true },
    { path: 'vae/config.json', from: join(golden, 'taesd', 'config.json') },
    { path: 'vae/diffusion_pytorch_model.safetensors', from: join(golden, 'taesd', 'model.safetensors'), lfs: true },
    { path: 'vae_large/config.json', from: join(golden, 'vae_kl', 'config.json') },
    { path: 'vae_large/diffusion_pytorch_model.safetensors', from: join(golden, 'vae_kl', 'model.safetensors'), lfs: true },
  ];
}

/** Builds the folder under `dir` (files linked, JSON written); returns `dir`. */
export function buildTinyModel(dir: string): string {
  for (const e of tinyModelEntries()) {
    const p = join(dir, e.path);
    mkdirSync(join(p, '..'), { recursive: true });
    if (e.text !== undefined) writeFileSync(p, e.text);
    else symlinkSync(e.from!, p);
  }
  return dir;
}

/** The same files for the fake hub (weights as LFS files), plus the extras a real repo has. */
export function tinyModelHubFiles(): FakeFile[] {
  const files: FakeFile[] = tinyModelEntries().map((e) => ({
    path: e.path,
    content: e.text !== undefined ? Buffer.from(e.text) : readFileSync(e.from!),
    lfs: e.lfs,
  }));
  // Files generate must NOT download: pickles next to the safetensors, a README, an unrelated folder.
  files.push(
    { path: 'README.md', content: Buffer.from('# tiny sdxs\n') },
    { path: 'unet/diffusion_pytorch_model.bin', content: Buffer.alloc(1000, 7), lfs: true },
    { path: 'text_encoder/pytorch_model.bin', content: Buffer.alloc(1000, 8), lfs: true },
    { path: 'feature_extractor/preprocessor_config.json', content: Buffer.from('{}') },
  );
  return files;
}
