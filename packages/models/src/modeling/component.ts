/**
 * Loading a diffusers/transformers component folder: `config.json` + its weights
 * (`diffusion_pytorch_model.safetensors`, `model.safetensors`, sharded `*.safetensors`, the fp16
 * `variant`, or, without any safetensors, `diffusion_pytorch_model.bin` / `pytorch_model.bin`), read
 * through the FileSource seam.
 */
import type { Device, DType, FileSource } from '@fewstep/tensor';
import { SafetensorsSource, WeightScope, disposeAll, type TensorSource, type WeightTransform } from './weights.js';
import { selectWeightFiles } from './weight_files.js';

export async function readConfig(io: FileSource, dir: string): Promise<Record<string, unknown>> {
  const path = io.join(dir, 'config.json');
  if (!(await io.exists(path))) throw new Error(`${dir}: no config.json (not a diffusers/transformers component folder)`);
  const text = await io.readText(path);
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
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

/**
 * Builds a model from a TensorSource through a WeightScope: every key must be used (`finish(what)`), and
 * a failure frees what was already uploaded.
 */
export async function loadFromSource<M>(what: string, src: TensorSource, device: Device, dtype: DType, transform: WeightTransform | undefined, load: (w: WeightScope) => Promise<M>): Promise<M> {
  const w = WeightScope.create(src, device, dtype, transform);
  try {
    const m = await load(w);
    w.finish(what);
    return m;
  } catch (e) {
    disposeAll(w.loaded);
    throw e;
  }
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

/** Number of parameters in a key → shape map (a model's `describe`). */
export function countParameters(shapes: Map<string, number[]>): number {
  let n = 0;
  for (const s of shapes.values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
