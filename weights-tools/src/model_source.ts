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
import { selectWeightFiles } from '@fewstep/models';
import { FewstepError, throwIfAborted } from '@fewstep/tensor';
import type { HubEnvOptions } from './hub/cache.js';
import { listRepoFiles, snapshotDownload } from './hub/download.js';
import { HubInputError } from './hub/errors.js';
import type { DownloadProgressCallback } from './hub/progress.js';
import { parseRepoSpec } from './hub/repo_spec.js';

export type WeightDType = 'f32' | 'f16';
export type VaeChoice = 'tiny' | 'large';

export interface ModelSourceOptions extends Omit<HubEnvOptions, 'repoType'> {
  /** Branch, tag or commit (an `@rev` in the model id wins). */
  revision?: string | undefined;
  dtype: WeightDType;
  vae: VaeChoice | undefined;
  /** Download progress of each file fetched (see DownloadProgressEvent). */
  onProgress?: DownloadProgressCallback | undefined;
  /** Cancels the download: rejects with an AbortError, the partial file kept for the next call to resume. */
  signal?: AbortSignal | undefined;
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

const notAModel = (message: string) => new FewstepError('not_a_model', message);

/**
 * Picks the files of a model (given the repo or folder file list) that the pipeline needs; the weights
 * of each component by `selectWeightFiles`. Throws one line (a FewstepError, code 'not_a_model') naming
 * what is missing when the model is not a usable diffusers text-to-image pipeline.
 */
export function selectModelFiles(
  files: readonly string[],
  opts: { dtype: WeightDType; vae: VaeChoice | undefined; name: string },
): { files: string[]; weights: Record<string, string[]>; variants: Record<string, string> } {
  const set = new Set(files);
  const { name } = opts;
  if (!set.has('model_index.json')) throw notAModel(`${name} is not a diffusers pipeline (no model_index.json)`);
  const out = new Set<string>(['model_index.json']);
  const inFolder = (folder: string) => files.filter((f) => f.startsWith(`${folder}/`) && !f.slice(folder.length + 1).includes('/'));
  for (const folder of ['scheduler', 'tokenizer']) {
    const got = inFolder(folder);
    if (got.length === 0) throw notAModel(`${name} has no ${folder}/ folder`);
    for (const f of got) out.add(f);
  }
  if (!set.has('scheduler/scheduler_config.json')) throw notAModel(`${name} has no scheduler/scheduler_config.json`);
  for (const f of ['vocab.json', 'merges.txt']) if (!set.has(`tokenizer/${f}`)) throw notAModel(`${name} has no tokenizer/${f}`);

  const weights: Record<string, string[]> = {};
  const variants: Record<string, string> = {};
  for (const comp of pipelineComponents(files, opts.vae)) {
    const got = inFolder(comp);
    if (got.length === 0) throw notAModel(`${name} has no ${comp}/ folder`);
    if (!set.has(`${comp}/config.json`)) throw notAModel(`${name} has no ${comp}/config.json`);
    out.add(`${comp}/config.json`);
    const sel = selectWeightFiles(
      got.map((f) => f.slice(comp.length + 1)),
      { dtype: opts.dtype, where: `${name}: ${comp}/` },
    );
    weights[comp] = sel.files.map((f) => `${comp}/${f}`);
    variants[comp] = sel.variant;
    for (const f of weights[comp]) out.add(f);
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

/**
 * Resolves --model to a local folder (downloading what is needed from the hub). Errors are one line
 * (missing folder, bad repo id, repo / file not found, offline and not cached, not a pipeline).
 */
export async function resolveModel(idOrDir: string, opts: ModelSourceOptions): Promise<ResolvedModel> {
  throwIfAborted(opts.signal, `download of ${idOrDir}`);
  const st = await stat(idOrDir).catch(() => undefined);
  if (st?.isDirectory()) {
    const sel = selectModelFiles(await listFiles(idOrDir), { dtype: opts.dtype, vae: opts.vae, name: idOrDir });
    return { dir: idOrDir, id: idOrDir, fromHub: false, weights: sel.weights, variants: sel.variants, variant: opts.dtype === 'f16' ? 'fp16' : undefined };
  }
  if (st) throw new HubInputError(`${idOrDir} is a file; --model takes a diffusers model folder or a Hugging Face repo id (org/name)`);
  if (looksLikePath(idOrDir)) throw new HubInputError(`model folder ${idOrDir} not found`);
  const { repoId, revision } = parseRepoSpec(idOrDir, opts.revision);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repoId)) {
    throw new HubInputError(`model ${idOrDir} not found: not a folder, and not a Hugging Face repo id (org/name)`);
  }
  const hub = { revision, cacheDir: opts.cacheDir, token: opts.token, endpoint: opts.endpoint, offline: opts.offline, signal: opts.signal };
  // The file list (from the hub, or the cache when it knows it / offline), then exactly the files the
  // pipeline reads (downloaded unless cached).
  const sel = selectModelFiles(await listRepoFiles(repoId, hub), { dtype: opts.dtype, vae: opts.vae, name: idOrDir });
  const wanted = new Set(sel.files);
  const dir = await snapshotDownload(repoId, { ...hub, filter: (p) => wanted.has(p), required: sel.files, onProgress: opts.onProgress });
  return { dir, id: idOrDir, fromHub: true, weights: sel.weights, variants: sel.variants, variant: opts.dtype === 'f16' ? 'fp16' : undefined };
}

/**
 * A `resolve` hook for `Pipeline.fromPretrained`: local folders pass through; hub ids are downloaded
 * (only the files the pipeline reads) into the Hugging Face cache, with `onProgress` / `signal` as in
 * `resolveModel`.
 */
export function hubResolver(opts: Omit<ModelSourceOptions, 'dtype' | 'vae'> = {}) {
  return async (idOrDir: string, want: { dtype: WeightDType; vae?: VaeChoice | undefined }): Promise<string> =>
    (await resolveModel(idOrDir, { ...opts, dtype: want.dtype, vae: want.vae })).dir;
}
