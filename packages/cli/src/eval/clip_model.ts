/**
 * The CLIP model that scores images (`fewstep score`, `fewstep batch --score`): a transformers CLIPModel folder
 * with its tokenizer files and preprocessor_config.json — a local folder, or a hub repo as
 * openai/clip-vit-large-patch14 ships one (everything at the root). Like the diffusion model, in two steps:
 *
 * 1. `planClip`: only the small files (config.json, preprocessor_config.json, vocab.json, merges.txt and the
 *    tokenizer configs) are fetched and checked — a repo that is not a CLIPModel fails here, in a second;
 * 2. `loadClip`: the weights (model.safetensors, or its shards; pytorch_model.bin only for a repo without
 *    safetensors; never flax/tf files), the device and the CLIPScorer.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Device, FewstepError, FileFormatError } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node';
import { CLIPScorer, ConfigError, ModelFolderError, clipConfig, selectWeightFiles } from '@fewstep/models';
import { HubConnectionError, HubHttpError, IntegrityError, OfflineMissingError, listRepoFiles, parseRepoSpec, snapshotDownload, type DownloadProgressCallback } from '@fewstep/weights-tools';
import { UsageError } from '../args.js';

export const DEFAULT_CLIP_MODEL = 'openai/clip-vit-large-patch14';

/** The files a CLIPScorer folder must have besides its weights. */
export const CLIP_REQUIRED_FILES = ['config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt'] as const;
/** Read when present (the tokenizer's special tokens and settings). */
const CLIP_OPTIONAL_FILES = ['tokenizer_config.json', 'special_tokens_map.json'];

export interface ClipContext {
  signal?: AbortSignal | undefined;
  onProgress?: DownloadProgressCallback | undefined;
}

/** What step 1 found. */
export interface ClipPlan {
  /** The model as the user named it (recorded in run.json as clip_model). */
  spec: string;
  /** The folder (a hub repo's snapshot folder, so far holding only the small files). */
  dir: string;
  /** A hub repo: what step 2 downloads. */
  repo?: { repoId: string; revision: string; small: string[]; weights: string[] } | undefined;
}

/**
 * The files of a CLIPModel repo to download, from its file list: the small files and the weights transformers
 * loads (selectWeightFiles: safetensors first, a sharded checkpoint's index too). ModelFolderError naming what
 * is missing when the repo is not a CLIPModel with its tokenizer and image processor.
 */
export function clipRepoFiles(files: readonly string[], name: string): { small: string[]; weights: string[] } {
  const root = files.filter((f) => !f.includes('/'));
  const missing = CLIP_REQUIRED_FILES.filter((f) => !root.includes(f));
  if (missing.length) throw new ModelFolderError(`${name}: not a CLIPModel repo with its tokenizer and image processor (missing ${missing.join(', ')})`, name);
  const sel = selectWeightFiles(root, { where: name });
  const weights = [...sel.files];
  const index = root.find((f) => f === (sel.format === 'safetensors' ? `model${sel.variant ? `.${sel.variant}` : ''}.safetensors.index.json` : `pytorch_model${sel.variant ? `.${sel.variant}` : ''}.bin.index.json`));
  if (index && weights.length > 1) weights.push(index);
  return { small: [...CLIP_REQUIRED_FILES, ...CLIP_OPTIONAL_FILES.filter((f) => root.includes(f))], weights };
}

