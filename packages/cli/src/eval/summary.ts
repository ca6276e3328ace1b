/**
 * summary.json of a run: per category and per challenge (PartiPrompts' two axes) the image count, the mean
 * CLIP score with its 95% confidence interval, and images/s (images ÷ their generation seconds). Only scores of
 * the run's CLIP model (run.json's clip_model) count: a line scored by another model, while a run is being
 * scored again, is an unscored image.
 */
import { meanCI, type MeanCI } from './stats.js';
import type { ResultLine, RunSettings } from './results.js';

export interface GroupSummary extends MeanCI {
  /** Images that have a CLIP score (count is all images of the group). */
  scored: number;
  seconds: number;
  images_per_second: number | null;
}

export interface RunSummary {
  settings: RunSettings | null;
  overall: GroupSummary;
  categories: Record<string, GroupSummary>;
  challenges: Record<string, GroupSummary>;
}

export const UNLABELLED = '(none)';

/** A line's score when it counts: a number, from the run's CLIP model (a line may name the model that scored it). */
function scoreOf(r: ResultLine, clipModel: string | undefined): number | undefined {
  const s = r.clip_score;
  if (typeof s !== 'number' || !Number.isFinite(s)) return undefined;
  const by = r['clip_model'];
  return typeof by === 'string' && clipModel !== undefined && by !== clipModel ? undefined : s;
}

function group(rows: readonly ResultLine[], clipModel: string | undefined): GroupSummary {
  const scores = rows.map((r) => scoreOf(r, clipModel)).filter((s): s is number => s !== undefined);
  const seconds = rows.reduce((a, r) => a + (Number.isFinite(r.seconds) ? r.seconds : 0), 0);
  const stats = meanCI(scores);
  return { ...stats, count: rows.length, scored: scores.length, seconds, images_per_second: seconds > 0 ? rows.length / seconds : null };
}

function by(rows: readonly ResultLine[], key: 'category' | 'challenge', clipModel: string | undefined): Record<string, GroupSummary> {
  const groups = new Map<string, ResultLine[]>();
  for (const r of rows) {
    const k = r[key] || UNLABELLED;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  return Object.fromEntries([...groups].sort(([a], [b]) => a.localeCompare(b)).map(([k, g]) => [k, group(g, clipModel)]));
}

export function summarize(rows: readonly ResultLine[], settings: RunSettings | null): RunSummary {
  const clip = settings?.clip_model;
  return { settings, overall: group(rows, clip), categories: by(rows, 'category', clip), challenges: by(rows, 'challenge', clip) };
}

/** A plain-text table of a run's summary for the terminal: per group the images, scored, mean ± 95% CI, images/s. */
export function formatSummary(s: RunSummary, name: string): string {
  const f = (v: number | null, d = 2) => (v === null ? '–' : v.toFixed(d));
  const ci = (g: GroupSummary) => (g.ci95 ? `${f(g.ci95[0])} – ${f(g.ci95[1])}` : '–');
  const lines = [`run: ${name}${s.settings?.clip_model ? ` (CLIP ${s.settings.clip_model})` : ''}`];
  const table = (title: string, groups: [string, GroupSummary][]) => {
    const w = Math.max(8, ...groups.map(([k]) => k.length));
    lines.push('', `${title.padEnd(w)}  ${'images'.padStart(6)} ${'scored'.padStart(6)}  ${'CLIP'.padStart(6)}  ${'95% CI'.padEnd(15)}  images/s`);
    for (const [k, g] of groups) lines.push(`${k.padEnd(w)}  ${String(g.count).padStart(6)} ${String(g.scored).padStart(6)}  ${f(g.mean).padStart(6)}  ${ci(g).padEnd(15)}  ${f(g.images_per_second, 3)}`);
  };
  table('overall', [['all', s.overall]]);
  table('category', Object.entries(s.categories));
  table('challenge', Object.entries(s.challenges));
  return lines.join('\n') + '\n';
}
