import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { encodePng, pngTextChunks } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import {
  MODEL_FLAGS,
  VERSION,
  checkOutDir,
  checkSeed,
  commonOptions,
  createStageReporter,
  generationInfo,
  imageFileName,
  loadModel,
  type LoadedModel,
} from './generate.js';
import { writeAtomic } from '../write_atomic.js';

export interface PromptRow {
  /** 0-based index of the data row in the file (header excluded); fixes the seed and file name. */
  row: number;
  prompt: string;
  category: string;
  challenge: string;
  note: string;
}

/** A field wholly in double quotes (as spreadsheets write them) is unquoted; anything else is literal. */
function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s;
}

/**
 * Parses a PartiPrompts-style TSV: a header row naming the columns (Prompt is required; Category,
 * Challenge and Note are optional, any order, any case), then one prompt per line.
 */
export function parsePromptsTsv(text: string, name: string): PromptRow[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let h = 0;
  while (h < lines.length && lines[h]!.trim() === '') h++;
  if (h === lines.length) throw new UsageError(`--prompts ${name}: the file is empty`);
  const header = lines[h]!.split('\t').map((c) => unquote(c.trim()).toLowerCase());
  const col = (k: string) => header.indexOf(k);
  const pi = col('prompt');
  if (pi < 0) throw new UsageError(`--prompts ${name}: no "Prompt" column in the header line (expected Prompt<TAB>Category<TAB>Challenge<TAB>Note)`);
  const ci = col('category'), xi = col('challenge'), ni = col('note');
  const rows: PromptRow[] = [];
  let row = 0;
  for (let i = h + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const f = line.split('\t').map(unquote);
    const get = (k: number) => (k >= 0 ? (f[k] ?? '').trim() : '');
    const prompt = get(pi);
    if (prompt) rows.push({ row, prompt, category: get(ci), challenge: get(xi), note: get(ni) });
    row++;
  }
  return rows;
}

/** Keeps the rows whose category / challenge is one of the given ones (case-insensitive). */
export function filterRows(rows: PromptRow[], field: 'category' | 'challenge', wanted: string[] | undefined): PromptRow[] {
  if (!wanted?.length) return rows;
  const known = [...new Set(rows.map((r) => r[field]))];
  const want = new Set(wanted.map((w) => w.toLowerCase()));
  for (const w of wanted) {
    if (!known.some((k) => k.toLowerCase() === w.toLowerCase())) {
      throw new UsageError(`--${field} "${w}" matches no prompt (${field === 'category' ? 'categories' : 'challenges'}: ${known.filter(Boolean).sort().join(', ') || 'none'})`);
    }
  }
  return rows.filter((r) => want.has(r[field].toLowerCase()));
}

export interface ResultLine {
  prompt: string;
  category: string;
  challenge: string;
  row: number;
  seed: number;
  file: string;
  seconds: number;
  [k: string]: unknown;
}

/** Reads results.jsonl (the last line per file wins); unreadable lines are skipped. */
export async function readResults(path: string): Promise<{ results: Map<string, ResultLine>; endsWithNewline: boolean; bad: number }> {
  const results = new Map<string, ResultLine>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { results, endsWithNewline: true, bad: 0 };
  }
  let bad = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as ResultLine;
      if (typeof r.file === 'string' && typeof r.prompt === 'string') results.set(r.file, r);
      else bad++;
    } catch {
      bad++;
    }
  }
  return { results, endsWithNewline: text === '' || text.endsWith('\n'), bad };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The contact sheet: images grouped by category (in row order), text escaped, links relative. */
