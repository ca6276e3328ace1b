/**
 * Component class registry: reads a folder's config.json, picks the model class it names
 * (diffusers `_class_name`, or transformers `architectures[0]`) and loads it.
 */
import { UnsupportedError, type Device, type FileSource } from '@fewstep/tensor';
import { readConfig } from './component.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../clip/modeling_clip.js';
import { CLIPVisionModelWithProjection } from '../clip/modeling_clip_vision.js';
import { CLIPModel } from '../clip/modeling_clip_model.js';
import { AutoencoderTiny, findOriginalTaesdFiles } from '../autoencoders/autoencoder_tiny.js';
import { AutoencoderKL } from '../autoencoders/autoencoder_kl.js';
import type { Vae } from '../autoencoders/autoencoder.js';
import { UNet2DConditionModel } from '../unets/unet_2d_condition.js';
import { ControlNetModel } from '../controlnets/controlnet.js';
import { ModelFolderError } from '../errors.js';

export interface LoadComponentOptions {
  dtype?: 'f32' | 'f16' | undefined;
  /** Weight-file variant to prefer, e.g. 'fp16'. */
  variant?: string | undefined;
}

/** Anything loadComponent returns: a model with its weights on the GPU. */
export type Component =
  | UNet2DConditionModel
  | ControlNetModel
  | CLIPTextModel
  | CLIPTextModelWithProjection
  | CLIPVisionModelWithProjection
  | CLIPModel
  | AutoencoderTiny
  | AutoencoderKL;

type Loader = (io: FileSource, dir: string, device: Device, opts: LoadComponentOptions) => Promise<Component>;

const LOADERS: Record<string, Loader> = {
  UNet2DConditionModel: (io, dir, device, opts) => UNet2DConditionModel.fromFolder(io, dir, device, opts),
  ControlNetModel: (io, dir, device, opts) => ControlNetModel.fromFolder(io, dir, device, opts),
  CLIPTextModel: (io, dir, device, opts) => CLIPTextModel.fromFolder(io, dir, device, opts),
  CLIPTextModelWithProjection: (io, dir, device, opts) => CLIPTextModelWithProjection.fromFolder(io, dir, device, opts),
  CLIPVisionModelWithProjection: (io, dir, device, opts) => CLIPVisionModelWithProjection.fromFolder(io, dir, device, opts),
  CLIPModel: (io, dir, device, opts) => CLIPModel.fromFolder(io, dir, device, opts),
  AutoencoderTiny: (io, dir, device, opts) => AutoencoderTiny.fromFolder(io, dir, device, opts),
  AutoencoderKL: (io, dir, device, opts) => AutoencoderKL.fromFolder(io, dir, device, opts),
};

/** Class names loadComponent knows. */
export const COMPONENT_CLASSES: readonly string[] = Object.keys(LOADERS);

export interface ComponentInfo {
  className: string;
  config: Record<string, unknown>;
}

/** Reads the folder's config.json and names its class, without loading weights. */
export async function componentInfo(io: FileSource, dir: string): Promise<ComponentInfo> {
  // madebyollin/taesd's own files (taesd_encoder.pth + taesd_decoder.pth) come without a config.json.
  if (!(await io.exists(io.join(dir, 'config.json'))) && (await findOriginalTaesdFiles(io, dir))) return { className: 'AutoencoderTiny', config: {} };
  const config = await readConfig(io, dir);
  const cls = config['_class_name'] ?? (Array.isArray(config['architectures']) ? config['architectures'][0] : undefined);
  if (typeof cls !== 'string' || !cls) {
    throw new ModelFolderError(`${io.join(dir, 'config.json')}: no "_class_name" (diffusers) or "architectures" (transformers) entry, so the model class is unknown`, dir);
  }
  return { className: cls, config };
}

/**
 * Loads the VAE in `dir` (an AutoencoderTiny — also a folder of madebyollin's `taesd_*.pth` — or an
 * AutoencoderKL, as its config.json names) behind the one `Vae` interface.
 */
export async function loadVae(io: FileSource, dir: string, device: Device, opts: LoadComponentOptions = {}): Promise<Vae> {
  const { className } = await componentInfo(io, dir);
  if (className === 'AutoencoderTiny') return AutoencoderTiny.fromFolder(io, dir, device, opts);
  if (className === 'AutoencoderKL') return AutoencoderKL.fromFolder(io, dir, device, opts);
  throw new UnsupportedError(`${dir}: VAE class "${className}" is not supported (AutoencoderTiny, AutoencoderKL)`);
}

/** Loads the component in `dir` as the class its config.json names; unknown classes are one clear error. */
export async function loadComponent(io: FileSource, dir: string, device: Device, opts: LoadComponentOptions = {}): Promise<Component> {
  const { className } = await componentInfo(io, dir);
  const load = Object.hasOwn(LOADERS, className) ? LOADERS[className] : undefined;
  if (!load) throw new UnsupportedError(`${dir}: component class "${className}" is not supported (supported: ${COMPONENT_CLASSES.join(', ')})`);
  return load(io, dir, device, opts);
}
