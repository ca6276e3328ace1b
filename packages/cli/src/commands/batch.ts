// fewstep batch: a prompt list → one image per prompt in a run folder (run.json, results.jsonl, summary.json,
// report.html; see eval/results.ts), resumable. The model is checked and loaded once, as generate does it.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FewstepError } from '@fewstep/tensor';
import { resolveGenerateOptions, type GenerationPlan } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { readPrompts, type PromptRow } from '../prompts/index.js';
import { RESULTS_FILE, REPORT_FILE, appendResults, readResults, readRunSettings, settingsKey, writeRunSettings, type ResultLine, type RunSettings } from '../eval/results.js';
import { writeRunReport } from '../eval/run_folder.js';
import { VERSION } from '../version.js';
import { writeAtomic } from '../write_atomic.js';
import { checkLoras } from '../lora_source.js';
import { MODEL_FLAGS, QUIET_FLAG, SAMPLING_FLAGS, modelOptions, requestError, samplingOptions, seedOption } from '../generation/flags.js';
import { YOSO_NOTE, loadModel, planModel } from '../generation/model.js';
import { OUTPUT_FORMATS, checkOutDir, encodeImage, generationInfo, imageFileName, type OutputFormat } from '../generation/outputs.js';
import { createProgressUI, eta, fmtDuration } from '../generation/progress.js';

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

/** readPrompts with its errors (missing file, unknown format, no Prompt column, …) as one UsageError line naming --prompts. */
async function readPromptsFlag(path: string): Promise<PromptRow[]> {
  try {
    return await readPrompts(path);
  } catch (e) {
    if (e instanceof FewstepError) throw new UsageError(`--prompts ${e.message}`);
    throw e;
  }
}

/** The run's settings without undefined entries (run.json round-trips them exactly, so settingsKey compares). */
const defined = <T extends Record<string, unknown>>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/** "steps: 1 vs 2; width: 512 vs 256" — what differs between the run.json in the folder and this run. */
function settingsDiff(a: RunSettings, b: RunSettings): string {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => k !== 'clip_model' && k !== 'shard' && JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return keys.map((k) => `${k}: ${JSON.stringify(a[k]) ?? 'none'} there, ${JSON.stringify(b[k]) ?? 'none'} now`).join('; ');
}

const exists = async (p: string) => Boolean((await stat(p).catch(() => undefined))?.isFile());

/** Prompts generated per pipeline call; one today (each image has its own seed), the loop is shaped for more. */
const PROMPTS_PER_CALL = 1;

