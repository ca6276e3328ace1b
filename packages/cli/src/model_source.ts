/**
 * `--model <id|dir>` → a local diffusers pipeline folder. A folder is used as is; a Hugging Face repo
 * id (`org/name`, optionally `org/name@revision`) is fetched into the HF cache, but only the files the
 * text-to-image pipeline reads: model_index.json, scheduler/, tokenizer/, the config.json and one set
 * of weights of text_encoder/, unet/ and vae/ (vae_large/ too with `--vae large`). Weights: safetensors
 * only (fewstep does not read pickled .bin files); with `--dtype f16` the `*.fp16.safetensors` variant
 * when the repo has one, else the plain files (and the other way round for f32).
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { HubInputError, snapshotDownload, type ProgressCallback } from '@fewstep/weights-tools';

export type WeightDType = 'f32' | 'f16';
export type VaeChoice = 'tiny' | 'large';

export interface ModelSourceOptions {
  revision?: string;
  dtype: WeightDType;
  vae: VaeChoice;
  onProgress?: ProgressCallback;
  /** HF cache folder instead of $HF_HUB_CACHE. */
  cacheDir?: string;
}

export interface ResolvedModel {
  /** Local folder with model_index.json and the component folders. */
  dir: string;
  /** What --model said (repo id or folder), for metadata. */
  id: string;
  /** True when `id` was a hub repo. */
  fromHub: boolean;
  /** Component folder → chosen weight files (relative to the model folder). */
  weights: Record<string, string[]>;
  /** 'fp16' when every component's chosen weights are the fp16 variant, else undefined. */
  variant: 'fp16' | undefined;
  /** Variant per component ('' = plain files). */
  variants: Record<string, string>;
}

/** Component folders the pipeline loads for a given VAE choice. */
export function pipelineComponents(vae: VaeChoice): string[] {
  return ['text_encoder', 'unet', vae === 'large' ? 'vae_large' : 'vae'];
}

/** A weight file of a component folder: its format and variant, or undefined for other files. */
export function weightFileInfo(name: string): { format: 'safetensors' | 'bin'; variant: string; index: boolean } | undefined {
  // Index of a sharded checkpoint: model.safetensors.index.json, model.safetensors.index.fp16.json
  let m = /^[^.]+\.(safetensors|bin)\.index(?:\.([\w-]+))?\.json$/.exec(name);
  if (m) return { format: m[1] as 'safetensors' | 'bin', variant: m[2] ?? '', index: true };
  // Shards: model-00001-of-00002.safetensors, model.fp16-00001-of-00002.safetensors
  m = /^[^.]+?(?:\.([\w]+))?-\d{5}-of-\d{5}\.(safetensors|bin)$/.exec(name);
  if (m) return { format: m[2] as 'safetensors' | 'bin', variant: m[1] ?? '', index: false };
  // Single files: diffusion_pytorch_model.safetensors, model.fp16.safetensors, pytorch_model.bin
  m = /^[^.]+(?:\.([\w-]+))?\.(safetensors|bin)$/.exec(name);
  if (m) return { format: m[2] as 'safetensors' | 'bin', variant: m[1] ?? '', index: false };
  return undefined;
}

/**
 * Picks the files of a model (given the repo or folder file list) that the pipeline needs. Throws
 * one line naming what is missing when the model is not a usable diffusers text-to-image pipeline.
 */
