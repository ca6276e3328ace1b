/**
 * CLIP-scoring a run folder, the one code path of `fewstep score --run dir/` and `fewstep batch --score`: every
 * image of results.jsonl whose file exists and that has no clip_score yet is decoded, scored against its prompt
 * in batches, and its result line appended again with `clip_score` and `clip_model` (the last line per file
 * wins), a batch at a time — so an interrupted scoring resumes where it stopped, and a second run has nothing to
 * do. run.json records the CLIP model before the first score is written; a run scored with another model is
 * refused unless it is to be scored again with this one (`rescore`; resumable too, as every line says which
 * model scored it, and the summary counts only the run's model's scores).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RGBImage } from '@fewstep/models';
import { UsageError } from '../args.js';
import { decodeImage } from '../generation/image_inputs.js';
import { eta, fmtDuration, type ProgressUI } from '../generation/progress.js';
import { loadClip, type ClipPlan } from './clip_model.js';
import { RESULTS_FILE, appendResults, repairResults, readRunSettings, writeRunSettings, type ResultLine, type RunSettings } from './results.js';
import { presentResults } from './run_folder.js';

/** Images scored per CLIP forward when nothing says otherwise (CLIPScorer's default). */
export const DEFAULT_CLIP_BATCH = 16;

/**
 * Whether `clip` may score the run whose settings are `settings`: a run scored with another CLIP model needs
 * `rescore` (scores of two models never mix in one summary). `hint` says how to rescore from this command.
 */
export function checkClipModel(settings: RunSettings, clip: string, rescore: boolean, where: string, hint: string): void {
  if (settings.clip_model && settings.clip_model !== clip && !rescore) {
    throw new UsageError(`${where} was scored with ${settings.clip_model}, not ${clip}; ${hint}`);
  }
}

/** A result line scored by `clip` (a line without clip_model was scored by the run's recorded model). */
export const scoredWith = (r: ResultLine, settings: RunSettings, clip: string): boolean =>
  typeof r.clip_score === 'number' && (typeof r['clip_model'] === 'string' ? r['clip_model'] : settings.clip_model) === clip;

export interface ScoreRunOptions {
  /** The CLIP model, planned (step 1) only when there is something to score. */
  clip: () => Promise<ClipPlan>;
  /** The model's name as run.json records it (the spec given). */
  clipName: string;
  /** Score the run with another CLIP model than the one run.json records. */
  rescore?: boolean | undefined;
  batchSize?: number | undefined;
  ui: ProgressUI;
  signal?: AbortSignal | undefined;
  /** How errors name the folder ("--run runs/a", "--out-dir runs/a"). */
  where: string;
  /** How to rescore from this command, for the "scored with another model" error. */
  rescoreHint: string;
}

export interface ScoreRunResult {
  /** Images scored now. */
  scored: number;
  /** Images of the run (with their file present). */
  images: number;
  /** Already scored before. */
  skipped: number;
}

/** Scores the unscored images of a run folder (see the file comment). */
export async function scoreRun(dir: string, opts: ScoreRunOptions): Promise<ScoreRunResult> {
  const { ui, signal } = opts;
  const settings = await readRunSettings(dir);
  if (!settings) throw new UsageError(`${opts.where}: not a run folder (no run.json; make one with fewstep batch)`);
  checkClipModel(settings, opts.clipName, Boolean(opts.rescore), opts.where, opts.rescoreHint);
  const { results } = await presentResults(dir);
  const todo = results.filter((r) => !scoredWith(r, settings, opts.clipName));
  const skipped = results.length - todo.length;
  if (todo.length === 0) return { scored: 0, images: results.length, skipped };

  const plan = await opts.clip();
  const resultsPath = join(dir, RESULTS_FILE);
  const tLoad = performance.now();
  ui.onProgress({ type: 'load', status: 'start', component: 'clip', ms: 0 });
  const clip = await loadClip(plan, { signal, onProgress: ui.onProgress, batchSize: opts.batchSize ?? DEFAULT_CLIP_BATCH });
  ui.onProgress({ type: 'load', status: 'end', component: 'clip', ms: performance.now() - tLoad });
  let scored = 0;
  try {
    if (settings.clip_model !== opts.clipName) await writeRunSettings(dir, { ...settings, clip_model: opts.clipName });
    if (skipped) ui.note(`scoring: ${skipped} of ${results.length} images already scored`);
    const step = clip.scorer.batchSize;
    const times: number[] = [];
    const torn = await repairResults(resultsPath);
    if (torn) ui.note(`note: removed ${torn} unreadable line${torn === 1 ? '' : 's'} (torn by an interrupted run) from ${resultsPath}`);
    for (let k = 0; k < todo.length; k += step) {
      signal?.throwIfAborted();
      const chunk = todo.slice(k, k + step);
      const left = eta(times, todo.length - k);
      ui.prefix = `[${skipped + k + 1}/${results.length}${left !== null ? `, ETA ${fmtDuration(left)}` : ''}] `;
      const end = ui.task('CLIP score');
      const start = performance.now();
      const images: RGBImage[] = [];
      for (const r of chunk) images.push(await decodeImage(new Uint8Array(await readFile(join(dir, r.file))), join(dir, r.file)));
      signal?.throwIfAborted();
      const scores = await clip.scorer.score(images, chunk.map((r) => r.prompt));
      end();
      signal?.throwIfAborted();
      const lines: ResultLine[] = chunk.map((r, i) => ({ ...r, clip_score: scores[i]!, clip_model: opts.clipName }));
      await appendResults(resultsPath, lines);
      const secs = (performance.now() - start) / 1000 / chunk.length;
      for (let i = 0; i < chunk.length; i++) times.push(secs);
      scored += chunk.length;
      const done = skipped + k + chunk.length;
      const after = eta(times, todo.length - k - chunk.length);
      for (const [i, l] of lines.entries()) {
        const n = done - chunk.length + i + 1;
        ui.note(`[${n}/${results.length}] ${l.file}: CLIP ${l.clip_score!.toFixed(2)}${after !== null && n === done && done < results.length ? ` (${fmtDuration(after)} left)` : ''}`);
      }
    }
  } finally {
    ui.prefix = '';
    clip.dispose();
  }
  return { scored, images: results.length, skipped };
}
