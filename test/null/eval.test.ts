// The evaluation's arithmetic and run folders (no GPU): Student-t intervals, per-category/challenge summaries,
// run comparison, shard selection, and merging shard folders (refusing shards of different settings).
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { meanCI, overlaps, studentTQuantile, studentTCdf } from '../../packages/cli/src/eval/stats';
import { formatSummary, summarize } from '../../packages/cli/src/eval/summary';
import { scoredWith } from '../../packages/cli/src/eval/score_run';
import { compareRuns, formatComparison } from '../../packages/cli/src/eval/compare';
import { inShard, parseShard } from '../../packages/cli/src/eval/shard';
import { mergeRuns, writeRunReport } from '../../packages/cli/src/eval/run_folder';
import { compareHtml } from '../../packages/cli/src/eval/report_html';
import type { ResultLine, RunSettings } from '../../packages/cli/src/eval/results';

const work = mkdtempSync(join(tmpdir(), 'fewstep-eval-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const settings: RunSettings = { model: 'org/m', steps: 1, guidance: 0, width: 64, height: 64, dtype: 'f32', scheduler: 'EulerDiscreteScheduler', seed: 0, prompts: 'p.tsv' };
const line = (row: number, category: string, challenge: string, clip_score?: number): ResultLine => ({
  prompt: `prompt ${row}`, category, challenge, row, seed: row, file: `${String(row).padStart(4, '0')}-p.png`, seconds: 0.5, ...(clip_score !== undefined ? { clip_score } : {}),
});

describe('statistics', () => {
  it("Student's t quantiles match the tables", () => {
    for (const [df, t] of [[1, 12.7062], [2, 4.3027], [4, 2.7764], [9, 2.2622], [30, 2.0423], [1000, 1.9623]] as const) expect(studentTQuantile(0.975, df)).toBeCloseTo(t, 3);
    expect(studentTCdf(0, 5)).toBeCloseTo(0.5, 12);
  });
  it('mean and 95% interval', () => {
    const r = meanCI([20, 22, 24, 26, 28]);
    expect(r.mean).toBe(24);
    expect(r.sd).toBeCloseTo(Math.sqrt(10), 12);
    const half = 2.7764451 * (Math.sqrt(10) / Math.sqrt(5));
    expect(r.ci95![0]).toBeCloseTo(24 - half, 5);
    expect(r.ci95![1]).toBeCloseTo(24 + half, 5);
    expect(meanCI([5])).toEqual({ count: 1, mean: 5, sd: null, ci95: null });
    expect(meanCI([])).toEqual({ count: 0, mean: null, sd: null, ci95: null });
    expect(overlaps([1, 2], [2, 3])).toBe(true);
    expect(overlaps([1, 2], [2.1, 3])).toBe(false);
  });
});

describe('summary and comparison', () => {
  const rows = [line(0, 'Animals', 'Basic', 30), line(1, 'Animals', 'Basic', 32), line(2, 'Animals', 'Complex', 28), line(3, 'Food', '', 20), line(4, 'Food', 'Basic')];
  it('groups by category and challenge; unscored images count but do not score', () => {
    const s = summarize(rows, settings);
    expect(Object.keys(s.categories)).toEqual(['Animals', 'Food']);
    expect(Object.keys(s.challenges)).toEqual(['(none)', 'Basic', 'Complex']);
    expect(s.categories['Animals']).toMatchObject({ count: 3, scored: 3, mean: 30, seconds: 1.5, images_per_second: 2 });
    expect(s.categories['Food']).toMatchObject({ count: 2, scored: 1, mean: 20, ci95: null });
    expect(s.overall).toMatchObject({ count: 5, scored: 4, mean: 27.5 });
  });
  it("counts only the run's CLIP model's scores (a run being scored again with another model), and prints a table", () => {
    const mixed = [
      { ...line(0, 'Animals', 'Basic', 30), clip_model: 'new/clip' },
      { ...line(1, 'Animals', 'Basic', 90), clip_model: 'old/clip' },
      line(2, 'Animals', 'Basic', 34),
    ];
    const s = summarize(mixed, { ...settings, clip_model: 'new/clip' });
    expect(s.overall).toMatchObject({ count: 3, scored: 2, mean: 32 });
    // without a recorded model every score counts
    expect(summarize(mixed, settings).overall.scored).toBe(3);
    const st = { ...settings, clip_model: 'new/clip' };
    expect(mixed.map((r) => scoredWith(r, st, 'new/clip'))).toEqual([true, false, true]);
    expect(scoredWith(line(3, 'A', 'B'), st, 'new/clip')).toBe(false);
    const text = formatSummary(s, 'runs/a');
    expect(text.split('\n').slice(0, 4)).toEqual(['run: runs/a (CLIP new/clip)', '', 'overall   images scored    CLIP  95% CI           images/s', 'all            3      2   32.00  6.59 – 57.41     2.000']);
    expect(text).toContain('\nAnimals        3      2   32.00');
  });

  it('compares two runs per group: delta B − A and whether the intervals overlap', () => {
    const a = summarize(rows, settings);
    const b = summarize(rows.map((r) => ({ ...r, clip_score: r.clip_score === undefined ? undefined : r.clip_score + 15 })), { ...settings, dtype: 'f16' });
    const c = compareRuns({ name: 'f32', summary: a }, { name: 'f16', summary: b });
    expect(c.settingsDiff).toEqual([['dtype', 'f32', 'f16']]);
    const animals = c.categories.find((r) => r.group === 'Animals')!;
    expect(animals.delta).toBeCloseTo(15, 12);
    expect(animals.overlap).toBe(false);
    expect(c.categories.find((r) => r.group === 'Food')!.overlap).toBeNull();
    expect(formatComparison(c)).toMatch(/Animals\s+3\s+30\.00\s+3\s+45\.00\s+\+15\.00\s+no/);
    const html = compareHtml(c);
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/https?:\/\//);
  });
});

describe('shards', () => {
  it('--shard i/n: disjoint, covering, stable by row', () => {
    const all = Array.from({ length: 23 }, (_, i) => i);
    const parts = [1, 2, 3].map((i) => all.filter((r) => inShard(r, parseShard(`${i}/3`))));
    expect(parts.flat().sort((a, b) => a - b)).toEqual(all);
    expect(parts[1]!.slice(0, 3)).toEqual([1, 4, 7]);
    for (const bad of ['0/3', '4/3', '1/0', 'x', '1/3/4']) expect(() => parseShard(bad), bad).toThrow(/--shard must be i\/n/);
  });

  it('merges shard folders into one run (summary.json, report.html), refusing other settings', async () => {
    const mk = (name: string, s: RunSettings, rs: ResultLine[]) => {
      const d = join(work, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'run.json'), JSON.stringify(s));
      writeFileSync(join(d, 'results.jsonl'), rs.map((r) => JSON.stringify(r)).join('\n') + '\n');
      for (const r of rs) writeFileSync(join(d, r.file), `png ${r.row}`);
      return d;
    };
    const s1 = mk('s1', { ...settings, shard: '1/2' }, [line(0, 'Animals', 'Basic', 30), line(2, 'Food', 'Basic', 20)]);
    const s2 = mk('s2', { ...settings, shard: '2/2' }, [line(1, 'Animals', 'Basic', 32), line(3, 'Food', 'Basic', 22)]);
    const out = join(work, 'all');
    const m = await mergeRuns([s1, s2], out);
    expect(m.images).toBe(4);
    expect(m.summary.categories['Animals']!.mean).toBe(31);
    expect(readFileSync(join(out, '0001-p.png'), 'utf8')).toBe('png 1');
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).shard).toBeUndefined();
    expect(readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).row)).toEqual([0, 1, 2, 3]);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).overall.count).toBe(4);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('Mean CLIP score by category');
    expect(html).toContain('data-score="32"');

    const other = mk('s3', { ...settings, steps: 2, shard: '2/2' }, [line(5, 'Food', 'Basic', 1)]);
    await expect(mergeRuns([s1, other], join(work, 'bad'))).rejects.toThrow(/was run with other settings than .* \(steps: 1 vs 2\)/);
    expect(existsSync(join(work, 'bad', 'results.jsonl'))).toBe(false);
  });

  it('report.html escapes prompts and works unscored', async () => {
    const d = join(work, 'esc');
    mkdirSync(d);
    writeFileSync(join(d, 'run.json'), JSON.stringify(settings));
    const r = { ...line(0, 'A<b>', 'x'), prompt: '<script>alert(1)</script>' };
    writeFileSync(join(d, 'results.jsonl'), JSON.stringify(r) + '\n');
    writeFileSync(join(d, r.file), 'png');
    await writeRunReport(d);
    const html = readFileSync(join(d, 'report.html'), 'utf8');
    expect(html).not.toContain('<script>alert');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('Not scored yet');
  });
});
