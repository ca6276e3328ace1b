/**
 * transformers' CLIP configs (v4.36.2 `models/clip/configuration_clip.py`) as fewstep's `model.config`
 * (modeling/config.ts): the config.json object's keys verbatim, the keys transformers defaults filled in, the
 * keys fewstep relies on type-checked, other keys kept, frozen.
 *
 *  - `clipTextConfig`: CLIPTextConfig (CLIPTextModel, CLIPTextModelWithProjection).
 *  - `clipVisionConfig`: CLIPVisionConfig (CLIPVisionModelWithProjection).
 *  - `clipConfig`: CLIPConfig (CLIPModel): `text_config` and `vision_config` resolved as above, plus the
 *    top-level `projection_dim` (the width of both projections: CLIPModel ignores the sub-configs' own
 *    projection_dim) and `logit_scale_init_value`.
 *
 * Like transformers' `from_pretrained`, the text and vision resolvers given a whole CLIPConfig (model_type
 * "clip") take its text_config / vision_config.
 */
import { UnsupportedError } from '@fewstep/tensor';
import type { UnaryOp } from '@fewstep/kernels';
import type { ConfigInput } from '../modeling/config.js';
import { ConfigError } from '../errors.js';

/** What the shared encoder (CLIPEncoderLayer: attention + MLP) reads; both towers' configs have it. */
export interface CLIPEncoderConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  hidden_act: string;
  layer_norm_eps: number;
}

/** `config.json` of a transformers CLIPTextModel; missing keys take CLIPTextConfig's defaults (4.36). */
export interface CLIPTextConfig extends CLIPEncoderConfig {
  vocab_size: number;
  projection_dim: number;
  max_position_embeddings: number;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
  [key: string]: unknown;
}

export const CLIP_TEXT_DEFAULTS: CLIPTextConfig = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
};

/** `vision_config` of a CLIPModel (or config.json of a CLIPVisionModelWithProjection); CLIPVisionConfig's defaults (4.36). */
export interface CLIPVisionConfig extends CLIPEncoderConfig {
  projection_dim: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  [key: string]: unknown;
}

export const CLIP_VISION_DEFAULTS: CLIPVisionConfig = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
};

/** `config.json` of a CLIPModel: both towers' configs and the shared projection width. */
export interface CLIPConfig {
  text_config: Readonly<CLIPTextConfig>;
  vision_config: Readonly<CLIPVisionConfig>;
  projection_dim: number;
  logit_scale_init_value: number;
  [key: string]: unknown;
}

export const CLIP_DEFAULTS = { projection_dim: 512, logit_scale_init_value: 2.6592 } as const;

/** transformers ACT2FN names → fewstep's unary kernels. */
export const CLIP_ACTIVATIONS: Readonly<Record<string, UnaryOp>> = {
  gelu: 'gelu',
  quick_gelu: 'quick_gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Defaults for missing (or null) keys, type checks against the defaults' types, the encoder's own checks. */
function resolve<C extends CLIPEncoderConfig>(src: Readonly<Record<string, unknown>>, defaults: C, where: string): Readonly<C> {
  const cfg: Record<string, unknown> = { ...src };
  for (const [k, def] of Object.entries(defaults)) {
    const v = src[k];
    if (v === undefined || v === null) cfg[k] = def;
    else if (typeof v !== typeof def) throw new ConfigError(`${where}: "${k}" must be a ${typeof def}, got ${JSON.stringify(v)}`);
  }
  const c = cfg as C;
  if (!Object.hasOwn(CLIP_ACTIVATIONS, c.hidden_act)) {
    throw new UnsupportedError(`${where}: hidden_act "${c.hidden_act}" is not supported (supported: ${Object.keys(CLIP_ACTIVATIONS).join(', ')})`);
  }
  for (const k of ['hidden_size', 'intermediate_size', 'num_attention_heads'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new ConfigError(`${where}: "${k}" must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (!Number.isInteger(c.num_hidden_layers) || c.num_hidden_layers < 0) throw new ConfigError(`${where}: "num_hidden_layers" must be an integer ≥ 0, got ${c.num_hidden_layers}`);
  if (c.hidden_size % c.num_attention_heads) {
    throw new ConfigError(`${where}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  return Object.freeze(c);
}

/**
 * A config.json object → `model.config` of a CLIP text tower: CLIPTextConfig's defaults for the keys it leaves
 * out (null too), the keys fewstep relies on checked, other keys kept. A full CLIPConfig gives its text_config.
 */
export function clipTextConfig(raw: ConfigInput<CLIPTextConfig>, where = 'config.json'): Readonly<CLIPTextConfig> {
  const sub = raw['model_type'] === 'clip' && isObject(raw['text_config']);
  return resolve(sub ? (raw['text_config'] as Record<string, unknown>) : raw, CLIP_TEXT_DEFAULTS, sub ? `${where} text_config` : where);
}

/** The same for a CLIP vision tower (CLIPVisionConfig); a full CLIPConfig gives its vision_config. */
export function clipVisionConfig(raw: ConfigInput<CLIPVisionConfig>, where = 'config.json'): Readonly<CLIPVisionConfig> {
  const sub = raw['model_type'] === 'clip' && isObject(raw['vision_config']);
  const at = sub ? `${where} vision_config` : where;
  const c = resolve(sub ? (raw['vision_config'] as Record<string, unknown>) : raw, CLIP_VISION_DEFAULTS, at);
  for (const k of ['num_channels', 'image_size', 'patch_size'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new ConfigError(`${at}: "${k}" must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.patch_size > c.image_size) throw new ConfigError(`${at}: patch_size ${c.patch_size} is larger than image_size ${c.image_size}`);
  return c;
}

/**
 * A CLIPModel's config.json → `model.config`: `text_config` and `vision_config` resolved (both must be there:
 * a folder without them is not a CLIPModel — transformers would silently build default towers), the top-level
 * `projection_dim` (default 512) and `logit_scale_init_value` (2.6592), other keys kept.
 */
export function clipConfig(raw: ConfigInput<CLIPConfig>, where = 'config.json'): Readonly<CLIPConfig> {
  if (!isObject(raw)) throw new ConfigError(`${where}: a CLIPModel config must be a JSON object`);
  for (const k of ['text_config', 'vision_config'] as const) {
    const v = raw[k];
    if (v === undefined || v === null) throw new ConfigError(`${where}: no "${k}" (a CLIPModel config.json holds both text_config and vision_config)`);
    if (!isObject(v)) throw new ConfigError(`${where}: "${k}" must be an object, got ${JSON.stringify(v)}`);
  }
  const cfg: Record<string, unknown> = { ...raw };
  for (const [k, def] of Object.entries(CLIP_DEFAULTS)) {
    const v = raw[k];
    if (v === undefined || v === null) cfg[k] = def;
    else if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${where}: "${k}" must be a number, got ${JSON.stringify(v)}`);
  }
  if (!Number.isInteger(cfg['projection_dim']) || (cfg['projection_dim'] as number) < 1) {
    throw new ConfigError(`${where}: "projection_dim" must be a positive integer, got ${JSON.stringify(cfg['projection_dim'])}`);
  }
  cfg['text_config'] = resolve(raw['text_config'] as Record<string, unknown>, CLIP_TEXT_DEFAULTS, `${where} text_config`);
  cfg['vision_config'] = clipVisionConfig(raw['vision_config'] as Record<string, unknown>, `${where} vision_config`);
  return Object.freeze(cfg) as unknown as Readonly<CLIPConfig>;
}
