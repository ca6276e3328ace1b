// fewstep report: a run folder's summary (and its summary.json + report.html rewritten), two runs side by side
// (per category and challenge: both means, B − A, whether the 95% intervals overlap; --html for the page), or
// shard folders merged into one run (--merge).
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { compareRuns, formatComparison } from '../eval/compare.js';
import { compareHtml } from '../eval/report_html.js';
import { REPORT_FILE, readRunSettings } from '../eval/results.js';
import { mergeRuns, presentResults, writeRunReport } from '../eval/run_folder.js';
import { formatSummary, summarize, type RunSummary } from '../eval/summary.js';
import { checkOutDir } from '../generation/outputs.js';
import { VERSION } from '../version.js';
import { writeAtomic } from '../write_atomic.js';

/** --html: a file path whose folder exists. */
async function checkHtmlFile(path: string): Promise<void> {
  if ((await stat(path).catch(() => undefined))?.isDirectory()) throw new UsageError(`--html ${path} is a folder; name a file (e.g. compare.html)`);
  if (!(await stat(dirname(path)).catch(() => undefined))?.isDirectory()) throw new UsageError(`--html ${path}: folder ${dirname(path)} does not exist`);
}

/** A run folder's summary from its run.json and results (fresh, not summary.json: it may predate a scoring). */
async function runSummary(dir: string): Promise<RunSummary> {
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) throw new UsageError(`${dir}: folder not found`);
  const settings = await readRunSettings(dir);
  if (!settings) throw new UsageError(`${dir}: not a run folder (no run.json; make one with fewstep batch)`);
  return summarize((await presentResults(dir)).results, settings);
}

export const report: Command = {
  name: 'report',
  usage:
    'fewstep report <run-dir>\n' +
    '       fewstep report <runA-dir> <runB-dir> [--html out.html]\n' +
    '       fewstep report --merge <shard-dir>... --out <dir>',
  description:
    'One run folder (of fewstep batch): prints its summary — per category and challenge the images, how many are scored,\n' +
    'the mean CLIP score with its 95% confidence interval (Student t) and images/s — and rewrites its summary.json and\n' +
    'report.html.\n' +
    'Two run folders: prints them side by side per category and challenge (n, mean A, mean B, B − A, and whether the 95%\n' +
    'intervals overlap: when they do not, the prompts make the difference clear), with the settings that differ (f16 vs\n' +
    'f32, SDXS vs YOSO, TAESD vs the full VAE, …); --html writes the same as a page with paired bar charts.\n' +
    '--merge joins the folders of a run made with fewstep batch --shard i/n into --out (results, images hard-linked or\n' +
    'copied, summary.json, report.html); shards run with other settings, or scored with other CLIP models, are refused.',
  flags: {
    html: { type: 'string', arg: 'file', help: 'With two runs: write the comparison page (inline SVG, no network) here' },
    merge: { type: 'string', variadic: true, arg: 'dir', help: 'Shard folders to join into --out' },
    out: { type: 'string', short: 'o', arg: 'dir', help: 'With --merge: the merged run folder' },
  },
  async run({ flags, positionals }, io) {
    const merge = flags['merge'] as string[] | undefined;
    const out = flags['out'] as string | undefined;
    const html = flags['html'] as string | undefined;
    if (merge) {
      if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (the shard folders follow --merge)`);
      if (out === undefined) throw new UsageError('--merge needs --out <dir>: where the merged run goes');
      if (html !== undefined) throw new UsageError('--html goes with two runs to compare, not with --merge');
      for (const d of merge) {
        if (!(await stat(d).catch(() => undefined))?.isDirectory()) throw new UsageError(`--merge ${d}: folder not found`);
      }
      await checkOutDir(out, '--out');
      const r = await mergeRuns(merge, out);
      io.stderr(`merged ${merge.length} runs: ${r.images} image${r.images === 1 ? '' : 's'}${r.summary.overall.scored ? `, ${r.summary.overall.scored} scored` : ''}\n`);
      io.stdout(`${join(out, REPORT_FILE)}\n`);
      return 0;
    }
    if (out !== undefined) throw new UsageError('--out goes with --merge');
    if (positionals.length === 1) {
      if (html !== undefined) throw new UsageError('--html goes with two runs to compare (one run has its report.html)');
      const dir = positionals[0]!;
      await runSummary(dir);
      const summary = await writeRunReport(dir, [`fewstep ${VERSION}`]);
      io.stdout(formatSummary(summary, dir));
      io.stderr(`${join(dir, REPORT_FILE)}\n`);
      return 0;
    }
    if (positionals.length !== 2) throw new UsageError(positionals.length ? `give one run folder, or two to compare; got ${positionals.length}` : 'give a run folder, two to compare, or --merge <dirs> --out <dir>');
    const [a, b] = positionals as [string, string];
    if (html !== undefined) await checkHtmlFile(html);
    const comparison = compareRuns({ name: a, summary: await runSummary(a) }, { name: b, summary: await runSummary(b) });
    io.stdout(formatComparison(comparison));
    if (html !== undefined) {
      await writeAtomic(html, compareHtml(comparison), io.signal);
      io.stderr(`wrote ${html}\n`);
    }
    return 0;
  },
};
