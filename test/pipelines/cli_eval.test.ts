// The evaluation loop end to end on the tiny SDXS model (64×64) and the tiny golden CLIPModel: `fewstep batch`
// over a few PartiPrompts rows from a hub dataset (fake hub) with --score and --batch-size 2 → results.jsonl with
// clip_score, summary.json per category and challenge, report.html; the same rows in two shards (batch size 1),
// scored later with `fewstep score --run` (cancelled and resumed; nothing to do the second time; one shard offline)
// and merged with `fewstep report --merge` equal the unsharded run; --batch-size 3 gives the batch-size-1 images;
// `fewstep report A B` prints the comparison; `fewstep score <images>` equals CLIPScorer.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { nodeFiles } from '@fewstep/tensor/node';
import { CLIPScorer, decodePng } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { isolateHfEnv, startFakeHub, type FakeFile, type FakeHub } from '../helpers/fake_hub';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-cli-eval-'));
const model = buildTinyModel(join(work, 'model'));
const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const SIZE = ['--width', '64', '--height', '64'];

/** openai/clip-vit-large-patch14's preprocessor_config.json. */
const PREPROCESSOR_L14 = {
  crop_size: 224, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, size: 224,
};

/** A CLIPModel folder laid out as openai/clip-vit-large-patch14 (all at the root): the tiny golden model + the CLIP tokenizer. */
function clipFiles(): { path: string; content: Buffer; lfs?: boolean }[] {
  const g = join(fixtures, 'golden', 'clip_score'), tok = join(fixtures, 'clip-tokenizer');
  return [
    { path: 'config.json', content: readFileSync(join(g, 'config.json')) },
    { path: 'model.safetensors', content: readFileSync(join(g, 'model.safetensors')), lfs: true },
    { path: 'vocab.json', content: readFileSync(join(tok, 'vocab.json')) },
    { path: 'merges.txt', content: readFileSync(join(tok, 'merges.txt')) },
    { path: 'tokenizer_config.json', content: readFileSync(join(tok, 'sd15', 'tokenizer_config.json')) },
    { path: 'special_tokens_map.json', content: readFileSync(join(tok, 'sd15', 'special_tokens_map.json')) },
    { path: 'preprocessor_config.json', content: Buffer.from(JSON.stringify(PREPROCESSOR_L14)) },
  ];
}
const clipDir = join(work, 'clip');
mkdirSync(clipDir);
for (const f of clipFiles()) writeFileSync(join(clipDir, f.path), f.content);

/** PartiPrompts rows (their row numbers in PartiPrompts.tsv): 2 Vehicles/Basic, 2 Animals/Basic, 2 Animals/Simple Detail. */
const PICK = [37, 42, 54, 62, 1103, 1105];
function partiSubset(): { Prompt: string[]; Category: string[]; Challenge: string[]; Note: string[] } {
  const lines = readFileSync(join(fixtures, 'data', 'PartiPrompts.tsv'), 'utf8').split('\n').slice(1);
  const cols = { Prompt: [] as string[], Category: [] as string[], Challenge: [] as string[], Note: [] as string[] };
  for (const i of PICK) {
    const [p, c, x, n] = lines[i]!.split('\t');
    cols.Prompt.push(p!);
    cols.Category.push(c!);
    cols.Challenge.push(x!);
    cols.Note.push(n ?? '');
  }
  return cols;
}

