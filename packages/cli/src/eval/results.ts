/**
 * The files of an evaluation run folder (`fewstep batch --out-dir D`):
 *   run.json       the settings every image of the run shares (model, steps, size, dtype, seed base, CLIP model…)
 *   results.jsonl  one line per finished image (appended as it finishes; the last line per file wins)
 *   summary.json   per category / challenge: count, mean CLIP score with its 95% CI, images/s
 *   report.html    bar charts of the summary above a contact sheet that can be sorted by score
 */
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileFormatError } from '@fewstep/tensor';
import { writeAtomic } from '../write_atomic.js';

export interface ResultLine {
  prompt: string;
  category: string;
  challenge: string;
  /** 0-based data row of the prompt list: fixes the seed (base + row) and the file name. */
  row: number;
  seed: number;
  /** PNG file name inside the run folder. */
  file: string;
  /** Generation time of this image (a batch's time divided by its size). */
  seconds: number;
  /** 100 · max(cos(image, prompt), 0) with the run's CLIP model, once scored. */
  clip_score?: number | undefined;
  [k: string]: unknown;
}

/** The settings that make two runs (or two shards) comparable; written once per run folder. */
export interface RunSettings {
  model: string;
  revision?: string | undefined;
  steps: number;
  guidance: number;
  width: number;
  height: number;
  dtype: string;
  vae?: string | undefined;
  /** The VAE's dtype where it is not `dtype` (f16 models decode with TAESD in f32 by default). */
  vae_dtype?: string | undefined;
  scheduler: string;
  loras?: string[] | undefined;
  negative_prompt?: string | undefined;
  seed: number;
  prompts: string;
  /** The CLIP model that scores the run (absent until scored). */
  clip_model?: string | undefined;
  [k: string]: unknown;
}

export const RUN_FILE = 'run.json';
export const RESULTS_FILE = 'results.jsonl';
export const SUMMARY_FILE = 'summary.json';
export const REPORT_FILE = 'report.html';

/** The keys of RunSettings that must agree for runs to be merged (shards) — everything but the scorer. */
export function settingsKey(s: RunSettings): string {
  const { clip_model: _clip, shard: _shard, ...rest } = s;
  return JSON.stringify(Object.keys(rest).sort().map((k) => [k, rest[k]]));
}

export async function readRunSettings(dir: string): Promise<RunSettings | null> {
  try {
    return JSON.parse(await readFile(join(dir, RUN_FILE), 'utf8')) as RunSettings;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new FileFormatError(join(dir, RUN_FILE), `not readable JSON (${(e as Error).message})`);
  }
}

export async function writeRunSettings(dir: string, s: RunSettings): Promise<void> {
  await writeAtomic(join(dir, RUN_FILE), JSON.stringify(s, null, 2) + '\n');
}

export interface ReadResults {
  /** By file name; the last line for a file wins (a re-scored image appends a new line). */
  results: Map<string, ResultLine>;
  /** Unreadable lines skipped (e.g. a line torn by a kill). */
  bad: number;
}

/** Reads results.jsonl; a missing file is an empty run. */
export async function readResults(path: string): Promise<ReadResults> {
  const results = new Map<string, ResultLine>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { results, bad: 0 };
    throw e;
  }
  let bad = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as ResultLine;
      if (r && typeof r.file === 'string' && typeof r.prompt === 'string') results.set(r.file, r);
      else bad++;
    } catch {
      bad++;
    }
  }
  return { results, bad };
}

/**
 * Rewrites results.jsonl without its unreadable lines (a line torn by a kill mid-append), atomically, so a torn
 * line is repaired once instead of skipped by every later run; returns how many lines were dropped.
 */
export async function repairResults(path: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  const good: string[] = [];
  let dropped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as ResultLine;
      if (r && typeof r.file === 'string' && typeof r.prompt === 'string') good.push(line);
      else dropped++;
    } catch {
      dropped++;
    }
  }
  if (dropped || (text !== '' && !text.endsWith('\n'))) await writeAtomic(path, good.map((l) => l + '\n').join(''));
  return dropped;
}

/** Appends result lines (results.jsonl must end with a newline: repairResults first). */
export async function appendResults(path: string, lines: readonly ResultLine[]): Promise<void> {
  if (!lines.length) return;
  await appendFile(path, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}
