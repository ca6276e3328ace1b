/**
 * Whole-folder operations of an evaluation run: (re)writing summary.json + report.html from run.json and
 * results.jsonl, and merging shard folders (`fewstep report --merge`) into one run — refused when the shards'
 * settings differ or two shards disagree about an image.
 */
import { copyFile, link, mkdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { UsageError } from '../args.js';
import { writeAtomic } from '../write_atomic.js';
import { REPORT_FILE, RESULTS_FILE, SUMMARY_FILE, readResults, readRunSettings, settingsKey, writeRunSettings, type ResultLine, type RunSettings } from './results.js';
import { summarize, type RunSummary } from './summary.js';
import { runReportHtml } from './report_html.js';

async function exists(p: string): Promise<boolean> {
  return Boolean(await stat(p).catch(() => undefined));
}

/** The results whose PNG exists, in row order. */
export async function presentResults(dir: string): Promise<{ results: ResultLine[]; bad: number }> {
  const { results, bad } = await readResults(join(dir, RESULTS_FILE));
  const present: ResultLine[] = [];
  for (const r of results.values()) if (await exists(join(dir, r.file))) present.push(r);
  present.sort((a, b) => a.row - b.row || a.file.localeCompare(b.file));
  return { results: present, bad };
}

function subtitleOf(s: RunSettings | null, summary: RunSummary, results: readonly ResultLine[], extra: string[]): string {
  const parts = [`${summary.overall.count} image${summary.overall.count === 1 ? '' : 's'}`];
  if (s) {
    parts.push(`model ${s.model}${s.revision ? `@${s.revision}` : ''}`, `${s.steps} step${s.steps === 1 ? '' : 's'}, guidance ${s.guidance}, ${s.width}x${s.height}, ${s.dtype}`, `scheduler ${s.scheduler}`);
    if (s.clip_model) parts.push(`CLIP ${s.clip_model}`);
  }
  if (summary.overall.images_per_second !== null) parts.push(`${summary.overall.images_per_second.toFixed(3)} images/s`);
  // Where the images were made (each result line names its adapter).
  const adapters = [...new Set(results.map((r) => r['adapter']).filter((a): a is string => typeof a === 'string' && a !== ''))];
  if (adapters.length) parts.push(`on ${adapters.join(', ')}`);
  return [...parts, ...extra].join(' · ');
}

/** Writes summary.json and report.html of a run folder from its run.json and results.jsonl. */
export async function writeRunReport(dir: string, extra: string[] = []): Promise<RunSummary> {
  const settings = await readRunSettings(dir);
  const { results } = await presentResults(dir);
  const summary = summarize(results, settings);
  await writeAtomic(join(dir, SUMMARY_FILE), JSON.stringify(summary, null, 2) + '\n');
  const title = `fewstep batch: ${settings ? basename(settings.prompts) : basename(resolve(dir))}`;
  await writeAtomic(join(dir, REPORT_FILE), runReportHtml(summary, results, title, subtitleOf(settings, summary, results, extra)));
  return summary;
}

/** Joins shard folders into `out` (PNGs hard-linked where possible, else copied), then writes its report. */
export async function mergeRuns(dirs: readonly string[], out: string): Promise<{ images: number; summary: RunSummary }> {
  if (dirs.length < 2) throw new UsageError('--merge needs at least two run folders');
  const settings: RunSettings[] = [];
  for (const d of dirs) {
    const s = await readRunSettings(d);
    if (!s) throw new UsageError(`--merge ${d}: not a run folder (no run.json)`);
    settings.push(s);
  }
  const key0 = settingsKey(settings[0]!);
  for (const [i, s] of settings.entries()) {
    if (settingsKey(s) === key0) continue;
    const a = settings[0]!, diff = Object.keys({ ...a, ...s }).filter((k) => k !== 'shard' && k !== 'clip_model' && JSON.stringify(a[k]) !== JSON.stringify(s[k]));
    throw new UsageError(`--merge: ${dirs[i]} was run with other settings than ${dirs[0]} (${diff.map((k) => `${k}: ${JSON.stringify(a[k])} vs ${JSON.stringify(s[k])}`).join('; ')})`);
  }
  const clipModels = [...new Set(settings.map((s) => s.clip_model).filter(Boolean))];
  if (clipModels.length > 1) throw new UsageError(`--merge: the shards were scored with different CLIP models (${clipModels.join(', ')})`);
  const merged = new Map<string, { r: ResultLine; dir: string }>();
  for (const d of dirs) {
    for (const r of (await presentResults(d)).results) {
      const prev = merged.get(r.file);
      if (prev && (prev.r.prompt !== r.prompt || prev.r.seed !== r.seed)) throw new UsageError(`--merge: ${r.file} is in ${prev.dir} and ${d} with different prompts or seeds`);
      if (!prev || (prev.r.clip_score === undefined && r.clip_score !== undefined)) merged.set(r.file, { r, dir: d });
    }
  }
  const have = await readRunSettings(out);
  if (have && settingsKey(have) !== key0) throw new UsageError(`--out ${out} holds a run with other settings`);
  await mkdir(out, { recursive: true });
  const { shard: _shard, ...base } = settings[0]!;
  await writeRunSettings(out, { ...base, ...(clipModels[0] ? { clip_model: clipModels[0] } : {}) });
  const lines: ResultLine[] = [];
  for (const { r, dir } of [...merged.values()].sort((a, b) => a.r.row - b.r.row)) {
    const src = join(dir, r.file), dst = join(out, r.file);
    if (resolve(src) !== resolve(dst) && !(await exists(dst))) await link(src, dst).catch(() => copyFile(src, dst));
    lines.push(r);
  }
  await writeAtomic(join(out, RESULTS_FILE), lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : ''));
  const summary = await writeRunReport(out, [`merged from ${dirs.length} shards`]);
  return { images: lines.length, summary };
}
