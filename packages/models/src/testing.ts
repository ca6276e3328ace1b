/**
 * `@fewstep/models/testing`: helpers for tests and benchmarks, not for applications — deterministic random
 * weights for any model's parameter map (`new RandomSource(X.describe(config), seed)`), the configs of the
 * full-size models fewstep targets, and the tokenizer's text-cleaning steps.
 */
export { RandomSource, type RandomWeightsOptions } from './modeling/random_weights.js';
export { recordParameters } from './modeling/weights.js';
export {
  CLIP_TEXT_SD15,
  CLIP_TEXT_SD2,
  CLIP_VIT_L14,
  KNOWN_UNETS,
  SD15,
  SD21_BASE,
  SDXS_09,
  SDXS_DREAMSHAPER,
  SD_VAE,
  TAESD,
} from './modeling/known_configs.js';
export { basicClean, preTokenize } from './clip/tokenization_clip.js';
