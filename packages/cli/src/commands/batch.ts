// fewstep batch: a prompt list (a file or a hub dataset) → one image per prompt in a run folder (run.json,
// results.jsonl, summary.json, report.html; see eval/results.ts), resumable, N prompts per forward
// (--batch-size), one slice of n (--shard), CLIP-scored afterwards (--score). The model is checked and loaded
// once, as generate does it; the CLIP model only after the diffusion model is freed.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_BATCH, resolveGenerateOptions, type GenerationPlan } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import type { PromptRow } from '../prompts/index.js';
import { readPromptsFlag } from '../prompts/flag.js';
import { RESULTS_FILE, REPORT_FILE, appendResults, readResults, repairResults, readRunSettings, settingsKey, writeRunSettings, type ResultLine, type RunSettings } from '../eval/results.js';
import { writeRunReport } from '../eval/run_folder.js';
import { inShard, parseShard, shardLabel, type Shard } from '../eval/shard.js';
import { DEFAULT_CLIP_MODEL, clipFlagError, planClip, type ClipPlan } from '../eval/clip_model.js';
import { checkClipModel, scoreRun } from '../eval/score_run.js';
import { VERSION } from '../version.js';
import { writeAtomic } from '../write_atomic.js';
import { checkLoras } from '../lora_source.js';
import { LOW_MEMORY_FLAG, MODEL_FLAGS, QUIET_FLAG, SAMPLING_FLAGS, modelOptions, requestError, samplingOptions, seedOption } from '../generation/flags.js';
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

/** The run's settings without undefined entries (run.json round-trips them exactly, so settingsKey compares). */
const defined = <T extends Record<string, unknown>>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/** "steps: 1 vs 2; width: 512 vs 256" — what differs between the run.json in the folder and this run. */
function settingsDiff(a: RunSettings, b: RunSettings): string {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => k !== 'clip_model' && k !== 'shard' && JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return keys.map((k) => `${k}: ${JSON.stringify(a[k]) ?? 'none'} there, ${JSON.stringify(b[k]) ?? 'none'} now`).join('; ');
}


const exists = async (p: string) => Boolean((await stat(p).catch(() => undefined))?.isFile());

/** Largest --batch-size: the pipeline's images per call. */
export const MAX_BATCH_SIZE = MAX_BATCH;