export const batch: Command = {
  name: 'batch',
  usage:
    'fewstep batch --prompts <file.tsv|.csv|.parquet|.jsonl|.txt> --out-dir <dir> [--category C]... [--challenge X]... [--limit N] [-s BASE]\n' +
    '       [--format png|jpeg|webp] [--model <id|dir>] [--steps N] [--guidance G] [-W W -H H] [-n <negative prompt>] [--clip-skip N]\n' +
    '       [--dtype f32|f16] [--vae tiny|large] [--scheduler Name] [--lora <file|repo>[:scale]]... [--quiet]',
  description:
    'Reads a prompt list — PartiPrompts\' TSV (Prompt, Category, Challenge, Note; any case, any order), or the same columns\n' +
    'as CSV, parquet or JSONL, or TXT with one prompt per line — loads the model once and writes one image per prompt into\n' +
    '--out-dir, named <row>-<prompt>.png (row = data row of the file, from 0), with seed = --seed + row. The folder is a run:\n' +
    'run.json (the settings; a folder holding a run with other settings is refused), results.jsonl (one line per finished\n' +
    'image: prompt, category, challenge, seed, file, seconds, …), summary.json (per category and challenge) and report.html\n' +
    '(charts and a contact sheet grouped by category). Running again resumes: prompts whose image and results line exist are\n' +
    'skipped. --category / --challenge keep matching rows (repeatable, case-insensitive); --limit N keeps the first N.\n' +
    'Progress: one line per image with the time left (a status line on a terminal). Ctrl-C stops after cleaning up (exit 130);\n' +
    'the images made so far stay, and the next run resumes.',
  flags: {
    prompts: { type: 'string', arg: 'file', help: 'Prompt list: .tsv, .csv, .parquet, .jsonl or .txt with a Prompt column (and Category, Challenge, Note)' },
    'out-dir': { type: 'string', arg: 'dir', help: 'The run folder (images, run.json, results.jsonl, summary.json, report.html)' },
    format: { type: 'string', choices: OUTPUT_FORMATS, default: 'png', help: 'Image file format' },
    category: { type: 'string', multiple: true, help: 'Only prompts of this category' },
    challenge: { type: 'string', multiple: true, help: 'Only prompts of this challenge' },
    limit: { type: 'int', arg: 'N', help: 'At most N prompts (after the filters)' },
    seed: { type: 'int', short: 's', default: 0, arg: 'BASE', help: 'Base seed: a prompt gets seed + its row index (-1: a random base, printed)' },
    ...MODEL_FLAGS,
    ...SAMPLING_FLAGS,
    ...QUIET_FLAG,
  },
  async run({ flags, positionals }, io) {
    const { signal } = io;
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (prompts come from --prompts <file>)`);
    const promptsPath = flags['prompts'] as string | undefined, outDir = flags['out-dir'] as string | undefined;
    if (promptsPath === undefined) throw new UsageError('--prompts <file> is required');
    if (outDir === undefined) throw new UsageError('--out-dir <dir> is required');
    const model = modelOptions(flags);
    const sampling = samplingOptions(flags);
    const quiet = Boolean(flags['quiet']);
    const format = flags['format'] as OutputFormat;
    const randomBase = flags['seed'] === -1;
    const base = randomBase ? Math.floor(Math.random() * 2 ** 32) : seedOption(flags['seed'])!;
    const limit = flags['limit'] as number | undefined;
    if (limit !== undefined && limit < 1) throw new UsageError(`--limit must be at least 1, got ${limit}`);
    let rows = await readPromptsFlag(promptsPath);
    rows = filterRows(rows, 'category', flags['category'] as string[] | undefined);
    rows = filterRows(rows, 'challenge', flags['challenge'] as string[] | undefined);
    if (limit !== undefined) rows = rows.slice(0, limit);
    if (rows.length === 0) throw new UsageError(`--prompts ${promptsPath}: no prompts to generate`);
    if (!Number.isSafeInteger(base + rows[rows.length - 1]!.row)) throw new UsageError(`--seed ${base} is too large`);
    await checkOutDir(outDir);
    await checkLoras(model.loras);

    const ui = createProgressUI(io, { quiet, stageLines: false });
    try {
      // ---- the model's configs and one request checked against them: before any weights or files
      const plan = await planModel(model, {}, { ui, signal });
      const request = {
        prompt: rows[0]!.prompt,
        negativePrompt: sampling.negativePrompt,
        steps: sampling.steps,
        guidance: sampling.guidance,
        width: sampling.width,
        height: sampling.height,
        clipSkip: sampling.clipSkip,
        batchSize: 1,
      };
      let checked: GenerationPlan;
      try {
        checked = resolveGenerateOptions({ ...request, seed: base }, plan.info);
      } catch (e) {
        throw requestError(e, {}, request);
      }
      const settings: RunSettings = defined({
        model: model.model,
        revision: model.revision,
        steps: checked.steps,
        guidance: checked.guidance,
        width: checked.width,
        height: checked.height,
        dtype: model.dtype,
        vae: model.vae,
        scheduler: plan.info.scheduler,
        loras: model.loras.length ? model.loras.map((l) => `${l.source}:${l.scale}`) : undefined,
        negative_prompt: sampling.negativePrompt,
        clip_skip: checked.clipSkip ?? undefined,
        seed: base,
        prompts: promptsPath,
      });
      const previous = await readRunSettings(outDir);
      if (previous && settingsKey(previous) !== settingsKey(settings)) {
        throw new UsageError(`--out-dir ${outDir} holds a run with other settings (${settingsDiff(previous, settings)}); use another folder`);
      }
      if (plan.yoso) ui.note(YOSO_NOTE);
      for (const w of checked.warnings) ui.note(`note: ${w}`);
      if (randomBase) ui.note(`seed ${base} (random base; pass --seed ${base} to repeat)`);
      await mkdir(outDir, { recursive: true });
      if (!previous) await writeRunSettings(outDir, settings);

      // ---- what is left to do
      const resultsPath = join(outDir, RESULTS_FILE);
      const prev = await readResults(resultsPath);
      if (prev.bad) ui.note(`note: skipped ${prev.bad} unreadable line${prev.bad === 1 ? '' : 's'} of ${resultsPath}`);
      const todo: PromptRow[] = [];
      for (const r of rows) {
        const file = imageFileName(r.row, r.prompt, format);
        const done = prev.results.get(file);
        if (done && done.prompt === r.prompt && (await exists(join(outDir, file)))) continue;
        todo.push(r);
      }
      const skipped = rows.length - todo.length;
      if (skipped) ui.note(`resuming: ${skipped} of ${rows.length} prompt${rows.length === 1 ? '' : 's'} already done`);
      const report = join(outDir, REPORT_FILE);
      if (todo.length === 0) {
        await writeRunReport(outDir, [`fewstep ${VERSION}`]);
        io.stdout(`${report}\n`);
        ui.note(`nothing to do: all ${rows.length} prompts are done`);
        return 0;
      }

      // ---- load once, then the prompts
      const tLoad = performance.now();
      const loaded = await loadModel(plan, { ui, signal });
      ui.note(`loaded ${model.model} in ${((performance.now() - tLoad) / 1000).toFixed(2)} s`);
      let repairTail = !prev.endsWithNewline;
      const times: number[] = [];
      const t0 = performance.now();
      try {
        for (let k = 0; k < todo.length; k += PROMPTS_PER_CALL) {
          const chunk = todo.slice(k, k + PROMPTS_PER_CALL);
          const left = eta(times, todo.length - k);
          ui.prefix = `[${skipped + k + 1}/${rows.length}${left !== null ? `, ETA ${fmtDuration(left)}` : ''}] `;
          const start = performance.now();
          // One seed per call (the pipeline has one generator): with more prompts per call this becomes a seed per image.
          const seed = base + chunk[0]!.row;
          const res = await loaded.pipe.generate({ ...request, prompt: chunk.map((r) => r.prompt), seed, signal });
          const seconds = (performance.now() - start) / 1000 / chunk.length;
          const lines: ResultLine[] = [];
          for (const [i, r] of chunk.entries()) {
            const img = res.images[i]!;
            const file = imageFileName(r.row, r.prompt, format);
            const info = generationInfo(model, loaded.sampler, sampling.negativePrompt, { prompt: r.prompt, steps: res.plan.steps, guidance: res.plan.guidance, seed, width: img.width, height: img.height, batchIndex: 0, batchSize: 1 });
            await writeAtomic(join(outDir, file), await encodeImage(img, format, info), signal);
            lines.push({
              prompt: r.prompt,
              category: r.category,
              challenge: r.challenge,
              row: r.row,
              seed,
              file,
              seconds: Math.round(seconds * 1000) / 1000,
              steps: res.plan.steps,
              guidance: res.plan.guidance,
              width: img.width,
              height: img.height,
              model: model.model,
              scheduler: loaded.sampler,
              dtype: model.dtype,
              vae: model.vae,
              timings: res.timings,
            });
            times.push(seconds);
          }
          await appendResults(resultsPath, lines, repairTail);
          repairTail = false;
          const done = skipped + k + chunk.length;
          const after = eta(times, todo.length - k - chunk.length);
          for (const l of lines) ui.note(`[${done}/${rows.length}] ${l.file} (${l.seconds.toFixed(2)} s${after !== null && done < rows.length ? `, ${fmtDuration(after)} left` : ''})`);
        }
      } finally {
        ui.finish();
        const adapter = loaded.device.adapter.name;
        loaded.dispose();
        await writeRunReport(outDir, [`on ${adapter}`, `fewstep ${VERSION}`]);
      }
      const secs = (performance.now() - t0) / 1000;
      io.stdout(`${report}\n`);
      ui.note(`${times.length} image${times.length === 1 ? '' : 's'} in ${secs.toFixed(2)} s (${(secs / Math.max(1, times.length)).toFixed(2)} s each)${skipped ? `, ${skipped} skipped` : ''}`);
      return 0;
    } finally {
      ui.finish();
    }
  },
};
