/**
 * Two runs side by side (`fewstep report runA runB`): per category and challenge both means, the
 * difference B − A, and whether the two 95% intervals overlap (no overlap: a difference the prompt sample
 * makes clear). Groups present in only one run show with the other side empty.
 */
import { overlaps } from './stats.js';
import type { RunSettings } from './results.js';
import type { GroupSummary, RunSummary } from './summary.js';

export interface CompareRow {
  group: string;
  a: { mean: number | null; ci95: [number, number] | null; count: number };
  b: { mean: number | null; ci95: [number, number] | null; count: number };
  delta: number | null;
  overlap: boolean | null;
}

export interface RunComparison {
  a: { name: string; summary: RunSummary };
  b: { name: string; summary: RunSummary };
  overall: CompareRow;
  categories: CompareRow[];
  challenges: CompareRow[];
  /** [setting, A's value, B's value] for every setting that differs (what the comparison is about). */
  settingsDiff: [string, unknown, unknown][];
}

const EMPTY: GroupSummary = { count: 0, mean: null, sd: null, ci95: null, scored: 0, seconds: 0, images_per_second: null };

function row(group: string, a: GroupSummary, b: GroupSummary): CompareRow {
  const side = (g: GroupSummary) => ({ mean: g.mean, ci95: g.ci95, count: g.count });
  return { group, a: side(a), b: side(b), delta: a.mean !== null && b.mean !== null ? b.mean - a.mean : null, overlap: overlaps(a.ci95, b.ci95) };
}

function rows(a: Record<string, GroupSummary>, b: Record<string, GroupSummary>): CompareRow[] {
  const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort((x, y) => x.localeCompare(y));
  return names.map((n) => row(n, a[n] ?? EMPTY, b[n] ?? EMPTY));
}

export function compareRuns(a: { name: string; summary: RunSummary }, b: { name: string; summary: RunSummary }): RunComparison {
  const sa: Partial<RunSettings> = a.summary.settings ?? {}, sb: Partial<RunSettings> = b.summary.settings ?? {};
  const keys = [...new Set([...Object.keys(sa), ...Object.keys(sb)])].sort();
  const settingsDiff = keys.filter((k) => JSON.stringify(sa[k]) !== JSON.stringify(sb[k])).map((k): [string, unknown, unknown] => [k, sa[k], sb[k]]);
  return {
    a,
    b,
    overall: row('all', a.summary.overall, b.summary.overall),
    categories: rows(a.summary.categories, b.summary.categories),
    challenges: rows(a.summary.challenges, b.summary.challenges),
    settingsDiff,
  };
}

/** A plain-text table for the terminal. */
export function formatComparison(c: RunComparison): string {
  const f = (v: number | null) => (v === null ? '–' : v.toFixed(2));
  const lines: string[] = [`A: ${c.a.name}`, `B: ${c.b.name}`];
  if (c.settingsDiff.length) lines.push(`differs: ${c.settingsDiff.map(([k, a, b]) => `${k} ${JSON.stringify(a)} → ${JSON.stringify(b)}`).join(', ')}`);
  const table = (title: string, rs: CompareRow[]) => {
    const w = Math.max(8, ...rs.map((r) => r.group.length));
    lines.push('', `${title.padEnd(w)}  ${'n'.padStart(4)} ${'A'.padStart(7)}  ${'n'.padStart(4)} ${'B'.padStart(7)}  ${'B−A'.padStart(7)}  CIs overlap`);
    for (const r of rs) {
      const d = r.delta === null ? '–' : (r.delta >= 0 ? '+' : '') + r.delta.toFixed(2);
      lines.push(`${r.group.padEnd(w)}  ${String(r.a.count).padStart(4)} ${f(r.a.mean).padStart(7)}  ${String(r.b.count).padStart(4)} ${f(r.b.mean).padStart(7)}  ${d.padStart(7)}  ${r.overlap === null ? '–' : r.overlap ? 'yes' : 'no'}`);
    }
  };
  table('overall', [c.overall]);
  table('category', c.categories);
  table('challenge', c.challenges);
  return lines.join('\n') + '\n';
}