export function contactSheet(results: ResultLine[], title: string, subtitle: string): string {
  const sorted = [...results].sort((a, b) => a.row - b.row || a.file.localeCompare(b.file));
  const groups = new Map<string, ResultLine[]>();
  for (const r of sorted) {
    const k = r.category || 'Uncategorized';
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'x';
  const nav = [...groups].map(([k, rs]) => `<a href="#${esc(slug(k))}">${esc(k)} (${rs.length})</a>`).join(' · ');
  const sections = [...groups]
    .map(([k, rs]) => {
      const figs = rs
        .map((r) => {
          const href = esc(encodeURIComponent(r.file));
          const meta = [r.challenge, `seed ${r.seed}`, `${Number(r.seconds).toFixed(2)} s`].filter(Boolean).map(esc).join(' · ');
          return `<figure><a href="${href}"><img src="${href}" alt="${esc(r.prompt)}" loading="lazy"></a><figcaption>${esc(r.prompt)}<br><small>${meta}</small></figcaption></figure>`;
        })
        .join('\n');
      return `<h2 id="${esc(slug(k))}">${esc(k)} <small>(${rs.length})</small></h2>\n<div class="grid">\n${figs}\n</div>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.sub { color: #666; } nav { margin: 0.8em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; padding: 6px; border: 1px solid #e4e4e4; border-radius: 4px; }
img { width: 100%; height: auto; display: block; image-rendering: auto; }
figcaption { margin-top: 4px; font-size: 12px; } small { color: #777; }
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p class="sub">${esc(subtitle)}</p>
<nav>${nav}</nav>
${sections}
</body>
</html>
`;
}

async function fileExists(p: string): Promise<boolean> {
  return Boolean((await stat(p).catch(() => undefined))?.isFile());
}

export const batch: Command = {
  name: 'batch',
  summary: 'Generate one image per prompt of a PartiPrompts-style TSV, resumable, with an HTML contact sheet',
  usage:
    'fewstep batch --prompts <file.tsv> --out-dir <dir> [--category C]... [--challenge X]... [--limit N] [--seed BASE]\n' +
    '       [--model <id|dir>] [--steps N] [--guidance G] [--width W --height H] [--dtype f32|f16] [--vae tiny|large] [--quiet]',
  description:
    'Reads a tab-separated prompt list with a header line (Prompt, Category, Challenge, Note; the format of\n' +
    "PartiPrompts' PartiPrompts.tsv), loads the model once and writes one PNG per prompt into --out-dir, named\n" +
    '<row>-<prompt>.png (row = data line of the file, from 0), with seed = --seed + row. Each finished image is\n' +
    'appended to results.jsonl (prompt, category, challenge, seed, file, seconds); index.html is a contact sheet\n' +
    'grouped by category. Running again resumes: prompts whose PNG and results line exist are skipped.\n' +
    '--category / --challenge keep matching rows (repeatable, case-insensitive); --limit N keeps the first N.',
  flags: {
    prompts: { type: 'string', help: 'TSV file with a Prompt column (and Category, Challenge, Note)' },
    'out-dir': { type: 'string', help: 'Output folder (PNGs, results.jsonl, index.html)' },
    category: { type: 'string', multiple: true, help: 'Only prompts of this category (repeatable)' },
    challenge: { type: 'string', multiple: true, help: 'Only prompts of this challenge (repeatable)' },
    limit: { type: 'int', help: 'At most N prompts (after the filters)' },
    seed: { type: 'int', default: 0, help: 'Base seed: a prompt gets seed + its row index' },
    ...MODEL_FLAGS,
  },
  async run({ flags, positionals }, io) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (prompts come from --prompts <file.tsv>)`);
    const promptsPath = flags['prompts'] as string | undefined, outDir = flags['out-dir'] as string | undefined;
    if (promptsPath === undefined) throw new UsageError('--prompts <file.tsv> is required');
    if (outDir === undefined) throw new UsageError('--out-dir <dir> is required');
    const opts = commonOptions(flags);
    const base = checkSeed(flags['seed'])!;
    const limit = flags['limit'] as number | undefined;
    if (limit !== undefined && limit < 1) throw new UsageError(`--limit must be at least 1, got ${limit}`);
    let text: string;
    try {
      text = await readFile(promptsPath, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UsageError(`--prompts ${promptsPath}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? (e as Error).message})`}`);
    }
    let rows = parsePromptsTsv(text, promptsPath);
    rows = filterRows(rows, 'category', flags['category'] as string[] | undefined);
    rows = filterRows(rows, 'challenge', flags['challenge'] as string[] | undefined);
    if (limit !== undefined) rows = rows.slice(0, limit);
    if (rows.length === 0) throw new UsageError(`--prompts ${promptsPath}: no prompts to generate`);
    if (!Number.isSafeInteger(base + rows[rows.length - 1]!.row)) throw new UsageError(`--seed ${base} is too large`);
    await checkOutDir(outDir);
    await mkdir(outDir, { recursive: true });

    const resultsPath = join(outDir, 'results.jsonl');
    const prev = await readResults(resultsPath);
    const log = (s: string) => {
      if (!opts.quiet) io.stderr(`${s}\n`);
    };
    if (prev.bad) log(`note: skipped ${prev.bad} unreadable line${prev.bad === 1 ? '' : 's'} of ${resultsPath}`);
    const todo: PromptRow[] = [];
    for (const r of rows) {
      const file = imageFileName(r.row, r.prompt);
      const done = prev.results.get(file);
      if (done && done.prompt === r.prompt && (await fileExists(join(outDir, file)))) continue;
      todo.push(r);
    }
    const skipped = rows.length - todo.length;
    if (skipped) log(`resuming: ${skipped} of ${rows.length} prompt${rows.length === 1 ? '' : 's'} already done`);

    const all = new Map(prev.results);
    const writeIndex = async (loaded?: LoadedModel) => {
      const shown: ResultLine[] = [];
      for (const r of all.values()) if (await fileExists(join(outDir, r.file))) shown.push(r);
      const first = shown[0];
      const subtitle = [
        `${shown.length} image${shown.length === 1 ? '' : 's'}`,
        `model ${(first?.['model'] as string | undefined) ?? opts.model}`,
        first ? `${first['steps']} step${first['steps'] === 1 ? '' : 's'}, guidance ${first['guidance']}, ${first['width']}x${first['height']}` : '',
        loaded ? `on ${loaded.device.adapter.name}` : '',
        `fewstep ${VERSION}`,
      ]
        .filter(Boolean)
        .join(' · ');
      await writeAtomic(join(outDir, 'index.html'), contactSheet(shown, `fewstep batch: ${promptsPath.split(/[\\/]/).pop()}`, subtitle));
    };

    if (todo.length === 0) {
      await writeIndex();
      io.stdout(`${join(outDir, 'index.html')}\n`);
      log(`nothing to do: all ${rows.length} prompts are done`);
      return 0;
    }

    const reporter = createStageReporter(io.isTTY ? io : { ...io, stderr: () => {} }, opts.quiet);
    const loadStart = performance.now();
    const loaded = await loadModel(opts, io, reporter);
    reporter.finish();
    log(`loaded ${opts.model} in ${((performance.now() - loadStart) / 1000).toFixed(2)} s`);
    let needsNewline = !prev.endsWithNewline;
    let made = 0;
    const t0 = performance.now();
    try {
      const { pipe } = loaded;
      const steps = opts.steps ?? pipe.defaults.steps;
      const guidance = opts.guidance ?? pipe.defaults.guidance;
      const width = opts.width ?? pipe.defaults.width;
      const height = opts.height ?? pipe.defaults.height;
      for (const [k, r] of todo.entries()) {
        const file = imageFileName(r.row, r.prompt);
        const seed = base + r.row;
        const start = performance.now();
        const tag = `[${skipped + k + 1}/${rows.length}]`;
        const stepReporter = createStageReporter(io.isTTY ? io : { ...io, stderr: () => {} }, opts.quiet, `${tag} `);
        loaded.reporter = stepReporter;
        const res = await pipe.generate({
          prompt: r.prompt,
          negativePrompt: opts.negativePrompt ?? '',
          seed,
          steps,
          guidance,
          width,
          height,
          batchSize: 1,
        });
        stepReporter.finish();
        const img = res.images[0]!;
        const info = generationInfo(opts, loaded, { prompt: r.prompt, steps, guidance, seed, width: img.width, height: img.height, batchIndex: 0, batchSize: 1 });
        await writeAtomic(join(outDir, file), await encodePng(img, pngTextChunks(info)));
        const seconds = (performance.now() - start) / 1000;
        const line: ResultLine = {
          prompt: r.prompt,
          category: r.category,
          challenge: r.challenge,
          row: r.row,
          seed,
          file,
          seconds: Math.round(seconds * 1000) / 1000,
          steps,
          guidance,
          width: img.width,
          height: img.height,
          model: opts.model,
          scheduler: loaded.sampler,
          dtype: opts.dtype,
          vae: opts.vae,
          timings: res.timings,
        };
        await appendFile(resultsPath, (needsNewline ? '\n' : '') + JSON.stringify(line) + '\n');
        needsNewline = false;
        all.set(file, line);
        made++;
        log(`${tag} ${file} (${seconds.toFixed(2)} s)`);
      }
    } finally {
      loaded.dispose();
      await writeIndex(loaded);
    }
    const secs = (performance.now() - t0) / 1000;
    io.stdout(`${join(outDir, 'index.html')}\n`);
    log(`${made} image${made === 1 ? '' : 's'} in ${secs.toFixed(2)} s (${(secs / Math.max(1, made)).toFixed(2)} s each)${skipped ? `, ${skipped} skipped` : ''}`);
    return 0;
  },
};

