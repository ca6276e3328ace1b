/**
 * A model id or folder → a local diffusers pipeline folder (used by `fewstep generate --model` and
 * `hubResolver()`). A folder is used as is; a Hugging Face repo
 * id (`org/name`, optionally `org/name@revision`) is fetched into the HF cache, but only the files the
 * text-to-image pipeline reads: model_index.json, scheduler/, tokenizer/, the config.json and one set
 * of weights of text_encoder/, unet/ and vae/ (vae_large/ too with `--vae large`). Weights: safetensors
 * whenever a component has them; PyTorch `diffusion_pytorch_model.bin` / `pytorch_model.bin` (read by the
 * whitelist unpickler) only for a component with nothing else. With `--dtype f16` the `*.fp16.*` variant
 * when the repo has one, else the plain files (and the other way round for f32).
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { HubInputError, snapshotDownload, type ProgressCallback } from './index.js';

export type WeightDType = 'f32' | 'f16';
export type VaeChoice = 'tiny' | 'large';

export interface ModelSourceOptions {
  revision?: string | undefined;
  dtype: WeightDType;
  vae: VaeChoice | undefined;
  onProgress?: ProgressCallback | undefined;
  /** HF cache folder instead of $HF_HUB_CACHE. */
  cacheDir?: string | undefined;
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
  /** The weight variant to ask the pipeline for ('fp16' with --dtype f16; it falls back to the plain files). */
  variant: 'fp16' | undefined;
  /** Variant per component ('' = plain files). */
  variants: Record<string, string>;
}

/**
 * Component folders the pipeline loads. VAE: `vae/` as it is by default; 'large' → `vae_large/` (SDXS
 * ships its AutoencoderKL there) or else `vae/`; 'tiny' → `vae_tiny/` or `taesd/` when the repo has one,
 * else `vae/` (the pipeline checks the class).
 */
export function pipelineComponents(files: readonly string[], vae: VaeChoice | undefined): string[] {
  const has = (d: string) => files.includes(`${d}/config.json`);
  let v = 'vae';
  if (vae === 'large') v = has('vae_large') ? 'vae_large' : 'vae';
  if (vae === 'tiny') v = ['vae_tiny', 'taesd'].find(has) ?? 'vae';
  return ['text_encoder', 'unet', v];
}

/** The weight file names diffusers/transformers load (`model.fp16-00001-of-00002.safetensors` …), as the pipeline does. */
const STD_WEIGHTS = /^(diffusion_pytorch_model|model)(?:\.([A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.safetensors$/;
/** Their PyTorch-pickle counterparts, a fallback for components without safetensors. */
const STD_BIN_WEIGHTS = /^(diffusion_pytorch_model|pytorch_model)(?:\.([A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.bin$/;

/**
 * Picks the files of a model (given the repo or folder file list) that the pipeline needs. Throws
 * one line naming what is missing when the model is not a usable diffusers text-to-image pipeline.
 */
export function selectModelFiles(
  files: readonly string[],
  opts: { dtype: WeightDType; vae: VaeChoice | undefined; name: string },
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
  for (const comp of pipelineComponents(files, opts.vae)) {
    const got = inFolder(comp);
    if (got.length === 0) throw new Error(`${name} has no ${comp}/ folder`);
    if (!set.has(`${comp}/config.json`)) throw new Error(`${name} has no ${comp}/config.json`);
    out.add(`${comp}/config.json`);
    const base = (f: string) => f.slice(comp.length + 1);
    const group = (re: RegExp) => {
      const byVariant = new Map<string, string[]>();
      for (const f of got) {
        const m = re.exec(base(f));
        if (!m) continue;
        const v = m[2] ?? '';
        if (!byVariant.has(v)) byVariant.set(v, []);
        byVariant.get(v)!.push(f);
      }
      return byVariant;
    };
    // safetensors whenever the component has any (standard names or not); .bin only as the last resort.
    let byVariant = group(STD_WEIGHTS);
    if (byVariant.size === 0 && !got.some((f) => f.endsWith('.safetensors'))) byVariant = group(STD_BIN_WEIGHTS);
    const order = opts.dtype === 'f16' ? ['fp16', ''] : ['', 'fp16'];
    let pick = order.find((v) => byVariant.has(v));
    if (pick === undefined && byVariant.size === 1) pick = [...byVariant.keys()][0]!;
    let chosen: string[];
    if (pick !== undefined) {
      chosen = byVariant.get(pick)!;
      // Both diffusers' and transformers' names: the pipeline loads diffusers'.
      if (chosen.some((f) => base(f).startsWith('diffusion_pytorch_model'))) chosen = chosen.filter((f) => base(f).startsWith('diffusion_pytorch_model'));
    } else if (byVariant.size > 1) {
      throw new Error(`${name}: ${comp}/ has several weight variants (${[...byVariant.keys()].join(', ')}) and no plain or fp16 one`);
    } else {
      // No standard names: the pipeline loads every .safetensors of the folder.
      chosen = got.filter((f) => f.endsWith('.safetensors'));
      if (chosen.length === 0) {
        const bins = got.filter((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
        throw new Error(
          bins.length
            ? `${name}: ${comp}/ has only PyTorch files with names diffusers does not load (${bins.map(base).join(', ')}); expected diffusion_pytorch_model.bin or pytorch_model.bin (or convert with \`fewstep convert\`)`
            : `${name}: ${comp}/ has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin)`,
        );
      }
    }
    chosen.sort();
    weights[comp] = chosen;
    variants[comp] = pick ?? '';
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


/**
 * Resolves --model to a local folder (downloading what is needed from the hub). Errors are one line
 * (missing folder, bad repo id, repo / file not found, offline and not cached, not a pipeline).
 */
export async function resolveModel(idOrDir: string, opts: ModelSourceOptions): Promise<ResolvedModel> {
  const st = await stat(idOrDir).catch(() => undefined);
  if (st?.isDirectory()) {
    const sel = selectModelFiles(await listFiles(idOrDir), { dtype: opts.dtype, vae: opts.vae, name: idOrDir });
    return { dir: idOrDir, id: idOrDir, fromHub: false, weights: sel.weights, variants: sel.variants, variant: opts.dtype === 'f16' ? 'fp16' : undefined };
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
  return { dir, id: idOrDir, fromHub: true, weights: sel.weights, variants: sel.variants, variant: opts.dtype === 'f16' ? 'fp16' : undefined };
}

/**
 * A `resolve` hook for `Pipeline.fromPretrained`: local folders pass through; hub ids are downloaded
 * (only the files the pipeline reads) into the Hugging Face cache.
 */
export function hubResolver(opts: { revision?: string | undefined; cacheDir?: string | undefined; onProgress?: ProgressCallback | undefined } = {}) {
  return async (idOrDir: string, want: { dtype: WeightDType; vae?: VaeChoice | undefined }): Promise<string> =>
    (await resolveModel(idOrDir, { ...opts, dtype: want.dtype, vae: want.vae })).dir;
}