export function selectModelFiles(
  files: readonly string[],
  opts: { dtype: WeightDType; vae: VaeChoice; name: string },
): { files: string[]; weights: Record<string, string[]>; variants: Record<string, string> } {
  const set = new Set(files);
  const { name } = opts;
  if (!set.has('model_index.json')) throw new Error(`${name} is not a diffusers pipeline (no model_index.json)`);
  const out = new Set<string>(['model_index.json']);
  const inFolder = (folder: string) => files.filter((f) => f.startsWith(`${folder}/`) && !f.slice(folder.length + 1).includes('/'));
  for (const folder of ['scheduler', 'tokenizer']) {
    const got = inFolder(folder);
    if (got.length === 0) throw new Error(`${name} has no ${folder}/ folder`);
    for (const f of got) out.add(f);
  }
  if (!set.has('scheduler/scheduler_config.json')) throw new Error(`${name} has no scheduler/scheduler_config.json`);
  for (const f of ['vocab.json', 'merges.txt']) if (!set.has(`tokenizer/${f}`)) throw new Error(`${name} has no tokenizer/${f}`);

  const weights: Record<string, string[]> = {};
  const variants: Record<string, string> = {};
  for (const comp of pipelineComponents(opts.vae)) {
    const got = inFolder(comp);
    if (got.length === 0) {
      throw new Error(`${name} has no ${comp}/ folder${comp === 'vae_large' ? ' (--vae large needs one; use --vae tiny)' : ''}`);
    }
    if (!set.has(`${comp}/config.json`)) throw new Error(`${name} has no ${comp}/config.json`);
    out.add(`${comp}/config.json`);
    const byKey = new Map<string, string[]>();
    for (const f of got) {
      const info = weightFileInfo(f.slice(comp.length + 1));
      if (!info || info.format !== 'safetensors') continue;
      const key = info.variant;
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key)!.push(f);
    }
    const order = opts.dtype === 'f16' ? ['fp16', ''] : ['', 'fp16'];
    let pick = order.find((v) => byKey.has(v));
    // Neither plain nor fp16 (e.g. only an `ema` variant): take the only variant there is.
    if (pick === undefined && byKey.size === 1) pick = [...byKey.keys()][0]!;
    if (pick === undefined) {
      const bins = got.some((f) => weightFileInfo(f.slice(comp.length + 1))?.format === 'bin');
      throw new Error(
        byKey.size > 1
          ? `${name}: ${comp}/ has several weight variants (${[...byKey.keys()].join(', ')}) and no plain or fp16 one`
          : bins
            ? `${name}: ${comp}/ has only PyTorch .bin weights; fewstep reads safetensors (convert them, or use a repo with .safetensors files)`
            : `${name}: ${comp}/ has no weights (*.safetensors)`,
      );
    }
    const chosen = byKey.get(pick)!.sort();
    weights[comp] = chosen;
    variants[comp] = pick;
    for (const f of chosen) out.add(f);
  }
  return { files: [...out].sort(), weights, variants };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory() || (e.isSymbolicLink() && (await stat(p).catch(() => undefined))?.isDirectory())) {
        if (depth < 2) await walk(p, depth + 1);
      } else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  await walk(dir, 0);
  return out;
}

const looksLikePath = (s: string) => /^(\.{1,2}|~)?[\\/]/.test(s) || s.startsWith('.') || /^[A-Za-z]:[\\/]/.test(s) || s.split('/').length > 2;

/** Splits `org/name@rev`; the `@rev` suffix wins over `revision`. */
export function parseRepoSpec(spec: string, revision?: string): { repoId: string; revision: string } {
  const at = spec.lastIndexOf('@');
  return at > 0 ? { repoId: spec.slice(0, at), revision: spec.slice(at + 1) || 'main' } : { repoId: spec, revision: revision ?? 'main' };
}

function variantOf(variants: Record<string, string>): 'fp16' | undefined {
  const vs = Object.values(variants);
  return vs.length > 0 && vs.every((v) => v === 'fp16') ? 'fp16' : undefined;
}

/**
 * Resolves --model to a local folder (downloading what is needed from the hub). Errors are one line
 * (missing folder, bad repo id, repo / file not found, offline and not cached, not a pipeline).
 */
export async function resolveModel(idOrDir: string, opts: ModelSourceOptions): Promise<ResolvedModel> {
  const st = await stat(idOrDir).catch(() => undefined);
  if (st?.isDirectory()) {
    const sel = selectModelFiles(await listFiles(idOrDir), { dtype: opts.dtype, vae: opts.vae, name: idOrDir });
    return { dir: idOrDir, id: idOrDir, fromHub: false, weights: sel.weights, variants: sel.variants, variant: variantOf(sel.variants) };
  }
  if (st) throw new Error(`${idOrDir} is a file; --model takes a diffusers model folder or a Hugging Face repo id (org/name)`);
  if (looksLikePath(idOrDir)) throw new Error(`model folder ${idOrDir} not found`);
  const { repoId, revision } = parseRepoSpec(idOrDir, opts.revision);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repoId)) {
    throw new HubInputError(`model ${idOrDir} not found: not a folder, and not a Hugging Face repo id (org/name)`);
  }
  // Pass 1: the file list (from the hub, or the cache when complete / offline) and model_index.json.
  let all: string[] = [];
  await snapshotDownload(repoId, {
    revision,
    cacheDir: opts.cacheDir,
    filter: (p) => {
      all.push(p);
      return p === 'model_index.json';
    },
  });
  all = [...new Set(all)];
  const sel = selectModelFiles(all, { dtype: opts.dtype, vae: opts.vae, name: idOrDir });
  const wanted = new Set(sel.files);
  // Pass 2: exactly those files (downloaded unless cached).
  const dir = await snapshotDownload(repoId, {
    revision,
    cacheDir: opts.cacheDir,
    filter: (p) => wanted.has(p),
    required: sel.files,
    onProgress: opts.onProgress,
  });
  return { dir, id: idOrDir, fromHub: true, weights: sel.weights, variants: sel.variants, variant: variantOf(sel.variants) };
}