let restoreEnv: (() => void) | undefined;
let hub: FakeHub;
beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  process.env['HF_HOME'] = join(work, 'hf-home');
  process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
  const parquet = Buffer.from(parquetWriteBuffer({ columnData: Object.entries(partiSubset()).map(([name, data]) => ({ name, data, type: 'STRING' as const })) }));
  const clipRepo: FakeFile[] = [
    ...clipFiles(),
    // what openai/clip-vit-large-patch14 also holds, and the scorer must not download
    { path: 'pytorch_model.bin', content: Buffer.alloc(2000, 1), lfs: true },
    { path: 'flax_model.msgpack', content: Buffer.alloc(2000, 2), lfs: true },
    { path: 'tf_model.h5', content: Buffer.alloc(2000, 3), lfs: true },
    { path: 'README.md', content: Buffer.from('# tiny clip\n') },
  ];
  hub = await startFakeHub([
    { id: 'org/parti-prompts', type: 'dataset', commit: 'a'.repeat(40), files: [{ path: 'README.md', content: Buffer.from('#\n') }, { path: 'data/train-00000-of-00001.parquet', content: parquet, lfs: true }] },
    { id: 'org/tiny-clip', commit: 'c'.repeat(40), files: clipRepo },
  ]);
  process.env['HF_ENDPOINT'] = hub.url;
});
afterAll(async () => {
  await hub?.close();
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

async function cli(args: string[], extra: Partial<CliIO> = {}, onErr?: (s: string) => void): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void (err.push(s), onErr?.(s)), isTTY: false, ...extra };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

type Line = Record<string, unknown> & { file: string; row: number; prompt: string; seed: number; clip_score?: number };
/** results.jsonl as the run sees it: the last line per file, in row order. */
function results(dir: string): Line[] {
  const m = new Map<string, Line>();
  for (const l of readFileSync(join(dir, 'results.jsonl'), 'utf8').split('\n').filter(Boolean)) {
    const r = JSON.parse(l) as Line;
    m.set(r.file, r);
  }
  return [...m.values()].sort((a, b) => a.row - b.row);
}
const rawLines = (dir: string) => readFileSync(join(dir, 'results.jsonl'), 'utf8').split('\n').filter(Boolean).length;
const pngs = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.png')).sort();
const pixels = async (p: string) => Buffer.from((await decodePng(new Uint8Array(readFileSync(p)), p)).data);
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
const noPartials = (dir: string) => expect(readdirSync(dir).filter((n) => n.includes('.partial-'))).toEqual([]);

const PROMPTS = ['--prompts', 'org/parti-prompts', '--model', model, '--seed', '500', ...SIZE];
const runA = join(work, 'A'), shard1 = join(work, 'S1'), shard2 = join(work, 'S2'), merged = join(work, 'M'), runC = join(work, 'C');

describe('the evaluation loop', () => {
  it('batch --score --batch-size 2 from a hub dataset: clip_score on every line, summary per category and challenge, report.html', async () => {
    const r = await cli(['batch', ...PROMPTS, '--out-dir', runA, '--batch-size', '2', '--score', 'org/tiny-clip']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${join(runA, 'report.html')}\n`);
    expect(r.stderr).toContain('prompts: org/parti-prompts@main: data/train-00000-of-00001.parquet, split train');
    expect(r.stderr).toContain('load clip ');
    expect(r.stderr).toMatch(/\[6\/6\] 0005-a-smiling-sloth\.png: CLIP \d+\.\d\d\n/);
    expect(r.stderr).toContain('CLIP-scored 6 images with org/tiny-clip');
    // The CLIP repo's other weights (pickle, flax, tf) and its README are never fetched.
    const fetched = new Set(hub.requests.filter((q) => q.path.includes('tiny-clip')).map((q) => q.path.split('/').pop()));
    for (const f of ['pytorch_model.bin', 'flax_model.msgpack', 'tf_model.h5', 'README.md']) expect(fetched.has(f), f).toBe(false);
    expect(fetched.has('model.safetensors')).toBe(true);

    expect(pngs(runA)).toEqual(['0000-an-f1.png', '0001-a-hot-air-balloon.png', '0002-a-shiba-inu.png', '0003-a-snail.png', '0004-siberian-husky-playing-the-piano.png', '0005-a-smiling-sloth.png']);
    const lines = results(runA);
    expect(lines.map((l) => [l.row, l.seed, l['category'], l['challenge']])).toEqual([
      [0, 500, 'Vehicles', 'Basic'], [1, 501, 'Vehicles', 'Basic'], [2, 502, 'Animals', 'Basic'],
      [3, 503, 'Animals', 'Basic'], [4, 504, 'Animals', 'Simple Detail'], [5, 505, 'Animals', 'Simple Detail'],
    ]);
    for (const l of lines) {
      expect(typeof l.clip_score).toBe('number');
      expect(l.clip_score).toBeGreaterThanOrEqual(0);
      expect(l.clip_score).toBeLessThanOrEqual(100);
      expect(l['clip_model']).toBe('org/tiny-clip');
      expect(l['batch_size']).toBe(2);
      expect(typeof l['adapter']).toBe('string');
    }
    // Generation lines first (6), then the scored lines (6): the last line per file wins.
    expect(rawLines(runA)).toBe(12);
    expect(json(join(runA, 'run.json'))).toMatchObject({ model, clip_model: 'org/tiny-clip', prompts: 'org/parti-prompts', seed: 500, width: 64 });
    expect(json(join(runA, 'run.json'))['batch_size']).toBeUndefined();

    const summary = json(join(runA, 'summary.json')) as { overall: Record<string, unknown>; categories: Record<string, Record<string, unknown>>; challenges: Record<string, Record<string, unknown>> };
    expect(Object.keys(summary.categories)).toEqual(['Animals', 'Vehicles']);
    expect(Object.keys(summary.challenges)).toEqual(['Basic', 'Simple Detail']);
    const mean = (ls: Line[]) => ls.reduce((a, l) => a + l.clip_score!, 0) / ls.length;
    expect(summary.categories['Vehicles']).toMatchObject({ count: 2, scored: 2 });
    expect(summary.categories['Animals']!['mean']).toBeCloseTo(mean(lines.slice(2)), 10);
    expect(summary.challenges['Simple Detail']!['mean']).toBeCloseTo(mean(lines.slice(4)), 10);
    const ci = summary.overall['ci95'] as [number, number];
    expect(ci[0]).toBeLessThan(summary.overall['mean'] as number);
    expect(summary.overall['images_per_second']).toBeGreaterThan(0);

    const html = readFileSync(join(runA, 'report.html'), 'utf8');
    expect(html).toContain('Mean CLIP score by category');
    expect(html).toContain('Mean CLIP score by challenge');
    expect(html).toContain('<svg');
    expect(html).toContain('<select id="sort">');
    expect(html).toContain('CLIP org/tiny-clip');
    expect(html).toContain(` · on ${String(lines[0]!['adapter'])}`);
    expect(html).not.toMatch(/https?:\/\//);
    for (const n of pngs(runA)) expect(html).toContain(`src="${n}"`);
    noPartials(runA);

    // Again: nothing to generate, nothing to score.
    const again = await cli(['batch', ...PROMPTS, '--out-dir', runA, '--batch-size', '3', '--score', 'org/tiny-clip']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('nothing to do: all 6 prompts are done');
    expect(again.stderr).not.toContain('load ');
    expect(rawLines(runA)).toBe(12);
  });

  it('two shards (batch size 1), scored later — cancelled, resumed, offline — and merged = the unsharded run', async () => {
    for (const [i, dir] of [[1, shard1], [2, shard2]] as const) {
      const r = await cli(['batch', ...PROMPTS, '--out-dir', dir, '--shard', `${i}/2`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`shard ${i}/2: 3 of 6 prompts`);
      expect(json(join(dir, 'run.json'))['shard']).toBe(`${i}/2`);
    }
    expect(pngs(shard1)).toEqual(['0000-an-f1.png', '0002-a-shiba-inu.png', '0004-siberian-husky-playing-the-piano.png']);
    expect(pngs(shard2)).toEqual(['0001-a-hot-air-balloon.png', '0003-a-snail.png', '0005-a-smiling-sloth.png']);
    // Another shard into a shard's folder is refused.
    const wrong = await cli(['batch', ...PROMPTS, '--out-dir', shard1, '--shard', '2/2']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr.trimEnd().split('\n').pop()).toBe(`fewstep batch: --out-dir ${shard1} holds shard 1/2, not shard 2/2; use one folder per shard (fewstep report --merge joins them)`);

    // Ctrl-C after the first score: exit 130, complete lines only; the next run scores the rest.
    const ac = new AbortController();
    const cut = await cli(['score', '--run', shard1, '--model', 'org/tiny-clip', '--batch-size', '1'], { signal: ac.signal }, (s) => {
      if (s.includes(': CLIP ')) ac.abort();
    });
    expect(cut.code).toBe(130);
    expect(cut.stderr.trimEnd().split('\n').pop()).toBe('fewstep score: cancelled');
    const partly = results(shard1).filter((l) => typeof l.clip_score === 'number').length;
    expect(partly).toBe(1);
    noPartials(shard1);
    const rest = await cli(['score', '--run', shard1, '--model', 'org/tiny-clip']);
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.stderr).toContain('scoring: 1 of 3 images already scored');
    expect(rest.stderr).toContain('CLIP-scored 2 images with org/tiny-clip (1 already scored)');
    // Nothing to do the second time (the model comes from run.json).
    const none = await cli(['score', '--run', shard1]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stderr).toContain('nothing to do: all 3 images are scored with org/tiny-clip');
    expect(none.stderr).not.toContain('load clip');
    // Another CLIP model needs --rescore.
    const other = await cli(['score', '--run', shard1, '--model', clipDir]);
    expect(other.code).toBe(2);
    expect(other.stderr).toBe(`fewstep score: --run ${shard1} was scored with org/tiny-clip, not ${clipDir}; pass --rescore to score it again with ${clipDir}\n`);

    // The other shard offline: CLIP model and prompts from the cache.
    process.env['HF_HUB_OFFLINE'] = '1';
    try {
      const before = hub.requests.length;
      const off = await cli(['score', '--run', shard2, '--model', 'org/tiny-clip']);
      expect(off.code, off.stderr).toBe(0);
      expect(hub.requests.length).toBe(before);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }

    const m = await cli(['report', '--merge', shard1, shard2, '--out', merged]);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toBe(`${join(merged, 'report.html')}\n`);
    expect(m.stderr).toBe('merged 2 runs: 6 images, 6 scored\n');
    expect(pngs(merged)).toEqual(pngs(runA));
    const a = results(runA), mm = results(merged);
    const key = (l: Line) => [l.row, l.prompt, l.seed, l.file, l['category'], l['challenge']];
    expect(mm.map(key)).toEqual(a.map(key));
    // Same images (batch size 1 vs 2), so the same scores (CLIP batch 16 vs 2: within float noise).
    for (const [i, l] of mm.entries()) expect(l.clip_score!).toBeCloseTo(a[i]!.clip_score!, 3);
    for (const n of pngs(runA)) expect((await pixels(join(merged, n))).equals(await pixels(join(runA, n))), n).toBe(true);
    const run = json(join(merged, 'run.json'));
    expect(run['shard']).toBeUndefined();
    expect(run['clip_model']).toBe('org/tiny-clip');
    // The report rewritten after scoring still says where the images were made (each line names its adapter).
    expect(readFileSync(join(merged, 'report.html'), 'utf8')).toContain(` · on ${String(a[0]!['adapter'])}`);
    expect(Object.keys((json(join(merged, 'summary.json')) as { categories: object }).categories)).toEqual(['Animals', 'Vehicles']);
  });

  it('--batch-size 3 gives the batch-size-1 images', async () => {
    const r = await cli(['batch', ...PROMPTS, '--out-dir', runC, '--batch-size', '3']);
    expect(r.code, r.stderr).toBe(0);
    expect(results(runC).map((l) => l['batch_size'])).toEqual([3, 3, 3, 3, 3, 3]);
    for (const n of pngs(merged)) {
      const [c, one] = [readFileSync(join(runC, n)), readFileSync(join(merged, n))];
      expect((await pixels(join(runC, n))).equals(await pixels(join(merged, n))), n).toBe(true);
      // The same bytes too: the parameters recorded are those of a batch of one.
      expect(c.equals(one), n).toBe(true);
    }
  });

  it('report A B: the table per category and challenge, and --html', async () => {
    const out = join(work, 'compare.html');
    const r = await cli(['report', runA, merged, '--html', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`A: ${runA}\nB: ${merged}\n`);
    expect(r.stdout).toMatch(/\ncategory +n +A +n +B +B−A +CIs overlap\n/);
    expect(r.stdout).toMatch(/\nAnimals +4 +\d+\.\d\d +4 +\d+\.\d\d +[+-]\d+\.\d\d +yes\n/);
    expect(r.stdout).toMatch(/\nSimple Detail +2 /);
    expect(r.stderr).toBe(`wrote ${out}\n`);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('By category');
    expect(html).toContain('<svg');
    // One run: its summary, and summary.json + report.html rewritten.
    rmSync(join(runC, 'report.html'));
    const one = await cli(['report', runC]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^run: .*\n\noverall +images +scored +CLIP +95% CI +images\/s\nall +6 +0 +– /);
    expect(existsSync(join(runC, 'report.html'))).toBe(true);
    // Folders of runs with other settings do not merge.
    const other = join(work, 'other');
    expect((await cli(['batch', ...PROMPTS.slice(0, -4), '--width', '32', '--height', '32', '--limit', '1', '--out-dir', other])).code).toBe(0);
    const refused = await cli(['report', '--merge', runA, other, '--out', join(work, 'bad2')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`^fewstep report: --merge: ${other} was run with other settings than ${runA} \\(width: 64 vs 32; height: 64 vs 32\\)\\n$`));
  });

  it('score <images> --prompt / --prompts / --json = CLIPScorer', async () => {
    const imgs = ['0002-a-shiba-inu.png', '0003-a-snail.png'].map((n) => join(runA, n));
    const one = await cli(['score', ...imgs, '--prompt', 'a shiba inu', '--model', clipDir, '--json']);
    expect(one.code, one.stderr).toBe(0);
    const got = JSON.parse(one.stdout) as { image: string; prompt: string; clip_score: number }[];
    expect(got.map((g) => [g.image, g.prompt])).toEqual([[imgs[0], 'a shiba inu'], [imgs[1], 'a shiba inu']]);
    const device = await gpuDevice();
    const scorer = await CLIPScorer.fromFolder(nodeFiles, clipDir, device);
    const images = await Promise.all(imgs.map(async (p) => decodePng(new Uint8Array(readFileSync(p)), p)));
    const want = await scorer.score(images, ['a shiba inu', 'a shiba inu']);
    scorer.dispose();
    expect(got.map((g) => g.clip_score)).toEqual(want);
    // One prompt per image from a file; plain output: "<score>\t<image>" per line.
    const list = join(work, 'pair.txt');
    writeFileSync(list, 'a shiba inu\na snail\n');
    const paired = await cli(['score', ...imgs, '--prompts', list, '--model', clipDir]);
    expect(paired.code, paired.stderr).toBe(0);
    const rows = paired.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
    expect(rows.map((r) => r[1])).toEqual(imgs);
    expect(Number(rows[0]![0])).toBeCloseTo(want[0]!, 3);
    const runLines = results(runA);
    expect(Number(rows[1]![0])).toBeCloseTo(runLines[3]!.clip_score!, 3);
  });
});
