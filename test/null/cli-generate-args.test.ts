// `fewstep generate` / `fewstep batch` without a GPU: flag and input validation (exact one-line
// errors, exit codes, nothing written), model file selection against the fake hub, and the pure
// helpers (file names, TSV, results.jsonl, contact sheet, PNG parameters).
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, chmodSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSafetensors } from '@fewstep/tensor';
import { encodePng, parametersText, pngTextChunks, type GenerationInfo } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { imageFileName, slugify } from '../../packages/cli/src/generation/outputs';
import { schedulerName } from '../../packages/cli/src/generation/flags';
import { parseLoraSpec } from '../../packages/cli/src/lora_source';
import { filterRows } from '../../packages/cli/src/commands/batch';
import { parsePromptsTsv } from '../../packages/cli/src/prompts';
import { readResults, repairResults, type ResultLine } from '../../packages/cli/src/eval/results';
import { runReportHtml } from '../../packages/cli/src/eval/report_html';
import { summarize } from '../../packages/cli/src/eval/summary';
import { resolveModel, selectModelFiles } from '@fewstep/weights-tools';
import { isolateHfEnv, startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { buildTinyModel, tinyModelHubFiles } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-gen-null-'));
const sample = new URL('../fixtures/partiprompts-sample.tsv', import.meta.url).pathname;
let restoreEnv: (() => void) | undefined;

beforeAll(() => {
  restoreEnv = isolateHfEnv();
  process.env['HF_HOME'] = join(work, 'hf-home');
  process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
  process.env['HF_HUB_OFFLINE'] = '1'; // nothing here may touch the network
});
afterAll(() => {
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stdoutBytes: async (b) => void out.push(`<${b.length} bytes>`), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

const outDir = join(work, 'out');
mkdirSync(outDir);
const png = join(outDir, 'x.png');

/** Runs generate and checks: exit code, the exact one-line message, and that nothing was written. */
async function expectGenError(args: string[], message: string, code = 2) {
  const before = readdirSync(outDir).sort();
  const r = await cli(['generate', ...args]);
  expect(r.stderr).toBe(`fewstep generate: ${message}\n`);
  expect(r.code).toBe(code);
  expect(r.stdout).toBe('');
  expect(readdirSync(outDir).sort()).toEqual(before);
}

const model = buildTinyModel(join(work, 'model'));
const notPng = join(work, 'not-a-png.png');
writeFileSync(notPng, 'hello, not a png');
const photo = join(work, 'photo.png');
const tiny = join(work, 'tiny.png');
beforeAll(async () => {
  writeFileSync(photo, await encodePng({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(128) }));
  writeFileSync(tiny, await encodePng({ width: 3, height: 3, data: new Uint8Array(3 * 3 * 3) }));
});
const latents = (name: string, shape: number[], key = 'latents') => {
  const p = join(work, name);
  writeFileSync(p, encodeSafetensors({ [key]: { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) } }));
  return p;
};

describe('fewstep generate: flag errors (exit 2, one line, no file)', () => {
  const base = ['--model', model];
  it.each([
    [['--out', png], 'give at least one prompt (an argument or -p; put -- before a prompt that starts with "-")'],
    [['cat'], 'give -o/--out <file> (- for stdout) or --out-dir <dir>'],
    [['cat', '--out', png, '--out-dir', outDir], 'give either --out or --out-dir, not both'],
    // Sizes, steps, guidance, batch, strength: resolveGenerateOptions' rules, checked against the model's configs.
    [['cat', '--out', png, '--width', '100'], '--width must be a multiple of 8 from 8 to 4096, got 100'],
    [['cat', '--out', png, '--height', '0'], '--height must be a multiple of 8 from 8 to 4096, got 0'],
    [['cat', '--out', png, '--width', '-64'], '--width must be a multiple of 8 from 8 to 4096, got -64'],
    [['cat', '--out', png, '-W', '100'], '--width must be a multiple of 8 from 8 to 4096, got 100'],
    [['cat', '--out', png, '-H', '4104'], '--height must be a multiple of 8 from 8 to 4096, got 4104'],
    [['cat', '--out', png, '--steps', '0'], '--steps must be an integer from 1 to 1000, got 0'],
    [['cat', '--out', png, '--steps', '1.5'], '--steps must be an integer, got "1.5"'],
    [['cat', '--out', png, '--guidance', 'high'], '--guidance must be a number, got "high"'],
    [['cat', '--out', png, '--guidance', '-1'], '--guidance must be a finite number ≥ 0, got -1'],
    [['cat', '--out', png, '--cfg-scale', '-1'], '--guidance must be a finite number ≥ 0, got -1'],
    [['cat', '--out', png, '--guidance', '2', '--cfg-scale', '3'], '--cfg-scale given twice (--guidance is the same flag)'],
    [['cat', '--out', png, '--batch', '0'], '--batch must be an integer from 1 to 64, got 0'],
    [['cat', '--out-dir', outDir, '--batch', '65'], '--batch must be an integer from 1 to 64, got 65'],
    [['cat', 'dog', '-p', 'bird', '--out-dir', outDir, '--batch', '30'], '--batch: 3 prompts × --batch 30 = 90 images; at most 64 per call'],
    [['cat', '--out', png, '--clip-skip', '40'], '--clip-skip must be an integer from 0 to 2, got 40'],
    [['cat', '--out', png, '--seed', '-3'], '--seed must be an integer from 0 to 9007199254740991, or -1 for a random seed; got -3'],
    [['cat', '--out', png, '-s', '-2'], '--seed must be an integer from 0 to 9007199254740991, or -1 for a random seed; got -2'],
    [['cat', '--out', png, '--dtype', 'f64'], '--dtype must be one of f32, f16, got "f64"'],
    [['cat', '--out', png, '--vae', 'huge'], '--vae must be one of tiny, large, got "huge"'],
    [['cat', '--out', png, '--resize', 'squash'], '--resize must be one of crop, fit, stretch, got "squash"'],
    [['cat', '--out', png, '--scheduler', 'heun'], '--scheduler must be one of EulerDiscreteScheduler, DDIMScheduler, DDPMScheduler, LCMScheduler, DEISMultistepScheduler (or euler, ddim, ddpm, lcm, deis), got "heun"'],
    [['cat', '--out', png, '--frobnicate'], 'unknown flag --frobnicate (see `fewstep generate --help`)'],
    [['cat', 'dog', '--out', png], '--out takes one image, but 2 would be generated (2 prompts × --batch 1); use --out-dir'],
    [['cat', '-p', 'dog', '-o', png], '--out takes one image, but 2 would be generated (2 prompts × --batch 1); use --out-dir'],
    [['cat', '--batch', '3', '--out', png], '--out takes one image, but 3 would be generated (1 prompt × --batch 3); use --out-dir'],
    [['cat', '--out', join(outDir, 'x.gif')], `--out must name a .png, .jpg, .jpeg or .webp file (or - for a PNG on stdout), got "${join(outDir, 'x.gif')}"`],
    [['cat', '--out', png, '--format', 'webp'], "--format is for --out-dir; the --out file's extension sets its format"],
    [['cat', '--out-dir', outDir, '--format', 'gif'], '--format must be one of png, jpeg, webp, got "gif"'],
    [['cat', '-o', '-', '--json'], '--json prints on stdout, which -o - uses for the PNG'],
    [['cat', '--out', join(work, 'nope', 'x.png')], `--out ${join(work, 'nope', 'x.png')}: folder ${join(work, 'nope')} does not exist`],
    [['cat', '--out', png, '--strength', '0.5'], '--strength needs --init-image'],
    [['cat', '--out', png, '--init-image', photo, '--strength', '1.5'], '--strength must be in (0, 1], got 1.5'],
    [['cat', '--out', png, '--init-image', photo, '--steps', '1', '--strength', '0.5'], '--strength 0.5 with steps 1 runs no denoising step (⌊steps × strength⌋ must be at least 1): raise steps to 2 or strength to 1'],
    [['cat', '--out', png, '--init-image', tiny], `--init-image ${tiny}: is 3×3, smaller than 8×8; pass width and height to scale it up`],
    [['cat', '--out', png, '--init-image', join(work, 'missing.png')], `--init-image ${join(work, 'missing.png')}: file not found`],
    [['cat', '--out', png, '--init-image', notPng], `--init-image ${notPng}: not a PNG, JPEG or WebP image`],
    [['cat', '--out', png, '--init-image', notPng, '--latents', notPng], '--init-image and --latents cannot be used together'],
    [['cat', '--out', png, '--init', 'latent-mean'], '--init latent-mean needs --init-latents <file.safetensors> or --init-images <a.png> <b.jpg>... (reference latents or images for the mean and std)'],
    [['cat', '--out', png, '--init', 'latent-mean', '--init-latents', notPng, '--latents', notPng], '--init latent-mean replaces the initial noise; it cannot be combined with --latents or --init-image'],
    [['cat', '--out', png, '--init-images', photo, photo, '--init-image', photo], '--init latent-mean replaces the initial noise; it cannot be combined with --latents or --init-image'],
    [['cat', '--out', png, '--init', 'noise', '--init-latents', notPng], '--init-latents sets the informative init; it cannot be combined with --init noise'],
    [['cat', '--out', png, '--init-latents', notPng, '--init-images', photo, photo], 'give either --init-latents or --init-images, not both'],
    [['cat', '--out', png, '--init-images', photo], "--init-images needs at least 2 images (their latents' mean and std), got 1"],
    [['cat', '--out', png, '--init-images'], '--init-images needs at least one value'],
    [['cat', '--out', png, '--init-images', photo, notPng], `--init-images ${notPng}: not a PNG, JPEG or WebP image`],
    [['cat', '--out', png, '--init', 'mean'], '--init must be one of noise, latent-mean, got "mean"'],
    [['cat', '--out', png, '--init', 'latent-mean', '--init-latents', latents('one.safetensors', [1, 4, 8, 8])], `--init-latents ${join(work, 'one.safetensors')}: holds 1 latent; the informative init needs at least 2 (their mean and std)`],
    [['cat', '--out', png, '--init-latents', latents('ref.safetensors', [3, 4, 8, 8]), '--width', '128'], '--width 128 does not match --init-latents (8 × 8 = 64)'],
    [['cat', '--out', png, '--latents', join(work, 'none.safetensors')], `--latents ${join(work, 'none.safetensors')}: file not found`],
    [['cat', '--out', png, '--lora', join(work, 'missing.safetensors')], `--lora ${join(work, 'missing.safetensors')}: no such file or folder (nor a hub repo id org/name)`],
    [['cat', '--out-dir', notPng], `--out-dir ${notPng}: is not a folder`],
    [['cat', '--out-dir', join(notPng, 'sub')], `--out-dir ${join(notPng, 'sub')}: ${notPng} is not a folder`],
  ])('%j', async (args, message) => {
    await expectGenError([...base, ...(args as string[])], message as string);
  });

  it('--latents: wrong tensor name, batch and size', async () => {
    const named = latents('named.safetensors', [1, 4, 8, 8], 'noise');
    await expectGenError([...base, 'cat', '--out', png, '--latents', named], `--latents ${named}: no tensor named "latents" (found: noise)`);
    const b2 = latents('b2.safetensors', [2, 4, 8, 8]);
    await expectGenError([...base, 'cat', '--out', png, '--latents', b2], `--latents ${b2}: shape [2, 4, 8, 8] must be [1, 4, height/8, width/8] (1 prompt × --batch 1)`);
    const l8 = latents('l8.safetensors', [1, 4, 8, 8]);
    await expectGenError([...base, 'cat', '--out', png, '--latents', l8, '--width', '128'], '--width 128 does not match --latents (8 × 8 = 64)');
    const r3 = latents('r3.safetensors', [4, 8, 8]);
    await expectGenError([...base, 'cat', '--out', png, '--latents', r3], `--latents ${r3}: shape [4, 8, 8] must be [1, 4, height/8, width/8] (1 prompt × --batch 1)`);
  });

  it('-o - refuses a terminal on stdout', async () => {
    const err: string[] = [];
    const io: CliIO = { stdout: () => {}, stdoutBytes: async () => {}, stdoutIsTTY: true, stderr: (s) => void err.push(s), isTTY: false };
    expect(await main(['generate', 'cat', '--model', model, '-o', '-'], io)).toBe(2);
    expect(err.join('')).toBe('fewstep generate: -o - writes PNG bytes to stdout, which is a terminal; redirect it (> image.png) or pipe it\n');
  });

  it.skipIf(process.getuid?.() === 0)('--out-dir that is not writable', async () => {
    const ro = join(work, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    await expectGenError([...base, 'cat', '--out-dir', ro], `--out-dir ${ro}: folder is not writable`);
  });

  it('missing model: one line, exit 1, nothing written', async () => {
    await expectGenError(['cat', '--out', png, '--model', join(work, 'no-model')], `model folder ${join(work, 'no-model')} not found`, 1);
    await expectGenError(['cat', '--out', png, '--model', './no/such/model'], 'model folder ./no/such/model not found', 1);
    await expectGenError(['cat', '--out', png, '--model', notPng], `${notPng} is a file; --model takes a diffusers model folder or a Hugging Face repo id (org/name)`, 1);
    const hubCache = process.env['HF_HUB_CACHE'];
    await expectGenError(['cat', '--out', png, '--model', 'acme/not-cached'], `Offline mode (HF_HUB_OFFLINE=1): acme/not-cached@main is not in the cache at ${join(hubCache!, 'models--acme--not-cached')} (run once online to download)`, 1);
    const partial = join(work, 'partial-model');
    mkdirSync(partial);
    writeFileSync(join(partial, 'model_index.json'), '{}');
    await expectGenError(['cat', '--out', png, '--model', partial], `${partial} has no scheduler/ folder`, 1);
  });

  it('prompts may start with "-" after --', async () => {
    // Still a usage error (no --out) — but the prompt is accepted as a positional.
    const r = await cli(['generate', '--model', model, '--', '-a strange prompt']);
    expect(r.stderr).toBe('fewstep generate: give -o/--out <file> (- for stdout) or --out-dir <dir>\n');
  });

  it('--help lists the flags', async () => {
    const r = await cli(['generate', '--help']);
    expect(r.code).toBe(0);
    for (const f of ['--out ', '--out-dir', '--seed', '--latents', '--init-image', '--lora', '--negative-prompt', '--json', '--quiet']) expect(r.stdout).toContain(f);
    for (const f of ['-p, --prompt', '-n, --negative-prompt', '-s, --seed', '-W, --width', '-H, --height', '--guidance, --cfg-scale', '--clip-skip', '--init-images <image>...', '--format', '-o, --out']) expect(r.stdout).toContain(f);
    expect(r.stdout).toContain('--resize <crop|fit|stretch>');
    expect(r.stdout).toMatch(/--resize <crop\|fit\|stretch>\s+How init, control and reference images of another size are fit: crop = .*\(default: crop\)/);
  });
});

describe('fewstep batch: flag errors', () => {
  const bdir = join(work, 'batch-out');
  it.each([
    [['--out-dir', bdir], '--prompts <file> is required'],
    [['--prompts', sample], '--out-dir <dir> is required'],
    [['--prompts', join(work, 'no.tsv'), '--out-dir', bdir], `--prompts ${join(work, 'no.tsv')}: file not found`],
    [['--prompts', sample, '--out-dir', bdir, '--limit', '0'], '--limit must be at least 1, got 0'],
    [['--prompts', sample, '--out-dir', bdir, '--category', 'Robots'], '--category "Robots" matches no prompt (categories: Abstract, Animals, Artifacts, Arts, Food & Beverage, Illustrations, Indoor Scenes, People, Vehicles)'],
    [['--prompts', sample, '--out-dir', bdir, 'stray'], 'unexpected argument "stray" (prompts come from --prompts <file>)'],
    [['--prompts', sample, '--out-dir', bdir, '--model', model, '--steps', '0'], '--steps must be an integer from 1 to 1000, got 0'],
    [['--prompts', sample, '--out-dir', bdir, '--model', model, '--width', '65'], '--width must be a multiple of 8 from 8 to 4096, got 65'],
    [['--prompts', join(work, 'prompts.xlsx'), '--out-dir', bdir], `--prompts ${join(work, 'prompts.xlsx')}: unknown prompt-list format ".xlsx"; use .tsv, .tab, .csv, .parquet, .pq, .jsonl, .ndjson, .txt`],
  ])('%j', async (args, message) => {
    const r = await cli(['batch', ...(args as string[])]);
    expect(r.stderr).toBe(`fewstep batch: ${message}\n`);
    expect(r.code).toBe(2);
    expect(existsSync(bdir)).toBe(false);
  });

  it('a TSV without a Prompt column', async () => {
    const bad = join(work, 'bad.tsv');
    writeFileSync(bad, 'Text\tCategory\nhello\tX\n');
    const r = await cli(['batch', '--prompts', bad, '--out-dir', bdir]);
    expect(r.stderr).toBe(`fewstep batch: --prompts ${bad}: no "Prompt" column (header columns: "Text", "Category"); expected Prompt and optionally Category, Challenge, Note\n`);
    expect(r.code).toBe(2);
  });
});

describe('helpers', () => {
  it('file names sort in batch order and are safe', () => {
    expect(imageFileName(0, 'A photo of a cat!')).toBe('0000-a-photo-of-a-cat.png');
    expect(imageFileName(12, 'Salvador Dalí')).toBe('0012-salvador-dali.png');
    expect(imageFileName(3, '日本語')).toBe('0003-image.png');
    expect(imageFileName(1, '../../etc/passwd')).toBe('0001-etc-passwd.png');
    expect(slugify('x'.repeat(100)).length).toBe(48);
    const names = Array.from({ length: 12 }, (_, i) => imageFileName(i, 'p'));
    expect([...names].sort()).toEqual(names);
  });

  it('--lora specs and scheduler aliases', () => {
    expect(parseLoraSpec('a/b.safetensors:0.8')).toEqual({ source: 'a/b.safetensors', scale: 0.8 });
    expect(parseLoraSpec('org/repo')).toEqual({ source: 'org/repo', scale: 1 });
    expect(parseLoraSpec('C:\\x.safetensors')).toEqual({ source: 'C:\\x.safetensors', scale: 1 });
    expect(schedulerName('lcm')).toBe('LCMScheduler');
    expect(schedulerName('ddimscheduler')).toBe('DDIMScheduler');
  });

  it('PartiPrompts TSV: columns, literal quotes, filters', () => {
    const rows = parsePromptsTsv(readFileSync(sample, 'utf8'), sample);
    expect(rows.length).toBe(20);
    expect(rows[0]).toEqual({ row: 0, prompt: 'bond', category: 'Abstract', challenge: 'Basic', note: 'Biology-inspired concepts with multiple meanings' });
    expect(rows[11]!.prompt).toBe('Salvador Dalí');
    expect(rows[13]!.prompt.startsWith('"G I G G L E" painted')).toBe(true);
    expect(rows[15]!.prompt).toBe('a cartoon of a dog saying "I see what you did there"');
    const food = filterRows(rows, 'category', ['food & beverage']);
    expect(food.map((r) => r.row)).toEqual([6, 7, 8]);
    expect(filterRows(food, 'challenge', ['Basic']).length).toBe(3);
    // Quoted fields, CRLF, a header in another order, a blank line: row numbers count data lines.
    const t = parsePromptsTsv('Category\tPrompt\r\nX\t"say ""hi"""\r\n\r\nY\tplain\r\n', 't');
    expect(t).toEqual([
      { row: 0, prompt: 'say "hi"', category: 'X', challenge: '', note: '' },
      { row: 1, prompt: 'plain', category: 'Y', challenge: '', note: '' },
    ]);
  });

  it('results.jsonl: last line per file wins, broken lines are skipped, then repaired once', async () => {
    const p = join(work, 'results.jsonl');
    const line = (file: string, seed: number) => JSON.stringify({ prompt: 'p', category: 'c', challenge: 'x', row: 0, seed, file, seconds: 1 });
    writeFileSync(p, `${line('a.png', 1)}\n{"prompt": "trunc\n${line('a.png', 2)}\n${line('b.png', 3)}`);
    const r = await readResults(p);
    expect(r.bad).toBe(1);
    expect([...r.results.keys()]).toEqual(['a.png', 'b.png']);
    expect(r.results.get('a.png')!.seed).toBe(2);
    // A torn line (a kill mid-append) is removed once, atomically; the file then ends with a newline.
    expect(await repairResults(p)).toBe(1);
    expect(readFileSync(p, 'utf8')).toBe(`${line('a.png', 1)}\n${line('a.png', 2)}\n${line('b.png', 3)}\n`);
    expect(await repairResults(p)).toBe(0);
    expect((await readResults(p)).bad).toBe(0);
    expect((await readResults(join(work, 'none.jsonl'))).results.size).toBe(0);
  });

  it('report.html contact sheet: grouped by category, escaped, relative links', () => {
    const rs: ResultLine[] = [
      { prompt: 'a <b>bold</b> & "quoted" prompt', category: 'Food & Beverage', challenge: 'Writing & Symbols', row: 2, seed: 2, file: '0002-a-b.png', seconds: 1.5 },
      { prompt: 'bond', category: 'Abstract', challenge: 'Basic', row: 0, seed: 0, file: '0000-bond.png', seconds: 1 },
      { prompt: "it's", category: 'Abstract', challenge: 'Basic', row: 1, seed: 1, file: '0001-it-s.png', seconds: 1 },
    ];
    const html = runReportHtml(summarize(rs, null), rs, 'T <x>', 'sub');
    expect(html).not.toContain('<b>bold');
    expect(html).toContain('a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; prompt');
    expect(html).toContain('it&#39;s');
    expect(html).toContain('<title>T &lt;x&gt;</title>');
    expect(html).toContain('<img src="0000-bond.png"');
    expect(html).not.toMatch(/src="\//);
    expect(html.indexOf('id="abstract"')).toBeLessThan(html.indexOf('id="food-beverage"'));
    expect(html.indexOf('0000-bond.png')).toBeLessThan(html.indexOf('0001-it-s.png'));
    expect(html).toContain('Food &amp; Beverage <small>(1)</small>');
  });

  it('PNG parameters text (A1111 format) and JSON chunk', () => {
    const g: GenerationInfo = {
      prompt: 'a cat\non a mat',
      negativePrompt: '',
      steps: 1,
      sampler: 'EulerDiscreteScheduler',
      guidance: 0,
      seed: 42,
      width: 512,
      height: 512,
      model: 'IDKiro/sdxs-512-0.9',
      dtype: 'f32',
      batchIndex: 0,
      batchSize: 1,
      version: '0.1.0',
    };
    expect(parametersText(g)).toBe('a cat on a mat\nSteps: 1, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 42, Size: 512x512, Model: IDKiro/sdxs-512-0.9, Version: fewstep 0.1.0');
    expect(parametersText({ ...g, negativePrompt: 'blurry', guidance: 1.5 })).toBe(
      'a cat on a mat\nNegative prompt: blurry\nSteps: 1, Sampler: EulerDiscreteScheduler, CFG scale: 1.5, Seed: 42, Size: 512x512, Model: IDKiro/sdxs-512-0.9, Version: fewstep 0.1.0',
    );
    const chunks = pngTextChunks(g);
    expect(Object.keys(chunks)).toEqual(['parameters', 'fewstep']);
    expect(JSON.parse(chunks.fewstep!)).toMatchObject({ prompt: 'a cat\non a mat', seed: 42, steps: 1, model: 'IDKiro/sdxs-512-0.9' });
  });
});

describe('model files: only what the pipeline needs', () => {
  const files = tinyModelHubFiles().map((f) => f.path);
  it('picks safetensors, skips pickles, README and vae_large unless asked', () => {
    const sel = selectModelFiles(files, { dtype: 'f32', vae: undefined, name: 'm' });
    expect(sel.files).toEqual([
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/config.json',
      'text_encoder/model.safetensors',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'unet/config.json',
      'unet/diffusion_pytorch_model.safetensors',
      'vae/config.json',
      'vae/diffusion_pytorch_model.safetensors',
    ]);
    const large = selectModelFiles(files, { dtype: 'f32', vae: 'large', name: 'm' });
    expect(large.files.filter((f) => f.startsWith('vae'))).toEqual(['vae_large/config.json', 'vae_large/diffusion_pytorch_model.safetensors']);
  });

  it('PyTorch .bin weights only for a component without safetensors', () => {
    // unet/ has both: safetensors. Without its safetensors: the .bin (read by the whitelist unpickler).
    const sel = selectModelFiles(files.filter((f) => !/^unet\/.*safetensors$/.test(f)), { dtype: 'f32', vae: undefined, name: 'm' });
    expect(sel.weights).toEqual({
      text_encoder: ['text_encoder/model.safetensors'],
      unet: ['unet/diffusion_pytorch_model.bin'],
      vae: ['vae/diffusion_pytorch_model.safetensors'],
    });
    expect(sel.files).toContain('unet/diffusion_pytorch_model.bin');
    expect(sel.files).not.toContain('text_encoder/pytorch_model.bin');
    // Sharded transformers .bin and an fp16 .bin variant, picked like safetensors ones.
    const te = ['text_encoder/pytorch_model-00001-of-00002.bin', 'text_encoder/pytorch_model-00002-of-00002.bin', 'text_encoder/pytorch_model.bin.index.json'];
    const binOnly = [...files.filter((f) => !/^(text_encoder|unet)\/.*(safetensors|bin)$/.test(f)), ...te, 'unet/diffusion_pytorch_model.bin', 'unet/diffusion_pytorch_model.fp16.bin'];
    const f16 = selectModelFiles(binOnly, { dtype: 'f16', vae: undefined, name: 'm' });
    expect(f16.weights['text_encoder']).toEqual(te.slice(0, 2));
    expect(f16.weights['unet']).toEqual(['unet/diffusion_pytorch_model.fp16.bin']);
    expect(selectModelFiles(binOnly, { dtype: 'f32', vae: undefined, name: 'm' }).weights['unet']).toEqual(['unet/diffusion_pytorch_model.bin']);
  });

  it('fp16 variants with --dtype f16 when present, else the plain files', () => {
    const withFp16 = [...files, 'unet/diffusion_pytorch_model.fp16.safetensors', 'text_encoder/model.fp16-00001-of-00002.safetensors', 'text_encoder/model.fp16-00002-of-00002.safetensors'];
    const f16 = selectModelFiles(withFp16, { dtype: 'f16', vae: undefined, name: 'm' });
    expect(f16.weights).toEqual({
      text_encoder: ['text_encoder/model.fp16-00001-of-00002.safetensors', 'text_encoder/model.fp16-00002-of-00002.safetensors'],
      unet: ['unet/diffusion_pytorch_model.fp16.safetensors'],
      vae: ['vae/diffusion_pytorch_model.safetensors'],
    });
    const f32 = selectModelFiles(withFp16, { dtype: 'f32', vae: undefined, name: 'm' });
    expect(f32.weights['unet']).toEqual(['unet/diffusion_pytorch_model.safetensors']);
    // Only fp16 weights: used for f32 too (upcast on load).
    const only16 = withFp16.filter((f) => f !== 'unet/diffusion_pytorch_model.safetensors');
    expect(selectModelFiles(only16, { dtype: 'f32', vae: undefined, name: 'm' }).weights['unet']).toEqual(['unet/diffusion_pytorch_model.fp16.safetensors']);
  });

  it('one-line errors for what is missing', () => {
    const without = (re: RegExp) => files.filter((f) => !re.test(f));
    expect(() => selectModelFiles(without(/^model_index/), { dtype: 'f32', vae: undefined, name: 'm' })).toThrow('m is not a diffusers pipeline (no model_index.json)');
    const weird = [...without(/^unet\/.*(safetensors|bin)$/), 'unet/unet_weights.ckpt'];
    expect(() => selectModelFiles(weird, { dtype: 'f32', vae: undefined, name: 'm' })).toThrow(
      'm: unet/ has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin); found unet_weights.ckpt, which are not the names diffusers/transformers load (`fewstep convert` turns one into safetensors)',
    );
    expect(() => selectModelFiles(without(/^unet\/.*(safetensors|bin)$/), { dtype: 'f32', vae: undefined, name: 'm' })).toThrow(
      'm: unet/ has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin)',
    );
    expect(() => selectModelFiles(without(/^tokenizer\/merges/), { dtype: 'f32', vae: undefined, name: 'm' })).toThrow('m has no tokenizer/merges.txt');
  });
});

describe('model files from the fake hub', () => {
  let hub: FakeHub;
  beforeAll(async () => {
    hub = await startFakeHub([{ id: 'org/tiny-sdxs', commit: 'c'.repeat(40), files: tinyModelHubFiles() }]);
  });
  afterAll(() => hub.close());

  it('downloads only the selected files, then works offline from the cache', async () => {
    const cacheDir = join(work, 'sel-cache');
    const env = { ...process.env };
    process.env['HF_ENDPOINT'] = hub.url;
    delete process.env['HF_HUB_OFFLINE'];
    try {
      const m = await resolveModel('org/tiny-sdxs', { dtype: 'f32', vae: undefined, cacheDir });
      const got = hub.requests.filter((r) => r.method === 'GET' && r.server === 'hub' && r.path.includes('/resolve/')).map((r) => r.path.split('/resolve/')[1]!.replace(/^[^/]+\//, ''));
      const lfs = hub.requests.filter((r) => r.server === 'cdn').length;
      expect(got.sort()).toEqual([
        'model_index.json',
        'scheduler/scheduler_config.json',
        'text_encoder/config.json',
        'tokenizer/merges.txt',
        'tokenizer/special_tokens_map.json',
        'tokenizer/tokenizer_config.json',
        'tokenizer/vocab.json',
        'unet/config.json',
        'vae/config.json',
      ]);
      expect(lfs).toBe(3); // the three safetensors, no .bin, no vae_large
      expect(m.fromHub).toBe(true);
      expect(existsSync(join(m.dir, 'unet', 'diffusion_pytorch_model.safetensors'))).toBe(true);
      expect(existsSync(join(m.dir, 'unet', 'diffusion_pytorch_model.bin'))).toBe(false);
      expect(existsSync(join(m.dir, 'README.md'))).toBe(false);

      process.env['HF_HUB_OFFLINE'] = '1';
      hub.requests = [];
      const again = await resolveModel('org/tiny-sdxs', { dtype: 'f32', vae: undefined, cacheDir });
      expect(again.dir).toBe(m.dir);
      expect(hub.requests.length).toBe(0);
      // vae_large was never downloaded: offline, --vae large names what is missing.
      await expect(resolveModel('org/tiny-sdxs', { dtype: 'f32', vae: 'large', cacheDir })).rejects.toThrow(
        'Offline mode (HF_HUB_OFFLINE=1): 2 files of org/tiny-sdxs@main not in the cache: vae_large/config.json, vae_large/diffusion_pytorch_model.safetensors (run once online to download)',
      );
    } finally {
      for (const k of ['HF_ENDPOINT', 'HF_HUB_OFFLINE']) {
        if (env[k] === undefined) delete process.env[k];
        else process.env[k] = env[k];
      }
    }
  });
});

describe('fail before loading: a request that cannot work downloads no weights', () => {
  let hub: FakeHub;
  beforeAll(async () => {
    hub = await startFakeHub([{ id: 'org/tiny-sdxs', commit: 'c'.repeat(40), files: tinyModelHubFiles() }]);
  });
  afterAll(() => hub.close());

  it.each([
    [['--init-image', () => photo, '--steps', '1', '--strength', '0.5'], '--strength 0.5 with steps 1 runs no denoising step (⌊steps × strength⌋ must be at least 1): raise steps to 2 or strength to 1'],
    [['--clip-skip', '5'], '--clip-skip must be an integer from 0 to 2, got 5'],
    [['-W', '516'], '--width must be a multiple of 8 from 8 to 4096, got 516'],
  ] as [(string | (() => string))[], string][])('%#: only the config files are fetched from the hub', async (args, message) => {
    const env = { ...process.env };
    process.env['HF_ENDPOINT'] = hub.url;
    process.env['HF_HUB_CACHE'] = mkdtempSync(join(work, 'early-cache-'));
    delete process.env['HF_HUB_OFFLINE'];
    hub.requests = [];
    try {
      const r = await cli(['generate', 'x', '--model', 'org/tiny-sdxs', '--out', png, ...args.map((a) => (typeof a === 'function' ? a() : a))]);
      expect(r.code).toBe(2);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines.pop()).toBe(`fewstep generate: ${message}`);
      for (const l of lines) expect(l).toMatch(/^downloaded [\w/]+\.json \(/);
      expect(existsSync(png)).toBe(false);
      const files = hub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.split('/resolve/')[1]!.replace(/^[^/]+\//, ''));
      expect([...new Set(files)].sort()).toEqual(['model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json', 'unet/config.json', 'vae/config.json']);
      expect(hub.requests.filter((r) => r.server === 'cdn')).toEqual([]); // no LFS (weight) transfer at all
    } finally {
      for (const k of ['HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HUB_OFFLINE']) {
        if (env[k] === undefined) delete process.env[k];
        else process.env[k] = env[k];
      }
    }
  });
});

describe('Pipeline.fromPretrained without a resolver', () => {
  it('explains how to load a hub id', async () => {
    const { StableDiffusionPipeline } = await import('@fewstep/models');
    const { nodeFiles } = await import('@fewstep/tensor/node');
    await expect(StableDiffusionPipeline.fromPretrained('org/not-a-folder', { device: {} as never, io: nodeFiles })).rejects.toThrow(
      'org/not-a-folder: not a local diffusers folder (no unet/); to load a hub id pass `resolve` (Node: hubResolver() from @fewstep/weights-tools)',
    );
  });
});
