/**
 * Where a `--lora` comes from (generate, batch and run): a local file or folder, or a hub repo holding a PEFT
 * adapter or one LoRA file, downloaded into the Hugging Face cache. Two steps, so a bad --lora fails before
 * any weights are downloaded: `planLoraSource` (local check, or the repo's file list) and `fetchLoraSource`.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseLoraSpec as splitLoraSpec } from '@fewstep/models';
import { listRepoFiles, parseRepoSpec, snapshotDownload, type DownloadProgressCallback } from '@fewstep/weights-tools';
import { UsageError } from './args.js';

export interface LoraSpec {
  source: string;
  scale: number;
}

/** `<file|dir|repo>[:scale]`; a trailing `:number` is the scale (default 1). */
export function parseLoraSpec(s: string): LoraSpec {
  const { path: source, scale } = splitLoraSpec(s);
  if (!source) throw new UsageError(`--lora needs a file, folder or repo id, got "${s}"`);
  if (!Number.isFinite(scale)) throw new UsageError(`--lora scale must be a number, got "${s}"`);
  return { source, scale };
}

/** `org/name` or `org/name@revision` (not a path, not a weight file name). */
export const looksLikeRepo = (s: string) => !s.startsWith('.') && !/\.(safetensors|bin|pt|pth|ckpt)$/i.test(s) && /^[\w.-]+\/[\w.-]+$/.test(parseRepoSpec(s).repoId);

/** Checks that each --lora is an existing file/folder or looks like a hub repo id (no network). */
export async function checkLoras(loras: LoraSpec[]): Promise<void> {
  for (const l of loras) {
    if (await stat(l.source).catch(() => undefined)) continue;
    if (!looksLikeRepo(l.source)) throw new UsageError(`--lora ${l.source}: no such file or folder (nor a hub repo id org/name)`);
  }
}

/** What a --lora resolves to: a local path, or the files to fetch from a hub repo. */
export type LoraPlan = { kind: 'local'; spec: LoraSpec; path: string } | { kind: 'hub'; spec: LoraSpec; repo: string; revision: string | undefined; files: string[] };

/**
 * A local file or folder as is; a hub repo → its peft folder (adapter_config.json + adapter_model.safetensors,
 * else adapter_model.bin) or its one top-level .safetensors (else its one top-level PyTorch checkpoint), from
 * the repo's file list only. A repo with none, or with several to choose from, is a UsageError.
 */
export async function planLoraSource(spec: LoraSpec, signal?: AbortSignal): Promise<LoraPlan> {
  if (await stat(spec.source).catch(() => undefined)) return { kind: 'local', spec, path: spec.source };
  const { repoId: repo, revision } = parseRepoSpec(spec.source);
  const top = (await listRepoFiles(repo, { revision, signal })).filter((p) => !p.includes('/'));
  const st = top.filter((p) => p.endsWith('.safetensors'));
  // Pickles are read by the whitelist unpickler (never executed), but safetensors win when both exist.
  const pickles = top.filter((p) => /\.(bin|pt|pth|ckpt)$/.test(p));
  let files: string[];
  if (top.includes('adapter_config.json') && top.includes('adapter_model.safetensors')) files = ['adapter_config.json', 'adapter_model.safetensors'];
  else if (top.includes('adapter_config.json') && top.includes('adapter_model.bin')) files = ['adapter_config.json', 'adapter_model.bin'];
  else if (st.length === 1) files = st;
  else if (st.length > 1) throw new UsageError(`--lora ${spec.source}: the repo has several .safetensors files (${st.join(', ')}); download the one you want and pass its path`);
  else if (pickles.length === 1) files = pickles;
  else if (pickles.length === 0) throw new UsageError(`--lora ${spec.source}: the repo has no top-level LoRA weights (.safetensors, or a PEFT adapter_model.bin)`);
  else throw new UsageError(`--lora ${spec.source}: the repo has several PyTorch checkpoints (${pickles.join(', ')}); download the one you want and pass its path`);
  return { kind: 'hub', spec, repo, revision, files };
}

/** Downloads a planned hub LoRA into the HF cache (a local one as is); returns what loadLora takes. */
export async function fetchLoraSource(plan: LoraPlan, onProgress?: DownloadProgressCallback, signal?: AbortSignal): Promise<string> {
  if (plan.kind === 'local') return plan.path;
  const { files } = plan;
  const dir = await snapshotDownload(plan.repo, { revision: plan.revision, filter: (p) => files.includes(p), required: files, onProgress, signal });
  return files.length === 1 ? join(dir, files[0]!) : dir;
}

/** planLoraSource then fetchLoraSource. */
export async function resolveLoraSource(spec: LoraSpec, onProgress?: DownloadProgressCallback, signal?: AbortSignal): Promise<string> {
  return fetchLoraSource(await planLoraSource(spec, signal), onProgress, signal);
}
