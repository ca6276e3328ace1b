// `fewstep batch` (--batch-size, --shard, --score, hub datasets), `fewstep score` and `fewstep report` without a
// GPU: flag and input errors (one line naming the flag or file, exit 2; nothing written, no weights fetched), the
// optional flag value of --score, the CLIP repo's file choice, and report/merge over hand-made run folders.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { parseArgs } from '../../packages/cli/src/args';
import { batch } from '../../packages/cli/src/commands/batch';
import { clipRepoFiles } from '../../packages/cli/src/eval/clip_model';
import type { ResultLine, RunSettings } from '../../packages/cli/src/eval/results';
import { isolateHfEnv, startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-eval-args-'));
const sample = new URL('../fixtures/partiprompts-sample.tsv', import.meta.url).pathname;
const tok = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;
const golden = new URL('../fixtures/golden/clip_score/', import.meta.url).pathname;
const model = buildTinyModel(join(work, 'model'));
let restoreEnv: (() => void) | undefined;
let hub: FakeHub;

beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  process.env['HF_HOME'] = join(work, 'hf-home');
  process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
  hub = await startFakeHub([
    // a model repo that is not a CLIPModel (no image processor)
    { id: 'org/text-only', commit: 'a'.repeat(40), files: [{ path: 'config.json', content: readFileSync(join(golden, 'config.json')) }, { path: 'vocab.json', content: Buffer.from('{}') }, { path: 'merges.txt', content: Buffer.from('') }, { path: 'model.safetensors', content: Buffer.alloc(64), lfs: true }] },
    { id: 'org/no-data', type: 'dataset', commit: 'b'.repeat(40), files: [{ path: 'README.md', content: Buffer.from('#\n') }, { path: 'load.py', content: Buffer.from('\n') }] },
  ]);
  process.env['HF_ENDPOINT'] = hub.url;
});
afterAll(async () => {
  await hub?.close();
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

/** A CLIPModel folder (the tiny golden model + tokenizer), without preprocessor_config.json unless asked. */
function clipFolder(name: string, preprocessor: boolean): string {
  const dir = join(work, name);
  mkdirSync(dir);
  for (const f of ['config.json', 'model.safetensors']) symlinkSync(join(golden, f), join(dir, f));
  for (const f of ['vocab.json', 'merges.txt']) symlinkSync(join(tok, f), join(dir, f));
  if (preprocessor) writeFileSync(join(dir, 'preprocessor_config.json'), '{"size": 224, "crop_size": 224}');
  return dir;
}
const noPre = clipFolder('clip-no-pre', false);

describe('--score takes an optional value', () => {
  it('alone, inline, as the next argument, and before another flag', () => {
    const p = (argv: string[]) => parseArgs('batch', argv, batch.flags).flags['score'];
    expect(p(['--score'])).toBe('openai/clip-vit-large-patch14');
    expect(p(['--score', '--limit', '2'])).toBe('openai/clip-vit-large-patch14');
    expect(p(['--score', 'org/clip', '--limit', '2'])).toBe('org/clip');
    expect(p(['--score=./clip'])).toBe('./clip');
    expect(p(['--limit', '2'])).toBeUndefined();
  });
});

describe('fewstep batch: the new flags', () => {
  const bdir = join(work, 'batch-out');
  const base = ['batch', '--prompts', sample, '--out-dir', bdir, '--model', model];
  it.each([
    [['--batch-size', '0'], '--batch-size must be from 1 to 64, got 0'],
    [['--batch-size', '65'], '--batch-size must be from 1 to 64, got 65'],
    [['--shard', '3/2'], '--shard must be i/n with 1 ≤ i ≤ n (e.g. 2/8), got "3/2"'],
    [['--shard', '0/2'], '--shard must be i/n with 1 ≤ i ≤ n (e.g. 2/8), got "0/2"'],
    [['--shard', 'half'], '--shard must be i/n with 1 ≤ i ≤ n (e.g. 2/8), got "half"'],
    [["--score", join(work, "nope")], `--score ${join(work, "nope")}: folder not found`],
    [['--score', noPre], `--score ${noPre}: not a CLIPModel folder with its tokenizer and image processor (missing preprocessor_config.json)`],
    [['--score', 'org/text-only'], '--score org/text-only: not a CLIPModel repo with its tokenizer and image processor (missing preprocessor_config.json)'],
    [['--score', 'org/missing-clip'], `--score org/missing-clip: Repository org/missing-clip not found on ${'HUB'}`],
  ])('%j', async (args, message) => {
    const r = await cli([...base, ...(args as string[])]);
    expect(r.stderr).toBe(`fewstep batch: ${message.replace('HUB', hub.url)}\n`);
    expect(r.code).toBe(2);
    expect(existsSync(bdir)).toBe(false);
    // No weights were fetched for a CLIP model that cannot work.
    expect(hub.requests.some((q) => q.path.endsWith('model.safetensors'))).toBe(false);
  });

  it('--prompts: a hub dataset that does not exist or holds no data file', async () => {
    let r = await cli(['batch', '--prompts', 'org/absent', '--out-dir', bdir]);
    expect(r.stderr).toBe(`fewstep batch: --prompts org/absent: Repository org/absent not found on ${hub.url}\n`);
    expect(r.code).toBe(2);
    r = await cli(['batch', '--prompts', 'org/no-data', '--out-dir', bdir]);
    expect(r.stderr).toBe('fewstep batch: --prompts org/no-data@main: no prompt data file in the dataset (README.md, load.py) and no refs/convert/parquet revision with one; expected parquet, TSV, CSV or JSONL files\n');
    expect(r.code).toBe(2);
    // offline and never downloaded: exit 1 (the cache, not the input)
    process.env['HF_HUB_OFFLINE'] = '1';
    try {
      r = await cli(['batch', '--prompts', 'org/never', '--out-dir', bdir]);
      expect(r.stderr).toMatch(/^fewstep batch: --prompts org\/never: Offline mode \(HF_HUB_OFFLINE=1\): org\/never@main is not in the cache at .* \(run once online to download\)\n$/);
      expect(r.code).toBe(1);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }
    expect(existsSync(bdir)).toBe(false);
  });

  it('a shard with no prompts writes an empty run (its report) and exits 0', async () => {
    const dir = join(work, 'empty-shard');
    const r = await cli([...base.slice(0, 3), '--out-dir', dir, '--model', model, '--limit', '1', '--shard', '2/2', '--width', '64', '--height', '64']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('shard 2/2: 0 of 1 prompts');
    expect(r.stderr).toContain('nothing to do: all 0 prompts are done');
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ shard: '2/2', width: 64 });
    expect(existsSync(join(dir, 'report.html'))).toBe(true);
  });
});

describe('fewstep score: flag errors', () => {
  const img = join(work, 'img.png');
  beforeAll(async () => writeFileSync(img, await encodePng({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(128) })));
  it.each([
    [[], 'no images given (fewstep score <image>... --prompt <text>, or --run <dir>)'],
    [['IMG'], '--prompt <text> (or --prompts <file>) is required: what the images should show'],
    [['IMG', 'IMG', '-p', 'a', '-p', 'b', '-p', 'c'], '3 --prompt values for 2 images; give one for all, or one per image'],
    [['IMG', '--prompt', 'a', '--prompts', 'SAMPLE'], 'give either --prompt or --prompts, not both'],
    [['IMG', '--prompts', 'SAMPLE'], '--prompts SAMPLE has 20 prompts for 1 image; prompt i pairs with image i, so give one per image'],
    [['NOPE', '--prompt', 'a'], 'NOPE: file not found'],
    [['IMG', '--prompt', 'a', '--model', 'NOPRE'], '--model NOPRE: not a CLIPModel folder with its tokenizer and image processor (missing preprocessor_config.json)'],
    [['IMG', '--prompt', 'a', '--rescore'], '--rescore goes with --run'],
    [['--run', 'NOPE'], '--run NOPE: folder not found'],
    [['--run', 'WORK'], '--run WORK: not a run folder (no run.json; make one with fewstep batch)'],
    [['--run', 'WORK', 'IMG'], '--run scores the images of the run folder; unexpected argument "IMG"'],
    [['--batch-size', '0', '--run', 'WORK'], '--batch-size must be from 1 to 1024, got 0'],
  ])('%j', async (args, message) => {
    const sub = (s: string) => s.replace(/IMG/g, img).replace(/SAMPLE/g, sample).replace(/NOPRE/g, noPre).replace(/NOPE/g, join(work, 'nope.png')).replace(/WORK/g, work);
    const r = await cli(['score', ...(args as string[]).map(sub)]);
    expect(r.stderr).toBe(`fewstep score: ${sub(message)}\n`);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
  });

  it('the default model offline and not cached: one line, exit 1, no request', async () => {
    process.env['HF_HUB_OFFLINE'] = '1';
    const before = hub.requests.length;
    try {
      const r = await cli(['score', img, '--prompt', 'a cat']);
      expect(r.stderr).toMatch(/^fewstep score: --model openai\/clip-vit-large-patch14: Offline mode \(HF_HUB_OFFLINE=1\): .*\n$/);
      expect(r.code).toBe(1);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }
    expect(hub.requests.length).toBe(before);
  });
});

describe('fewstep report', () => {
  const settings: RunSettings = { model: 'org/m', steps: 1, guidance: 0, width: 8, height: 8, dtype: 'f32', scheduler: 'EulerDiscreteScheduler', seed: 0, prompts: 'p.tsv' };
  async function runFolder(name: string, s: Partial<RunSettings>, scores: number[]): Promise<string> {
    const dir = join(work, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'run.json'), JSON.stringify({ ...settings, ...s }));
    const lines: ResultLine[] = scores.map((score, row) => ({ prompt: `p${row}`, category: row % 2 ? 'Animals' : 'Food', challenge: 'Basic', row, seed: row, file: `${row}.png`, seconds: 0.25, clip_score: score }));
    writeFileSync(join(dir, 'results.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    for (const l of lines) writeFileSync(join(dir, l.file), await encodePng({ width: 8, height: 8, data: new Uint8Array(192) }));
    return dir;
  }

  it('one run: its summary table; two: side by side with the differing settings; errors', async () => {
    const a = await runFolder('ra', {}, [20, 21, 22, 23]);
    const b = await runFolder('rb', { dtype: 'f16', clip_model: 'org/clip' }, [30, 31, 32, 33]);
    const one = await cli(['report', a]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toContain(`run: ${a}\n\noverall   images scored    CLIP  95% CI           images/s\nall            4      4   21.50  19.45 – 23.55    4.000\n`);
    expect(one.stdout).toContain('\ncategory  images scored');
    expect(one.stderr).toBe(`${join(a, 'report.html')}\n`);
    expect(existsSync(join(a, 'summary.json'))).toBe(true);
    const two = await cli(['report', a, b]);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toContain(`A: ${a}\nB: ${b}\ndiffers: clip_model undefined → "org/clip", dtype "f32" → "f16"\n`);
    expect(two.stdout).toMatch(/\nall +4 +21\.50 +4 +31\.50 +\+10\.00 +no\n/);
    for (const [args, msg, code] of [
      [['report'], 'give a run folder, two to compare, or --merge <dirs> --out <dir>', 2],
      [['report', a, b, a], 'give one run folder, or two to compare; got 3', 2],
      [['report', join(work, 'nope')], `${join(work, 'nope')}: folder not found`, 2],
      [['report', work], `${work}: not a run folder (no run.json; make one with fewstep batch)`, 2],
      [['report', a, '--html', join(work, 'x.html')], '--html goes with two runs to compare (one run has its report.html)', 2],
      [['report', a, b, '--html', join(work, 'no-dir', 'x.html')], `--html ${join(work, 'no-dir', 'x.html')}: folder ${join(work, 'no-dir')} does not exist`, 2],
      [['report', '--merge', a, b], '--merge needs --out <dir>: where the merged run goes', 2],
      [['report', '--merge', a, '--out', join(work, 'm1')], '--merge needs at least two run folders', 2],
      [['report', '--merge', a, b, '--out', join(work, 'm2')], `--merge: ${b} was run with other settings than ${a} (dtype: "f32" vs "f16")`, 2],
      [['report', a, '--out', join(work, 'm3')], '--out goes with --merge', 2],
    ] as const) {
      const r = await cli([...args]);
      expect(r.stderr, args.join(' ')).toBe(`fewstep report: ${msg}\n`);
      expect(r.code).toBe(code);
    }
    expect(existsSync(join(work, 'm2'))).toBe(false);
  });

  it('fewstep --help lists score and report; their --help shows the flags', async () => {
    const top = await cli(['--help']);
    expect(top.stdout).toMatch(/\n  score +CLIP score of images/);
    expect(top.stdout).toMatch(/\n  report +Summary of a batch run/);
    expect((await cli(['batch', '--help'])).stdout).toContain('--score [<clip-model>]');
    expect((await cli(['score', '--help'])).stdout).toContain('--run <dir>');
    expect((await cli(['report', '--help'])).stdout).toContain('--merge <dir>...');
  });
});

describe('the CLIP repo: which files are downloaded', () => {
  it('config, tokenizer, image processor and the safetensors weights; never pickles, flax or tf files', () => {
    const repo = ['.gitattributes', 'README.md', 'config.json', 'flax_model.msgpack', 'merges.txt', 'model.safetensors', 'preprocessor_config.json', 'pytorch_model.bin', 'special_tokens_map.json', 'tf_model.h5', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json'];
    expect(clipRepoFiles(repo, 'openai/clip-vit-large-patch14')).toEqual({
      small: ['config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'],
      weights: ['model.safetensors'],
    });
    const sharded = ['config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt', 'model-00002-of-00002.safetensors', 'model-00001-of-00002.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin'];
    expect(clipRepoFiles(sharded, 'x/y').weights).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    expect(clipRepoFiles(['config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt', 'pytorch_model.bin'], 'x/y').weights).toEqual(['pytorch_model.bin']);
    expect(() => clipRepoFiles(['config.json', 'model.safetensors'], 'x/y')).toThrow('x/y: not a CLIPModel repo with its tokenizer and image processor (missing preprocessor_config.json, vocab.json, merges.txt)');
  });
});
