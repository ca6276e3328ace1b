/**
 * Where a `--controlnet` comes from: a local folder (config.json + weights), or a hub repo (org/name[@revision])
 * of which only config.json and the weights the loader reads are fetched. Checked in steps, so a wrong
 * --controlnet fails before any weights are downloaded: `checkControlNetSource` (no network),
 * `planControlNet` (the repo's file list and its config.json), `fetchControlNet` (the weights).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeFiles } from '@fewstep/tensor/node';
import { componentInfo, selectWeightFiles } from '@fewstep/models';
import { listRepoFiles, parseRepoSpec, snapshotDownload, type DownloadProgressCallback, type WeightDType } from '@fewstep/weights-tools';
import { UsageError } from '../args.js';
import { looksLikeRepo } from '../lora_source.js';

/** An existing folder must hold a config.json; anything else must look like a hub repo id. */
export async function checkControlNetSource(source: string): Promise<void> {
  const st = await stat(source).catch(() => undefined);
  if (st?.isDirectory()) {
    if (!(await stat(join(source, 'config.json')).catch(() => undefined))) throw new UsageError(`--controlnet ${source}: not a ControlNet folder (no config.json)`);
    return;
  }
  if (st) throw new UsageError(`--controlnet ${source}: is a file; give the ControlNet folder (config.json + weights) or a hub repo id`);
  if (!looksLikeRepo(source)) throw new UsageError(`--controlnet ${source}: folder not found`);
}

export type ControlNetPlan =
  | { kind: 'folder'; source: string; dir: string }
  | { kind: 'hub'; source: string; repoId: string; revision: string | undefined; files: string[] };

export interface SourceContext {
  signal?: AbortSignal | undefined;
  onProgress?: DownloadProgressCallback | undefined;
}

async function checkClass(source: string, dir: string): Promise<void> {
  const { className } = await componentInfo(nodeFiles, dir);
  if (className !== 'ControlNetModel') throw new UsageError(`--controlnet ${source}: config.json names "${className}", not a ControlNetModel`);
}

/**
 * A folder: its config.json names a ControlNetModel. A hub repo: it has a top-level config.json naming a
 * ControlNetModel (fetched now, it is small) and weights selectWeightFiles picks (safetensors if the repo has
 * them, else the .bin IDKiro/sdxs-512-dreamshaper-sketch ships; the fp16 variant first with --dtype f16).
 */
export async function planControlNet(source: string, dtype: WeightDType, ctx: SourceContext = {}): Promise<ControlNetPlan> {
  if ((await stat(source).catch(() => undefined))?.isDirectory()) {
    await checkClass(source, source);
    return { kind: 'folder', source, dir: source };
  }
  const { repoId, revision } = parseRepoSpec(source);
  const top = (await listRepoFiles(repoId, { revision, signal: ctx.signal })).filter((p) => !p.includes('/'));
  if (!top.includes('config.json')) throw new UsageError(`--controlnet ${source}: the repo has no top-level config.json (not a diffusers ControlNetModel)`);
  const files = ['config.json', ...selectWeightFiles(top, { dtype, where: `--controlnet ${source}: the repo` }).files];
  const dir = await snapshotDownload(repoId, { revision, filter: (p) => p === 'config.json', required: ['config.json'], onProgress: ctx.onProgress, signal: ctx.signal });
  await checkClass(source, dir);
  return { kind: 'hub', source, repoId, revision, files };
}

/** The planned ControlNet as a local folder (a hub repo's config.json and weights downloaded into the HF cache). */
export async function fetchControlNet(plan: ControlNetPlan, ctx: SourceContext = {}): Promise<string> {
  if (plan.kind === 'folder') return plan.dir;
  const { files } = plan;
  return snapshotDownload(plan.repoId, { revision: plan.revision, filter: (p) => files.includes(p), required: files, onProgress: ctx.onProgress, signal: ctx.signal });
}
