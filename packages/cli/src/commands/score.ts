// fewstep score: CLIP score (torchmetrics' CLIPScore, @fewstep/models' CLIPScorer) of images against prompts, or
// of every unscored image of a run folder (--run; the code path of `fewstep batch --score`, resumable).
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RGBImage } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { readPromptsFlag } from '../prompts/flag.js';
import { DEFAULT_CLIP_MODEL, clipFlagError, loadClip, planClip } from '../eval/clip_model.js';
import { REPORT_FILE, readRunSettings } from '../eval/results.js';
import { writeRunReport } from '../eval/run_folder.js';
import { DEFAULT_CLIP_BATCH, scoreRun } from '../eval/score_run.js';
import { readImageFlag } from '../generation/image_inputs.js';
import { QUIET_FLAG } from '../generation/flags.js';
import { createProgressUI, eta, fmtDuration } from '../generation/progress.js';
import { VERSION } from '../version.js';

/** The prompt of each image: one --prompt for all, one per image, or --prompts line i for image i. */
async function pairPrompts(images: readonly string[], flags: Record<string, unknown>, opts: Parameters<typeof readPromptsFlag>[1]): Promise<string[]> {
  const given = (flags['prompt'] as string[] | undefined) ?? [];
  const file = flags['prompts'] as string | undefined;
  if (given.length && file !== undefined) throw new UsageError('give either --prompt or --prompts, not both');
  if (file !== undefined) {
    const { rows } = await readPromptsFlag(file, opts);
    if (rows.length !== images.length) {
      throw new UsageError(`--prompts ${file} has ${rows.length} prompt${rows.length === 1 ? '' : 's'} for ${images.length} image${images.length === 1 ? '' : 's'}; prompt i pairs with image i, so give one per image`);
    }
    return rows.map((r) => r.prompt);
  }
  if (given.length === 0) throw new UsageError('--prompt <text> (or --prompts <file>) is required: what the images should show');
  if (given.length === 1) return images.map(() => given[0]!);
  if (given.length !== images.length) throw new UsageError(`${given.length} --prompt values for ${images.length} images; give one for all, or one per image`);
  return given;
}

