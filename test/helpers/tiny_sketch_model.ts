// A tiny IDKiro/sdxs-512-dreamshaper(-sketch)-style setup in the diffusers layout, from the golden components that
// controlnet_sketch/config.json names: SD1.5 tokenizer (pad <|endoftext|>), clip_text_quickgelu, the DreamShaper-
// structure UNet (no mid block), TAESD in vae/, the case's DEIS scheduler config, and the sketch ControlNet in
// controlnet/ (model_index: StableDiffusionControlNetPipeline). The ControlNet alone, as its own hub repo like
// IDKiro/sdxs-512-dreamshaper-sketch, comes from tinyControlNetHubFiles().
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeFile } from './fake_hub';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const golden = join(fixtures, 'golden');
const sketch = join(golden, 'controlnet_sketch');
const tok = join(fixtures, 'clip-tokenizer');

/** controlnet_sketch's DEIS run config (models.md §2.1: what the DreamShaper repos ship, literal unconfirmed). */
export const SKETCH_SCHEDULER_CONFIG = (JSON.parse(readFileSync(join(sketch, 'config.json'), 'utf8')) as { scheduler: Record<string, Record<string, unknown>> }).scheduler['deis_1step_cfg0_taesd']!;

export const SKETCH_MODEL_INDEX = {
  _class_name: 'StableDiffusionControlNetPipeline',
  _diffusers_version: '0.25.1',
  controlnet: ['diffusers', 'ControlNetModel'],
  feature_extractor: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ['diffusers', 'DEISMultistepScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderTiny'],
};

function entries(): { path: string; from?: string; text?: string }[] {
  return [
    { path: 'model_index.json', text: JSON.stringify(SKETCH_MODEL_INDEX, null, 2) + '\n' },
    { path: 'scheduler/scheduler_config.json', text: JSON.stringify(SKETCH_SCHEDULER_CONFIG, null, 2) + '\n' },
    { path: 'tokenizer/vocab.json', from: join(tok, 'vocab.json') },
    { path: 'tokenizer/merges.txt', from: join(tok, 'merges.txt') },
    { path: 'tokenizer/special_tokens_map.json', from: join(tok, 'sd15', 'special_tokens_map.json') },
    { path: 'tokenizer/tokenizer_config.json', from: join(tok, 'sd15', 'tokenizer_config.json') },
    { path: 'text_encoder/config.json', from: join(golden, 'clip_text_quickgelu', 'config.json') },
    { path: 'text_encoder/model.safetensors', from: join(golden, 'clip_text_quickgelu', 'model.safetensors') },
    { path: 'unet/config.json', from: join(sketch, 'unet', 'config.json') },
    { path: 'unet/diffusion_pytorch_model.safetensors', from: join(sketch, 'unet', 'model.safetensors') },
    { path: 'vae/config.json', from: join(golden, 'taesd', 'config.json') },
    { path: 'vae/diffusion_pytorch_model.safetensors', from: join(golden, 'taesd', 'model.safetensors') },
    { path: 'controlnet/config.json', from: join(sketch, 'controlnet', 'config.json') },
    { path: 'controlnet/diffusion_pytorch_model.safetensors', from: join(sketch, 'controlnet', 'model.safetensors') },
  ];
}

/** Builds the model folder under `dir` (files linked, JSON written); returns `dir` (the ControlNet is `dir/controlnet`). */
export function buildTinySketchModel(dir: string): string {
  for (const e of entries()) {
    const p = join(dir, e.path);
    mkdirSync(join(p, '..'), { recursive: true });
    if (e.text !== undefined) writeFileSync(p, e.text);
    else symlinkSync(e.from!, p);
  }
  return dir;
}

/**
 * The ControlNet as a hub repo: config.json + safetensors weights, plus what generate must NOT download (a .bin
 * copy of the weights, the demo GIF, a README).
 */
export function tinyControlNetHubFiles(): FakeFile[] {
  return [
    { path: 'config.json', content: readFileSync(join(sketch, 'controlnet', 'config.json')) },
    { path: 'diffusion_pytorch_model.safetensors', content: readFileSync(join(sketch, 'controlnet', 'model.safetensors')), lfs: true },
    { path: 'diffusion_pytorch_model.bin', content: Buffer.alloc(1000, 7), lfs: true },
    { path: 'sketch.gif', content: Buffer.from('GIF89a'), lfs: true },
    { path: 'README.md', content: Buffer.from('# tiny sketch controlnet\n') },
  ];
}
