/**
 * The one config convention of fewstep's models (UNet2DConditionModel, ControlNetModel, AutoencoderTiny,
 * AutoencoderKL, CLIPTextModel), as diffusers' and transformers' `model.config`:
 *  - `model.config` is the config.json object, keys verbatim (snake_case), with every key the model takes
 *    present: the ones the file leaves out get diffusers' (transformers') defaults, keys the model does not
 *    know (`_class_name`, `_diffusers_version`, …) stay as given. It is frozen. So `vae.config.scaling_factor`,
 *    `unet.config.in_channels`, `textEncoder.config.hidden_size`, whichever the class.
 *  - Where a model needs a derived view — per-block values expanded to lists, the head count per block, the
 *    time-embedding width — it is camelCase under `model.resolvedConfig` (UNet2DConditionModel,
 *    ControlNetModel; `resolveUNetConfig(config)` / `resolveControlNetConfig(config)` compute it without a
 *    model).
 *  - Statics that take a config (`build`, `load`, `describe`, `parameterCount`, `fromSource`, `random`) take a
 *    `ConfigInput`: a config.json object, complete or not.
 */
import { UnsupportedError } from '@fewstep/tensor';

/** A config as a model's statics take it: complete (`model.config`), partial, or a parsed config.json. */
export type ConfigInput<C> = Partial<C> | Readonly<Record<string, unknown>>;

/**
 * diffusers' rule: every key of `defaults` missing (or undefined) in `raw` takes the default — null stays
 * null, as diffusers passes None on — and other keys of `raw` are kept. Arrays are copied; the result is frozen.
 */
export function withDefaults<C extends object>(defaults: C, raw: ConfigInput<C>): Readonly<C> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(defaults)) out[k] = Array.isArray(v) ? structuredClone(v) : v;
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) out[k] = Array.isArray(v) ? structuredClone(v) : v;
  return Object.freeze(out) as unknown as Readonly<C>;
}

/** fewstep's one error for a config value it does not implement, naming the model and the key. */
export function unsupportedConfig(model: string, config: Readonly<Record<string, unknown>>, key: string, why: string): never {
  throw new UnsupportedError(`${model}: config ${key} = ${JSON.stringify(config[key])} is not supported by fewstep (${why})`);
}
