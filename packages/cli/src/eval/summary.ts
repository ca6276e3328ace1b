/**
 * summary.json of a run: per category and per challenge (PartiPrompts' two axes) the image count, the mean
 * CLIP score with its 95% confidence interval, and images/s (images ÷ their generation seconds).
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

function group(rows: readonly ResultLine[]): GroupSummary {
  const scores = rows.map((r) => r.clip_score).filter((s): s is number => typeof s === 'number' && Number.isFinite(s));
  const seconds = rows.reduce((a, r) => a + (Number.isFinite(r.seconds) ? r.seconds : 0), 0);
  const stats = meanCI(scores);
  return { ...stats, count: rows.length, scored: scores.length, seconds, images_per_second: seconds > 0 ? rows.length / seconds : null };
}

function by(rows: readonly ResultLine[], key: 'category' | 'challenge'): Record<string, GroupSummary> {
  const groups = new Map<string, ResultLine[]>();
  for (const r of rows) {
    const k = r[key] || UNLABELLED;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  return Object.fromEntries([...groups].sort(([a], [b]) => a.localeCompare(b)).map(([k, g]) => [k, group(g)]));
}

export function summarize(rows: readonly ResultLine[], settings: RunSettings | null): RunSummary {
  return { settings, overall: group(rows), categories: by(rows, 'category'), challenges: by(rows, 'challenge') };
}