export const score: Command = {
  name: 'score',
  usage:
    'fewstep score <image>... (--prompt <text>... | --prompts <file>) [--model <id|dir>] [--json] [--batch-size N] [--quiet]\n' +
    '       fewstep score --run <dir> [--model <id|dir>] [--rescore] [--batch-size N] [--quiet]',
  description:
    'CLIP score of each image against its prompt: 100 · max(cos(image embedding, text embedding), 0), as torchmetrics\'\n' +
    'CLIPScore computes it (prompts cut to 77 tokens as it does). The model is a transformers CLIPModel with its tokenizer\n' +
    'files and preprocessor_config.json: a hub repo (default ' + DEFAULT_CLIP_MODEL + '; only config.json,\n' +
    'model.safetensors, the tokenizer files and preprocessor_config.json are downloaded) or a local folder.\n' +
    'Images (PNG, JPEG, WebP) pair with one --prompt for all, one --prompt each, or the lines of --prompts <file> (any\n' +
    'prompt-list format; line i with image i). Prints one line per image, "<score><TAB><image>", in input order; --json\n' +
    'prints one JSON array of { "image", "prompt", "clip_score" }.\n' +
    '--run <dir> scores every image of a `fewstep batch` run folder that has no score yet (each results.jsonl line gains\n' +
    'clip_score; run.json records the model) and rewrites its summary.json and report.html. It resumes: a second run\n' +
    'has nothing to do. --model defaults to the run\'s recorded CLIP model; another one needs --rescore.\n' +
    'Ctrl-C stops between batches (exit 130); scores written so far stay.',
  flags: {
    prompt: { type: 'string', short: 'p', multiple: true, arg: 'text', help: 'The prompt (one for every image, or one per image in order)' },
    prompts: { type: 'string', arg: 'file', help: 'Prompt list paired line by line with the images (.txt, .tsv, .csv, .jsonl, .parquet)' },
    run: { type: 'string', arg: 'dir', help: 'Score the unscored images of a fewstep batch run folder' },
    model: { type: 'string', arg: 'id|dir', help: `CLIPModel hub repo (org/name[@revision]) or folder (default: the run's, else ${DEFAULT_CLIP_MODEL})` },
    rescore: { type: 'boolean', help: 'With --run: score the run again with another CLIP model than the one it was scored with' },
    'batch-size': { type: 'int', arg: 'N', default: DEFAULT_CLIP_BATCH, help: 'Images per CLIP forward pass' },
    json: { type: 'boolean', help: 'Print one JSON array of { image, prompt, clip_score }' },
    ...QUIET_FLAG,
  },
  async run({ flags, positionals }, io) {
    const { signal } = io;
    const runDir = flags['run'] as string | undefined;
    const batchSize = flags['batch-size'] as number;
    if (batchSize < 1 || batchSize > 1024) throw new UsageError(`--batch-size must be from 1 to 1024, got ${batchSize}`);
    const quiet = Boolean(flags['quiet']);
    let modelSpec = flags['model'] as string | undefined;
    if (modelSpec === '') throw new UsageError('--model must not be empty');

    if (runDir !== undefined) {
      if (positionals.length) throw new UsageError(`--run scores the images of the run folder; unexpected argument "${positionals[0]}"`);
      for (const f of ['prompt', 'prompts', 'json'] as const) if (flags[f] !== undefined && flags[f] !== false) throw new UsageError(`--${f} does not go with --run (the run's prompts are used)`);
      if (!(await stat(runDir).catch(() => undefined))?.isDirectory()) throw new UsageError(`--run ${runDir}: folder not found`);
      const settings = await readRunSettings(runDir);
      if (!settings) throw new UsageError(`--run ${runDir}: not a run folder (no run.json; make one with fewstep batch)`);
      const rescore = Boolean(flags['rescore']);
      if (rescore && modelSpec === undefined) throw new UsageError('--rescore needs --model: the CLIP model to score the run with');
      const clipName = modelSpec ?? settings.clip_model ?? DEFAULT_CLIP_MODEL;
      const ui = createProgressUI(io, { quiet, stageLines: false });
      try {
        const r = await scoreRun(runDir, {
          clip: async () => {
            try {
              return await planClip(clipName, { signal, onProgress: ui.onProgress });
            } catch (e) {
              throw clipFlagError('--model', clipName, e);
            }
          },
          clipName,
          rescore,
          batchSize,
          ui,
          signal,
          where: `--run ${runDir}`,
          rescoreHint: `pass --rescore to score it again with ${clipName}`,
        });
        ui.finish();
        ui.note(r.scored ? `CLIP-scored ${r.scored} image${r.scored === 1 ? '' : 's'} with ${clipName}${r.skipped ? ` (${r.skipped} already scored)` : ''}` : `nothing to do: all ${r.images} images are scored with ${clipName}`);
      } finally {
        ui.finish();
        // The report shows what is scored, also after Ctrl-C.
        await writeRunReport(runDir, [`fewstep ${VERSION}`]);
      }
      io.stdout(`${join(runDir, REPORT_FILE)}\n`);
      return 0;
    }

    if (flags['rescore']) throw new UsageError('--rescore goes with --run');
    if (positionals.length === 0) throw new UsageError('no images given (fewstep score <image>... --prompt <text>, or --run <dir>)');
    for (const p of positionals) {
      const st = await stat(p).catch(() => undefined);
      if (!st) throw new UsageError(`${p}: file not found`);
      if (st.isDirectory()) throw new UsageError(`${p} is a folder (for a run folder use --run ${p})`);
    }
    modelSpec ??= DEFAULT_CLIP_MODEL;
    const ui = createProgressUI(io, { quiet, stageLines: false });
    try {
      const prompts = await pairPrompts(positionals, flags, { signal, onProgress: ui.onProgress, note: ui.note });
      let plan;
      try {
        plan = await planClip(modelSpec, { signal, onProgress: ui.onProgress });
      } catch (e) {
        throw clipFlagError('--model', modelSpec, e);
      }
      const tLoad = performance.now();
      ui.onProgress({ type: 'load', status: 'start', component: 'clip', ms: 0 });
      const clip = await loadClip(plan, { signal, onProgress: ui.onProgress, batchSize });
      ui.onProgress({ type: 'load', status: 'end', component: 'clip', ms: performance.now() - tLoad });
      const scores: number[] = [];
      try {
        const times: number[] = [];
        for (let k = 0; k < positionals.length; k += batchSize) {
          signal?.throwIfAborted();
          const paths = positionals.slice(k, k + batchSize);
          const left = eta(times, positionals.length - k);
          ui.prefix = `[${k + 1}/${positionals.length}${left !== null ? `, ETA ${fmtDuration(left)}` : ''}] `;
          const end = ui.task('CLIP score');
          const start = performance.now();
          const images: RGBImage[] = [];
          for (const p of paths) images.push(await readImageFlag(p, 'image'));
          scores.push(...(await clip.scorer.score(images, prompts.slice(k, k + paths.length))));
          end();
          const secs = (performance.now() - start) / 1000 / paths.length;
          for (let i = 0; i < paths.length; i++) times.push(secs);
        }
      } finally {
        ui.finish();
        clip.dispose();
      }
      if (flags['json']) io.stdout(JSON.stringify(positionals.map((image, i) => ({ image, prompt: prompts[i]!, clip_score: scores[i]! }))) + '\n');
      else io.stdout(positionals.map((image, i) => `${scores[i]!.toFixed(4)}\t${image}\n`).join(''));
      return 0;
    } finally {
      ui.finish();
    }
  },
};
