/**
 * Prompt lists from anywhere: `readPromptSource(spec)` takes a local file (any readPrompts format) or a Hugging
 * Face dataset id, `org/name[@revision]` (e.g. `nateraw/parti-prompts`). For a dataset it lists the repo's files
 * (repo type 'dataset'), picks its data files (`chooseDataFiles`: the parquet shards of one split, as `datasets`
 * writes them — `data/<split>-00000-of-00002.parquet` —, or a single TSV / CSV / JSONL where that is what the repo
 * holds), downloads them into the HF cache (`datasets--org--name`; offline from there with HF_HUB_OFFLINE=1) and
 * reads each one, numbering rows on across shards. A revision without a readable data file (a dataset with a
 * loading script, say) falls back to the hub's parquet conversion, the `refs/convert/parquet` revision
 * (`<config>/<split>/0000.parquet`).
 */
import { stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { FewstepError, FileFormatError, InvalidArgumentError } from '@fewstep/tensor';
import { OfflineMissingError, RevisionNotFoundError, listRepoFiles, parseRepoSpec, snapshotDownload, type DownloadProgressCallback } from '@fewstep/weights-tools';
import { PROMPT_EXTENSIONS, readPrompts, type PromptFormat } from './index.js';
import type { PromptRow, RowCounter } from './rows.js';

/** The hub's parquet conversion of every public dataset. */
export const PARQUET_CONVERSION_REVISION = 'refs/convert/parquet';

/** Split names in the order a prompt list is taken from them. */
const SPLIT_ORDER = ['train', 'test', 'validation', 'valid', 'dev', 'eval'];
/** Formats a dataset's data file may have, best first (TXT is left out: a repo's .txt files are rarely data). */
const DATA_FORMATS: readonly PromptFormat[] = ['parquet', 'tsv', 'csv', 'jsonl'];

export interface DataFileChoice {
  /** Repo paths of the chosen files, in shard order. */
  files: string[];
  /** The split they hold ('' when their names say none). */
  split: string;
  format: PromptFormat;
}

interface Candidate {
  path: string;
  format: PromptFormat;
  config: string;
  split: string;
}

const dirOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const baseOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** Where a data file sits: its config folder and its split, from the layouts `datasets` and the hub write. */
function locate(path: string): { config: string; split: string } {
  const name = baseOf(path).replace(/\.[^.]*$/, '');
  const dir = dirOf(path);
  // data/train-00000-of-00002.parquet (push_to_hub; older versions add -<fingerprint>)
  const shard = /^(.+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?$/.exec(name);
  if (shard) return { config: dir, split: shard[1]! };
  // refs/convert/parquet: <config>/<split>/0000.parquet (and partial-<split>/ for cut conversions)
  if (/^\d+$/.test(name) && dir) return { config: dirOf(dir), split: baseOf(dir).replace(/^partial-/, '') };
  return { config: dir, split: name };
}

/** The rank of a split name: 'train' 0, 'test' 1, …; names like 'train_sft' or 'parti-prompts-test' count as theirs. */
function splitRank(split: string): number {
  const s = split.toLowerCase();
  for (const [i, k] of SPLIT_ORDER.entries()) {
    if (s === k || s.startsWith(`${k}-`) || s.startsWith(`${k}_`) || s.endsWith(`-${k}`) || s.endsWith(`_${k}`)) return i;
  }
  return SPLIT_ORDER.length;
}

const configRank = (c: string) => (c === 'default' ? 0 : c === 'data' || c === '' ? 1 : 2);

/**
 * The data files of a dataset repo to read prompts from, from its file list; null when it has none (no parquet,
 * TSV, CSV or JSONL outside hidden folders). One split: train first, then test, validation…; one config folder
 * ('default' / 'data' / the root first); one format (parquet, then TSV, CSV, JSONL); every shard of it, in order.
 * Several files none of which names a known split are ambiguous: InvalidArgumentError listing them.
 */
export function chooseDataFiles(files: readonly string[], repo = 'the dataset'): DataFileChoice | null {
  const candidates: Candidate[] = [];
  for (const path of files) {
    if (path.split('/').some((seg) => seg.startsWith('.'))) continue;
    const format = PROMPT_EXTENSIONS[extname(path).toLowerCase()];
    if (!format || !DATA_FORMATS.includes(format)) continue;
    candidates.push({ path, format, ...locate(path) });
  }
  if (candidates.length === 0) return null;
  const byKey = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const k = JSON.stringify([c.config, c.split, c.format]);
    const list = byKey.get(k);
    if (list) list.push(c);
    else byKey.set(k, [c]);
  }
  const groups = [...byKey.values()].sort((a, b) => {
    const x = a[0]!, y = b[0]!;
    return (
      splitRank(x.split) - splitRank(y.split) ||
      configRank(x.config) - configRank(y.config) ||
      DATA_FORMATS.indexOf(x.format) - DATA_FORMATS.indexOf(y.format) ||
      x.config.localeCompare(y.config)
    );
  });
  const best = groups[0]!;
  const head = best[0]!;
  if (splitRank(head.split) === SPLIT_ORDER.length) {
    // No split names: fine when every candidate is one table in several formats or shards (one split name).
    const splits = new Set(groups.map((g) => `${g[0]!.config}/${g[0]!.split}`));
    if (splits.size > 1) {
      const shown = candidates.map((c) => c.path).slice(0, 8).join(', ') + (candidates.length > 8 ? ', …' : '');
      throw new InvalidArgumentError(`${repo} has several data files and none is a train/test split (${shown}); download it (fewstep download --repo-type dataset) and pass one file`, 'prompts');
    }
  }
  const paths = best.map((c) => c.path).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return { files: paths, split: head.split, format: head.format };
}

/** True when `spec` names a hub dataset rather than a local file: `org/name[@rev]` that is not on disk. */
export async function isHubDatasetSpec(spec: string): Promise<boolean> {
  if (await stat(spec).catch(() => undefined)) return false;
  const at = spec.indexOf('@');
  const id = at > 0 ? spec.slice(0, at) : spec;
  if (!/^[\w.-]+\/[\w.-]+$/.test(id) || /^\.{1,2}\//.test(id)) return false;
  // data/prompts.tsv is a (missing) file, not a repo.
  return !PROMPT_EXTENSIONS[extname(id).toLowerCase()];
}

export interface PromptSourceOptions {
  signal?: AbortSignal | undefined;
  /** Download progress of a hub dataset's files. */
  onProgress?: DownloadProgressCallback | undefined;
  /** Notes for the user (which files of a dataset are read). */
  note?: ((s: string) => void) | undefined;
}

export interface PromptSource {
  rows: PromptRow[];
  /** The files read: the local file, or the dataset's files as `org/name@rev:path`. */
  files: string[];
  /** A hub dataset: its id, the revision the files came from, and the split. */
  dataset?: { repo: string; revision: string; split: string } | undefined;
}

/** Reads the chosen files of a downloaded snapshot; rows numbered on across files; errors name `repo@rev:path`. */
async function readDataFiles(dir: string, choice: DataFileChoice, label: (f: string) => string): Promise<PromptRow[]> {
  const rows: PromptRow[] = [];
  let offset = 0;
  for (const f of choice.files) {
    const local = join(dir, f);
    const counter: RowCounter = { count: 0 };
    let part: PromptRow[];
    try {
      part = await readPrompts(local, { format: choice.format, counter });
    } catch (e) {
      if (e instanceof FewstepError && e.message.includes(local)) {
        const msg = e.message.split(local).join(label(f));
        throw e instanceof FileFormatError ? new FileFormatError(label(f), msg.slice(label(f).length + 2)) : new InvalidArgumentError(msg, 'prompts');
      }
      throw e;
    }
    for (const r of part) rows.push({ ...r, row: r.row + offset });
    offset += counter.count;
  }
  return rows;
}

/** A hub dataset's file list at `revision`, or null when that revision is not there (or, offline, not cached). */
async function listDataset(repoId: string, revision: string, signal: AbortSignal | undefined, fallback: boolean): Promise<string[] | null> {
  try {
    return await listRepoFiles(repoId, { repoType: 'dataset', revision, signal });
  } catch (e) {
    if (fallback && (e instanceof RevisionNotFoundError || e instanceof OfflineMissingError)) return null;
    throw e;
  }
}

/**
 * The prompt rows of a hub dataset `org/name[@revision]`. Errors: the hub's (repo not found, offline and not
 * cached, …), InvalidArgumentError when neither the revision nor its parquet conversion holds a data file, and
 * readPrompts' errors naming `org/name@rev:path`.
 */
export async function readHubDatasetPrompts(spec: string, opts: PromptSourceOptions = {}): Promise<PromptSource> {
  const { repoId, revision } = parseRepoSpec(spec);
  const { signal } = opts;
  const files = (await listDataset(repoId, revision, signal, false))!;
  let rev = revision;
  let choice = chooseDataFiles(files, `${repoId}@${revision}`);
  if (!choice && revision !== PARQUET_CONVERSION_REVISION) {
    const converted = await listDataset(repoId, PARQUET_CONVERSION_REVISION, signal, true);
    choice = converted ? chooseDataFiles(converted, `${repoId}@${PARQUET_CONVERSION_REVISION}`) : null;
    rev = PARQUET_CONVERSION_REVISION;
  }
  if (!choice) {
    const shown = files.slice(0, 8).join(', ') + (files.length > 8 ? ', …' : '') || 'no files';
    throw new InvalidArgumentError(
      `${repoId}@${revision}: no prompt data file in the dataset (${shown}) and no ${PARQUET_CONVERSION_REVISION} revision with one; expected parquet, TSV, CSV or JSONL files`,
      'prompts',
    );
  }
  const chosen = choice.files;
  opts.note?.(`prompts: ${repoId}@${rev}: ${chosen.length === 1 ? chosen[0] : `${chosen.length} ${choice.format} files (${chosen[0]} …)`}${choice.split ? `, split ${choice.split}` : ''}`);
  const dir = await snapshotDownload(repoId, { repoType: 'dataset', revision: rev, filter: (p) => chosen.includes(p), required: chosen, onProgress: opts.onProgress, signal });
  const label = (f: string) => `${repoId}@${rev}:${f}`;
  const rows = await readDataFiles(dir, choice, label);
  return { rows, files: chosen.map(label), dataset: { repo: repoId, revision: rev, split: choice.split } };
}

/** A local prompt list (readPrompts) or a hub dataset (readHubDatasetPrompts), by what `spec` names. */
export async function readPromptSource(spec: string, opts: PromptSourceOptions = {}): Promise<PromptSource> {
  if (await isHubDatasetSpec(spec)) return readHubDatasetPrompts(spec, opts);
  return { rows: await readPrompts(spec), files: [spec] };
}
