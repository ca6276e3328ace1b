/**
 * Loading a diffusers/transformers component folder: `config.json` + its weights
 * (`diffusion_pytorch_model.safetensors`, `model.safetensors`, sharded `*.safetensors`, the fp16
 * `variant`, or, without any safetensors, `diffusion_pytorch_model.bin` / `pytorch_model.bin`), read
 * through the FileSource seam.
 */
import { FileFormatError, type Device, type FileSource, type ParameterCache } from '@fewstep/tensor';
import { ModelFolderError } from '../errors.js';
import { SafetensorsSource, WeightScope, loadModel, type TensorSource, type WeightTransform } from './weights.js';
import { selectWeightFiles } from './weight_files.js';

export async function readConfig(io: FileSource, dir: string): Promise<Record<string, unknown>> {
  const path = io.join(dir, 'config.json');
  if (!(await io.exists(path))) throw new ModelFolderError(`${dir}: no config.json (not a diffusers/transformers component folder)`, dir);
  const text = await io.readText(path);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `invalid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FileFormatError(path, 'invalid JSON (not a JSON object)');
  return v as Record<string, unknown>;
}

/**
 * The weight files of a component folder (see `selectWeightFiles`); `variant` 'fp16' prefers
 * `*.fp16.safetensors`. Without any safetensors the PyTorch checkpoints diffusers/transformers would load
 * (`diffusion_pytorch_model[.variant][-0000i-of-0000N].bin`, `pytorch_model….bin`) are used, read through
 * the whitelist unpickler (a `*.bin.index.json` is not needed: every shard is opened).
 */
export async function findWeightFiles(io: FileSource, dir: string, variant?: string): Promise<string[]> {
  return selectWeightFiles(await io.list(dir), { variant, where: dir }).files.map((n) => io.join(dir, n));
}

export async function openComponentWeights(io: FileSource, dir: string, variant?: string): Promise<SafetensorsSource> {
  return SafetensorsSource.open(io, await findWeightFiles(io, dir, variant));
}

/** How `X.fromSource` loads: the weights' dtype on the GPU (default f32) and a CPU transform per weight (LoRA fusion). */
export interface FromSourceOptions {
  dtype?: 'f32' | 'f16' | undefined;
  /** Applied to every weight as it loads (LoRA fusion: `loraTransform(adapters, 'unet')`). */
  transform?: WeightTransform | undefined;
  /**
   * Stream the weights through this cache instead of reading them at load (low-memory mode; see WeightScope.create):
   * safetensors on a local file only, and not with a `transform` — other weights load as usual.
   */
  stream?: ParameterCache | undefined;
}

/** How `X.fromFolder` loads: `FromSourceOptions` and the weight-file variant to prefer (e.g. 'fp16'). */
export interface FromFolderOptions extends FromSourceOptions {
  variant?: string | undefined;
}

/** Builds a model from a TensorSource through a loading WeightScope (`loadModel`: every key must be used). */
export async function loadFromSource<M>(what: string, src: TensorSource, device: Device, opts: FromSourceOptions, build: (w: WeightScope) => M): Promise<M> {
  return loadModel(WeightScope.create(src, device, opts.dtype ?? 'f32', opts.transform, opts.stream), what, build);
}

/** A component folder's config.json and weights handed to `fromSource`; the weight files are closed after. */
export async function loadFromFolder<C, M>(io: FileSource, dir: string, variant: string | undefined, fromSource: (src: TensorSource, config: C) => Promise<M>): Promise<M> {
  const config = (await readConfig(io, dir)) as C;
  const src = await openComponentWeights(io, dir, variant);
  try {
    return await fromSource(src, config);
  } finally {
    await src.close();
  }
}
