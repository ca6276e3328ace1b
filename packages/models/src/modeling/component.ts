/**
 * Loading a diffusers/transformers component folder: `config.json` + its weights
 * (`diffusion_pytorch_model.safetensors`, `model.safetensors`, sharded `*.safetensors`, the fp16
 * `variant`, or, without any safetensors, `diffusion_pytorch_model.bin` / `pytorch_model.bin`), read
 * through the FileSource seam.
 */
import type { Device, DType, FileSource } from '@fewstep/tensor';
import { SafetensorsSource, WeightScope, disposeAll, type TensorSource, type WeightTransform } from './weights.js';

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
 * Picks the weight files of a component folder; `variant` 'fp16' prefers `*.fp16.safetensors`. safetensors
 * win whenever the folder has any; otherwise the PyTorch checkpoints diffusers/transformers would load
 * (`diffusion_pytorch_model[.variant][-0000i-of-0000N].bin`, `pytorch_model….bin`) are used, read through
 * the whitelist unpickler (a `*.bin.index.json` is not needed: every shard is opened).
 */
export async function findWeightFiles(io: FileSource, dir: string, variant?: string): Promise<string[]> {
  const names = await io.list(dir);
  const st = pickWeights(names, variant, /^(diffusion_pytorch_model|model)(\.([A-Za-z0-9_]+))?(-\d+-of-\d+)?\.safetensors$/, '.safetensors');
  if (st.length) return st.map((n) => io.join(dir, n));
  const bin = pickWeights(names, variant, /^(diffusion_pytorch_model|pytorch_model)(\.([A-Za-z0-9_]+))?(-\d+-of-\d+)?\.bin$/, null);
  if (bin.length) return bin.map((n) => io.join(dir, n));
  const other = names.filter((n) => /\.(bin|pth|pt|ckpt)$/.test(n));
  throw new Error(
    `${dir}: no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin)` +
      (other.length ? `; found ${other.join(', ')}, which are not the names diffusers/transformers load (\`fewstep convert\` turns one into safetensors)` : ''),
  );
}

/**
 * The files of one format, as diffusers/transformers pick them: standard names (the variant if asked
 * for and present, else the plain ones), diffusers' name over transformers' when both exist. Without any
 * standard name, `anyExt` (safetensors only) takes every file of that extension.
 */
function pickWeights(all: string[], variant: string | undefined, std: RegExp, anyExt: string | null): string[] {
  const parsed = all.map((n) => ({ n, m: std.exec(n) })).filter((x) => x.m);
  let pick: string[];
  if (parsed.length) {
    const withVariant = variant ? parsed.filter((x) => x.m![3] === variant) : [];
    pick = (withVariant.length ? withVariant : parsed.filter((x) => !x.m![3])).map((x) => x.n);
    if (!pick.length) pick = parsed.map((x) => x.n);
    if (pick.some((n) => n.startsWith('diffusion_pytorch_model'))) pick = pick.filter((n) => n.startsWith('diffusion_pytorch_model'));
  } else pick = anyExt ? all.filter((n) => n.endsWith(anyExt)) : [];
  return pick.sort();
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