/** config.json must be a CLIPModel's (both towers); ConfigError / FileFormatError naming the file otherwise. */
async function checkConfig(dir: string, name: string): Promise<void> {
  const path = join(dir, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new FileFormatError(`${name}: config.json`, e instanceof SyntaxError ? `not valid JSON (${e.message})` : `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const arch = (raw as { architectures?: unknown } | null)?.architectures;
  if (Array.isArray(arch) && arch.length && !arch.includes('CLIPModel')) {
    throw new ConfigError(`${name}: config.json is a ${String(arch[0])}, not a CLIPModel (CLIP score needs both towers, as openai/clip-vit-large-patch14 has them)`);
  }
  clipConfig(raw as Parameters<typeof clipConfig>[0], `${name}: config.json`);
}

const isFolder = async (p: string) => Boolean((await stat(p).catch(() => undefined))?.isDirectory());
const looksLikePath = (s: string) => /^(\.{1,2}|~)?[\\/]/.test(s) || s.startsWith('.') || /^[A-Za-z]:[\\/]/.test(s) || !/^[\w.-]+\/[\w.-]+(@.*)?$/.test(s);

/** Step 1: the small files, checked (ModelFolderError, ConfigError, the hub's errors). */
export async function planClip(spec: string, ctx: ClipContext = {}): Promise<ClipPlan> {
  if (!spec) throw new ModelFolderError('the CLIP model must not be empty');
  if (await isFolder(spec)) {
    const names = await nodeFiles.list(spec);
    const missing = CLIP_REQUIRED_FILES.filter((f) => !names.includes(f));
    if (missing.length) throw new ModelFolderError(`${spec}: not a CLIPModel folder with its tokenizer and image processor (missing ${missing.join(', ')})`, spec);
    selectWeightFiles(names, { where: spec });
    await checkConfig(spec, spec);
    return { spec, dir: spec };
  }
  if (await stat(spec).catch(() => undefined)) throw new ModelFolderError(`${spec} is a file; expected a CLIPModel folder or a hub repo id`, spec);
  if (looksLikePath(spec)) throw new ModelFolderError(`${spec}: folder not found`, spec);
  const { repoId, revision } = parseRepoSpec(spec);
  const files = await listRepoFiles(repoId, { revision, signal: ctx.signal });
  const { small, weights } = clipRepoFiles(files, spec);
  const dir = await snapshotDownload(repoId, { revision, filter: (p) => small.includes(p), required: [...CLIP_REQUIRED_FILES], onProgress: ctx.onProgress, signal: ctx.signal });
  await checkConfig(dir, spec);
  return { spec, dir, repo: { repoId, revision, small, weights } };
}

export interface LoadedClip {
  scorer: CLIPScorer;
  device: Device;
  dispose(): void;
}

/** Step 2: the weights (downloaded if needed), a device, the scorer (f32: the scores of every run comparable). */
export async function loadClip(plan: ClipPlan, opts: ClipContext & { batchSize?: number | undefined } = {}): Promise<LoadedClip> {
  let dir = plan.dir;
  if (plan.repo) {
    const { repoId, revision, small, weights } = plan.repo;
    const want = new Set([...small, ...weights]);
    dir = await snapshotDownload(repoId, { revision, filter: (p) => want.has(p), required: weights, onProgress: opts.onProgress, signal: opts.signal });
  }
  opts.signal?.throwIfAborted();
  const device = await Device.open({ gpu: await nodeGPU() });
  try {
    const scorer = await CLIPScorer.fromFolder(nodeFiles, dir, device, { dtype: 'f32', batchSize: opts.batchSize });
    return {
      scorer,
      device,
      dispose() {
        scorer.dispose();
        device.destroy();
      },
    };
  } catch (e) {
    device.destroy();
    throw e;
  }
}

/**
 * planClip's errors as one line naming the flag (`--score`, `--model`): a model that is not a CLIPModel, or not
 * there, is a UsageError (exit 2); the network or the cache failing stays what it is (exit 1).
 */
export function clipFlagError(flag: string, spec: string, e: unknown): unknown {
  if (!(e instanceof FewstepError)) return e;
  const msg = e.message.startsWith(spec) ? `${flag} ${e.message}` : `${flag} ${spec}: ${e.message}`;
  if (e instanceof HubConnectionError || e instanceof HubHttpError || e instanceof IntegrityError || e instanceof OfflineMissingError) {
    e.message = msg;
    return e;
  }
  return new UsageError(msg);
}
