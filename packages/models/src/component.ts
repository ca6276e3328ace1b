/**
 * Loading a diffusers/transformers component folder: `config.json` + its safetensors weights
 * (`diffusion_pytorch_model.safetensors`, `model.safetensors`, sharded `*.safetensors`, or the
 * fp16 `variant`), read through the FileSource seam.
 */
import type { FileSource } from '@fewstep/tensor';
import { SafetensorsSource } from './weights';

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

/** Picks the weight files of a component folder; `variant` 'fp16' prefers `*.fp16.safetensors`. */
export async function findWeightFiles(io: FileSource, dir: string, variant?: string): Promise<string[]> {
  const all = (await io.list(dir)).filter((n) => n.endsWith('.safetensors'));
  // The names diffusers/transformers load (`diffusion_pytorch_model[.variant][-00001-of-0000N].safetensors`,
  // `model…`); other .safetensors files in the folder are not weights of this component.
  const std = /^(diffusion_pytorch_model|model)(\.([A-Za-z0-9_]+))?(-\d+-of-\d+)?\.safetensors$/;
  const parsed = all.map((n) => ({ n, m: std.exec(n) })).filter((x) => x.m);
  let pick: string[];
  if (parsed.length) {
    const withVariant = variant ? parsed.filter((x) => x.m![3] === variant) : [];
    pick = (withVariant.length ? withVariant : parsed.filter((x) => !x.m![3])).map((x) => x.n);
    if (!pick.length) pick = parsed.map((x) => x.n);
    // Prefer diffusers' name when both a diffusers and a transformers file exist.
    if (pick.some((n) => n.startsWith('diffusion_pytorch_model'))) pick = pick.filter((n) => n.startsWith('diffusion_pytorch_model'));
  } else pick = all;
  if (!pick.length) {
    const bins = (await io.list(dir)).filter((n) => /\.(bin|pth|pt|ckpt)$/.test(n));
    throw new Error(`${dir}: no .safetensors weights${bins.length ? ` (found ${bins.join(', ')}: PyTorch pickles are not supported yet; convert them to safetensors)` : ''}`);
  }
  return pick.sort().map((n) => io.join(dir, n));
}

export async function openComponentWeights(io: FileSource, dir: string, variant?: string): Promise<SafetensorsSource> {
  return SafetensorsSource.open(io, await findWeightFiles(io, dir, variant));
}