export const batch: Command = {
  name: 'batch',
  usage:
    'fewstep batch --prompts <file|org/dataset[@rev]> --out-dir <dir> [--category C]... [--challenge X]... [--limit N] [-s BASE]\n' +
    '       [--batch-size N] [--shard i/n] [--score [clip-model]] [--format png|jpeg|webp] [--model <id|dir>] [--steps N]\n' +
    '       [--guidance G] [-W W -H H] [-n <negative prompt>] [--clip-skip N] [--dtype f32|f16] [--vae tiny|large] [--vae-dtype f32|f16]\n' +
    '       [--scheduler Name] [--lora <file|repo>[:scale]]... [--quiet]',
  description:
    'Reads a prompt list — PartiPrompts\' TSV (Prompt, Category, Challenge, Note; any case, any order), or the same columns\n' +
    'as CSV, parquet or JSONL, or TXT with one prompt per line, or a Hugging Face dataset id such as nateraw/parti-prompts\n' +
    '(its data files — parquet shards of one split, or a TSV/CSV/JSONL — downloaded into the HF cache; the hub\'s\n' +
    'refs/convert/parquet revision when the repo has none; HF_HUB_OFFLINE=1 works from the cache) — loads the model once and\n' +
    'writes one image per prompt into --out-dir, named <row>-<prompt>.png (row = data row of the list, from 0), with\n' +
    'seed = --seed + row. The folder is a run: run.json (the settings; a folder holding a run with other settings is\n' +
    'refused), results.jsonl (one line per finished image: prompt, category, challenge, seed, file, seconds, …),\n' +
    'summary.json (per category and challenge: count, mean CLIP score with a 95% interval, images/s) and report.html\n' +
    '(bar charts and a contact sheet grouped by category, sortable by score). Running again resumes: prompts whose image\n' +
    'and results line exist are skipped. --category / --challenge keep matching rows (repeatable, case-insensitive);\n' +
    '--limit N keeps the first N.\n' +
    '--batch-size N runs N prompts per forward (text encoder, UNet, decoder; CLIP too), one seed per image: the images are\n' +
    'those of --batch-size 1. --shard i/n makes only the i-th of n disjoint slices of the list (row mod n = i − 1), for\n' +
    'spreading a run over machines; `fewstep report --merge` joins the shard folders. --score [clip-model] CLIP-scores the\n' +
    'images once all are made (the diffusion model freed first; default ' + DEFAULT_CLIP_MODEL + ', or a\n' +
    'CLIPModel folder), each results line gains clip_score — as `fewstep score --run` does it, resumable.\n' +
    'Progress: one line per image with the time left (a status line on a terminal). Ctrl-C stops after cleaning up (exit 130);\n' +
    'the images made so far stay, and the next run resumes.',
  flags: {
    prompts: { type: 'string', arg: 'file|dataset', help: 'Prompt list: .tsv, .csv, .parquet, .jsonl or .txt with a Prompt column (and Category, Challenge, Note), or a hub dataset org/name[@rev]' },
    'out-dir': { type: 'string', arg: 'dir', help: 'The run folder (images, run.json, results.jsonl, summary.json, report.html)' },
    format: { type: 'string', choices: OUTPUT_FORMATS, default: 'png', help: 'Image file format' },
    category: { type: 'string', multiple: true, help: 'Only prompts of this category' },
    challenge: { type: 'string', multiple: true, help: 'Only prompts of this challenge' },
    limit: { type: 'int', arg: 'N', help: 'At most N prompts (after the filters)' },
    seed: { type: 'int', short: 's', default: 0, arg: 'BASE', help: 'Base seed: a prompt gets seed + its row index (-1: a random base, printed)' },
    'batch-size': { type: 'int', arg: 'N', default: 1, help: 'Prompts per forward pass (the images do not change; throughput does)' },
    shard: { type: 'string', arg: 'i/n', help: 'Only the i-th of n disjoint slices of the prompts (by row: row mod n = i - 1)' },
    score: { type: 'string', arg: 'clip-model', optionalValue: DEFAULT_CLIP_MODEL, help: `CLIP-score every image after generating (a hub CLIPModel repo or folder; alone: ${DEFAULT_CLIP_MODEL})` },
    ...MODEL_FLAGS,
    ...LOW_MEMORY_FLAG,
    ...SAMPLING_FLAGS,
    ...QUIET_FLAG,
  },
  async run({ flags, positionals }, io) {
    const { signal } = io;
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (prompts come from --prompts <file>)`);
    const promptsSpec = flags['prompts'] as string | undefined, outDir = flags['out-dir'] as string | undefined;
    if (promptsSpec === undefined) throw new UsageError('--prompts <file> is required');
    if (outDir === undefined) throw new UsageError('--out-dir <dir> is required');
    const model = modelOptions(flags);
    const sampling = samplingOptions(flags);
    const quiet = Boolean(flags['quiet']);
    const format = flags['format'] as OutputFormat;
    const randomBase = flags['seed'] === -1;
    const base = randomBase ? Math.floor(Math.random() * 2 ** 32) : seedOption(flags['seed'])!;
    const limit = flags['limit'] as number | undefined;
    if (limit !== undefined && limit < 1) throw new UsageError(`--limit must be at least 1, got ${limit}`);
    const perCall = flags['batch-size'] as number;
    if (perCall < 1 || perCall > MAX_BATCH_SIZE) throw new UsageError(`--batch-size must be from 1 to ${MAX_BATCH_SIZE}, got ${perCall}`);
    const shard: Shard | undefined = flags['shard'] === undefined ? undefined : parseShard(flags['shard'] as string);
    const score = flags['score'] as string | undefined;
    if (score === '') throw new UsageError('--score: the CLIP model must not be empty');

    const ui = createProgressUI(io, { quiet, stageLines: false });
    try {
      // ---- the prompts (a hub dataset's files are downloaded here: small), filtered, sliced
      const source = await readPromptsFlag(promptsSpec, { signal, onProgress: ui.onProgress, note: ui.note });
      let rows = source.rows;
      rows = filterRows(rows, 'category', flags['category'] as string[] | undefined);
      rows = filterRows(rows, 'challenge', flags['challenge'] as string[] | undefined);
      if (limit !== undefined) rows = rows.slice(0, limit);
      if (rows.length === 0) throw new UsageError(`--prompts ${promptsSpec}: no prompts to generate`);
      if (!Number.isSafeInteger(base + rows[rows.length - 1]!.row)) throw new UsageError(`--seed ${base} is too large`);
      const unsharded = rows;
      if (shard) rows = rows.filter((r) => inShard(r.row, shard));
      await checkOutDir(outDir);
      await checkLoras(model.loras);

      // ---- the model's configs and one request (a full --batch-size chunk) checked against them: before any weights
      const plan = await planModel(model, {}, { ui, signal });
      const sample = (rows.length ? rows : unsharded).slice(0, perCall);
      const request = {
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
        checked = resolveGenerateOptions({ ...request, prompt: sample.map((r) => r.prompt), seed: sample.map((r) => base + r.row) }, plan.info);
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
        vae_dtype: plan.vaeDtype !== model.dtype ? plan.vaeDtype : undefined,
        scheduler: plan.info.scheduler,
        loras: model.loras.length ? model.loras.map((l) => `${l.source}:${l.scale}`) : undefined,
        negative_prompt: sampling.negativePrompt,
        clip_skip: checked.clipSkip ?? undefined,
        seed: base,
        prompts: promptsSpec,
        shard: shard ? shardLabel(shard) : undefined,
      });
      const previous = await readRunSettings(outDir);
      if (previous && settingsKey(previous) !== settingsKey(settings)) {
        throw new UsageError(`--out-dir ${outDir} holds a run with other settings (${settingsDiff(previous, settings)}); use another folder`);
      }
      if (previous && previous['shard'] !== settings['shard']) {
        const name = (s: unknown) => (s === undefined ? 'all prompts' : `shard ${String(s)}`);
        throw new UsageError(`--out-dir ${outDir} holds ${name(previous['shard'])}, not ${name(settings['shard'])}; use one folder per shard (fewstep report --merge joins them)`);
      }
      // ---- the CLIP model's small files, checked now (not after an hour of generating)
      let clipPlan: ClipPlan | undefined;
      if (score !== undefined) {
        if (previous) checkClipModel(previous, score, false, `--out-dir ${outDir}`, `score it again with fewstep score --run ${outDir} --model ${score} --rescore, or use another folder`);
        try {
          clipPlan = await planClip(score, { signal, onProgress: ui.onProgress });
        } catch (e) {
          throw clipFlagError('--score', score, e);
        }
      }
      if (plan.yoso) ui.note(YOSO_NOTE);
      for (const w of checked.warnings) ui.note(`note: ${w}`);
      if (randomBase) ui.note(`seed ${base} (random base; pass --seed ${base} to repeat)`);
      if (shard) ui.note(`shard ${shardLabel(shard)}: ${rows.length} of ${unsharded.length} prompts`);
      await mkdir(outDir, { recursive: true });
      if (!previous) await writeRunSettings(outDir, settings);

      // ---- what is left to do
      const resultsPath = join(outDir, RESULTS_FILE);
      const torn = await repairResults(resultsPath);
      if (torn) ui.note(`note: removed ${torn} unreadable line${torn === 1 ? '' : 's'} (torn by an interrupted run) from ${resultsPath}`);
      const prev = await readResults(resultsPath);
      const todo: PromptRow[] = [];
      for (const r of rows) {
        const file = imageFileName(r.row, r.prompt, format);
        const done = prev.results.get(file);
        if (done && done.prompt === r.prompt && (await exists(join(outDir, file)))) continue;
        todo.push(r);
      }
      const skipped = rows.length - todo.length;
      if (skipped && todo.length) ui.note(`resuming: ${skipped} of ${rows.length} prompt${rows.length === 1 ? '' : 's'} already done`);
      const report = join(outDir, REPORT_FILE);
      const extra = [`fewstep ${VERSION}`];
      if (todo.length === 0) ui.note(`nothing to do: all ${rows.length} prompts are done`);

      // ---- load once, then the prompts, --batch-size at a time
      const times: number[] = [];
      const t0 = performance.now();
      if (todo.length) {
        const tLoad = performance.now();
        const loaded = await loadModel(plan, { ui, signal });
        ui.note(`loaded ${model.model} in ${((performance.now() - tLoad) / 1000).toFixed(2)} s`);
        let generated = false;
        try {
          for (let k = 0; k < todo.length; k += perCall) {
            const chunk = todo.slice(k, k + perCall);
            const left = eta(times, todo.length - k);
            ui.prefix = `[${skipped + k + 1}${chunk.length > 1 ? `-${skipped + k + chunk.length}` : ''}/${rows.length}${left !== null ? `, ETA ${fmtDuration(left)}` : ''}] `;
            const start = performance.now();
            // One seed per image: image i is the batch-of-one image for seed base + row.
            const seeds = chunk.map((r) => base + r.row);
            const res = await loaded.pipe.generate({ ...request, prompt: chunk.map((r) => r.prompt), seed: seeds, signal });
            const seconds = (performance.now() - start) / 1000 / chunk.length;
            const lines: ResultLine[] = [];
            for (const [i, r] of chunk.entries()) {
              const img = res.images[i]!;
              const file = imageFileName(r.row, r.prompt, format);
              const seed = seeds[i]!;
              const info = generationInfo(model, loaded, sampling.negativePrompt, { prompt: r.prompt, steps: res.plan.steps, guidance: res.plan.guidance, seed, width: img.width, height: img.height, batchIndex: 0, batchSize: 1 });
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
                vae_dtype: loaded.vaeDtype,
                batch_size: chunk.length,
                adapter: loaded.device.adapter.name,
                timings: res.timings,
              });
              times.push(seconds);
            }
            await appendResults(resultsPath, lines);
            const done = skipped + k + chunk.length;
            const after = eta(times, todo.length - k - chunk.length);
            for (const [i, l] of lines.entries()) {
              const n = done - chunk.length + i + 1;
              ui.note(`[${n}/${rows.length}] ${l.file} (${l.seconds.toFixed(2)} s${after !== null && n === done && done < rows.length ? `, ${fmtDuration(after)} left` : ''})`);
            }
          }
          generated = true;
        } finally {
          ui.finish();
          ui.prefix = '';
          loaded.dispose();
          // Scoring writes the report when it is done; stopped or failed here, the report shows what there is.
          if (!clipPlan || !generated) await writeRunReport(outDir, extra);
        }
      }
      const secs = (performance.now() - t0) / 1000;
      if (times.length) ui.note(`${times.length} image${times.length === 1 ? '' : 's'} in ${secs.toFixed(2)} s (${(times.length / secs).toFixed(3)} images/s)${skipped ? `, ${skipped} skipped` : ''}`);

      // ---- then CLIP, with the diffusion model gone: every image of the folder not scored yet
      if (clipPlan) {
        const plan = clipPlan;
        try {
          const r = await scoreRun(outDir, {
            clip: async () => plan,
            clipName: score!,
            batchSize: perCall,
            ui,
            signal,
            where: `--out-dir ${outDir}`,
            rescoreHint: `use fewstep score --run ${outDir} --model ${score} --rescore`,
          });
          if (r.scored) ui.note(`CLIP-scored ${r.scored} image${r.scored === 1 ? '' : 's'} with ${score}`);
        } finally {
          ui.finish();
          await writeRunReport(outDir, extra);
        }
      } else if (todo.length === 0) await writeRunReport(outDir, extra);
      io.stdout(`${report}\n`);
      return 0;
    } finally {
      ui.finish();
    }
  },
};
