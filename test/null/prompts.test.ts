// Prompt-list readers (no GPU): PartiPrompts as TSV (the file itself) and as parquet written here with hyparquet-writer
// (snappy, uncompressed, gzip; two row groups) give identical rows; CSV / JSONL / TXT of the same rows too; column
// matching, row numbering, quoting; one clear error for a missing Prompt column in every format and for corrupt
// parquet (truncated, garbage footer, garbage pages, not parquet at all); only the prompt columns are read.
// Hub datasets (`--prompts org/name[@rev]`) through the fake hub: parquet shards of a split, a TSV, the
// refs/convert/parquet fallback, then offline from the cache; the choice of data files from real repo layouts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { FileFormatError, InvalidArgumentError } from '@fewstep/tensor';
import {
  parsePromptsCsv,
  parsePromptsTsv,
  readPrompts,
  readPromptsFromParquet,
  type PromptRow,
} from '../../packages/cli/src/prompts/index.js';
import { chooseDataFiles, isHubDatasetSpec, readPromptSource } from '../../packages/cli/src/prompts/hub_dataset.js';
import { OfflineMissingError, RepoNotFoundError } from '@fewstep/weights-tools';
import { isolateHfEnv, startFakeHub, type FakeHub } from '../helpers/fake_hub';

const parti = new URL('../fixtures/data/PartiPrompts.tsv', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'fewstep-prompts-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The TSV's columns as raw strings (what a parquet/CSV/JSONL export of the same table holds). */
function tsvColumns(): Record<'Prompt' | 'Category' | 'Challenge' | 'Note', string[]> {
  const lines = readFileSync(parti, 'utf8').split('\n').filter((l) => l !== '');
  const cols = { Prompt: [] as string[], Category: [] as string[], Challenge: [] as string[], Note: [] as string[] };
  expect(lines[0]).toBe('Prompt\tCategory\tChallenge\tNote');
  for (const l of lines.slice(1)) {
    const [p, c, x, n] = l.split('\t');
    cols.Prompt.push(p!);
    cols.Category.push(c!);
    cols.Challenge.push(x!);
    cols.Note.push(n ?? '');
  }
  return cols;
}

function writeParquet(name: string, columnData: { name: string; data: unknown[]; type?: string }[], opts: Record<string, unknown> = {}): string {
  const buf = parquetWriteBuffer({ columnData, ...opts } as Parameters<typeof parquetWriteBuffer>[0]);
  const p = join(work, name);
  writeFileSync(p, new Uint8Array(buf));
  return p;
}

/** The error thrown by `f` (a promise), checked to be one of ours. */
async function failure(f: Promise<unknown>): Promise<Error> {
  try {
    await f;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

const csvField = (s: string) => (/[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s);

describe('readPrompts: PartiPrompts in every format', () => {
  let tsvRows: PromptRow[];

  it('TSV: all 1632 prompts, columns and literal quotes', async () => {
    tsvRows = await readPrompts(parti);
    expect(tsvRows.length).toBe(1632);
    expect(tsvRows[0]).toEqual({ row: 0, prompt: 'bond', category: 'Abstract', challenge: 'Basic', note: 'Biology-inspired concepts with multiple meanings' });
    expect(tsvRows.every((r, i) => r.row === i)).toBe(true);
    expect(tsvRows.filter((r) => r.category === 'Animals').length).toBe(314);
    const poker = tsvRows.find((r) => r.prompt === 'Dogs playing poker')!;
    expect(poker.note).toBe('Description of "Dogs Playing Poker"');
    expect(tsvRows.some((r) => r.prompt.includes('"PEACE"'))).toBe(true);
    // the same parser batch.ts has (kept there until batch moves to readPrompts)
    expect(parsePromptsTsv(readFileSync(parti, 'utf8'), parti)).toEqual(tsvRows);
  });

  it('parquet (snappy, default two row groups of 1000 + 632) = TSV', async () => {
    const cols = tsvColumns();
    const p = writeParquet('parti.parquet', Object.entries(cols).map(([name, data]) => ({ name, data, type: 'STRING' })));
    expect(readFileSync(p).subarray(0, 4).toString()).toBe('PAR1');
    expect(parquetMetadata(new Uint8Array(readFileSync(p)).buffer).row_groups.map((g) => Number(g.num_rows))).toEqual([1000, 632]);
    expect(await readPrompts(p)).toEqual(tsvRows);
  });

  it('parquet uncompressed, gzip, brotli, one row group, other column order and case, extra columns = TSV', async () => {
    const cols = tsvColumns();
    const n = cols.Prompt.length;
    const columnData = [
      { name: 'id', data: Array.from({ length: n }, (_, i) => i), type: 'INT32' },
      { name: 'NOTE', data: cols.Note, type: 'STRING' },
      { name: 'prompt', data: cols.Prompt, type: 'STRING' },
      { name: 'image', data: Array.from({ length: n }, (_, i) => `pixels ${i} `.repeat(200)), type: 'STRING' },
      { name: 'Category', data: cols.Category, type: 'STRING' },
      { name: 'challenge', data: cols.Challenge, type: 'STRING' },
    ];
    const plain = writeParquet('plain.parquet', columnData, { codec: 'UNCOMPRESSED', rowGroupSize: 100000 });
    expect(await readPrompts(plain)).toEqual(tsvRows);
    const gz = writeParquet('gzip.parquet', columnData, { codec: 'GZIP', compressors: { GZIP: (b: Uint8Array) => new Uint8Array(gzipSync(b)) }, rowGroupSize: 700 });
    expect(await readPrompts(gz)).toEqual(tsvRows);
    const br = writeParquet('brotli.parquet', columnData, { codec: 'BROTLI', compressors: { BROTLI: (b: Uint8Array) => new Uint8Array(brotliCompressSync(b)) } });
    expect(await readPrompts(br)).toEqual(tsvRows);
    // Only the prompt columns are fetched: the 'image' column (~3 MB, most of the file) is never read; what is read is
    // hyparquet's footer prefetch (the last 512 KB) and the four prompt columns (~150 KB).
    const bytes = new Uint8Array(readFileSync(plain));
    let read = 0;
    const counting = {
      byteLength: bytes.byteLength,
      slice(start: number, end?: number) {
        read += (end ?? bytes.byteLength) - start;
        return bytes.slice(start, end).buffer;
      },
    };
    expect(await readPromptsFromParquet(counting, 'plain.parquet')).toEqual(tsvRows);
    expect(bytes.byteLength).toBeGreaterThan(3_000_000);
    expect(read).toBeLessThan(800_000);
  });

  it('parquet nulls: a null prompt is skipped but keeps its row number; other nulls are empty', async () => {
    const p = writeParquet('nulls.parquet', [
      { name: 'Prompt', data: ['a cat', null, '  a dog  ', ''], type: 'STRING' },
      { name: 'Category', data: [null, 'X', 'Animals', 'Y'], type: 'STRING' },
      { name: 'Score', data: [1.5, 2, 3, 4], type: 'DOUBLE' },
    ]);
    expect(await readPrompts(p)).toEqual([
      { row: 0, prompt: 'a cat', category: '', challenge: '', note: '' },
      { row: 2, prompt: 'a dog', category: 'Animals', challenge: '', note: '' },
    ]);
  });

  it('CSV (quoted fields with commas, quotes, line breaks; CRLF; BOM) = TSV', async () => {
    const cols = tsvColumns();
    const lines = ['Prompt,Category,Challenge,Note'];
    for (let i = 0; i < cols.Prompt.length; i++) lines.push([cols.Prompt[i]!, cols.Category[i]!, cols.Challenge[i]!, cols.Note[i]!].map(csvField).join(','));
    const p = join(work, 'parti.csv');
    writeFileSync(p, '\uFEFF' + lines.join('\r\n') + '\r\n');
    expect(await readPrompts(p)).toEqual(tsvRows);

    const t = parsePromptsCsv('note,PROMPT\n"a, b","say ""hi"""\n\n,"two\r\nlines"\nx,\n y ,  plain  \n"unclosed"tail,z', 't.csv');
    expect(t).toEqual([
      { row: 0, prompt: 'say "hi"', category: '', challenge: '', note: 'a, b' },
      { row: 1, prompt: 'two\r\nlines', category: '', challenge: '', note: '' },
      { row: 3, prompt: 'plain', category: '', challenge: '', note: 'y' },
      { row: 4, prompt: 'z', category: '', challenge: '', note: 'unclosedtail' },
    ]);
    expect(() => parsePromptsCsv('Prompt\n"a\nb\n', 'u.csv')).toThrow('u.csv: line 2: a quoted field is never closed');
  });

  it('JSONL = TSV; keys case-insensitive, non-string values printed', async () => {
    const cols = tsvColumns();
    const p = join(work, 'parti.jsonl');
    const text = cols.Prompt.map((prompt, i) => JSON.stringify({ Prompt: prompt, Category: cols.Category[i], Challenge: cols.Challenge[i], Note: cols.Note[i] })).join('\n');
    writeFileSync(p, text + '\n\n');
    expect(await readPrompts(p)).toEqual(tsvRows);
    const q = join(work, 'mixed.jsonl');
    writeFileSync(q, '{"prompt": "a", "category": 7}\n\n{"PROMPT": null}\r\n{"Prompt": " b ", "note": true}\n');
    expect(await readPrompts(q)).toEqual([
      { row: 0, prompt: 'a', category: '7', challenge: '', note: '' },
      { row: 2, prompt: 'b', category: '', challenge: '', note: 'true' },
    ]);
    const bad = join(work, 'bad.jsonl');
    writeFileSync(bad, '{"Prompt": "a"}\n{"Prompt": \n');
    expect((await failure(readPrompts(bad))).message).toMatch(new RegExp(`^${bad}: line 2 is not valid JSON`));
    writeFileSync(bad, '{"Prompt": "a"}\n["b"]\n');
    expect((await failure(readPrompts(bad))).message).toBe(`${bad}: line 2 is not a JSON object`);
    writeFileSync(bad, '{"Prompt": {"text": "a"}}\n');
    expect((await failure(readPrompts(bad))).message).toBe(`${bad}: line 1: column "Prompt" holds a object, not text`);
  });

  it('TXT: one prompt per line, blank lines skipped', async () => {
    const p = join(work, 'parti.txt');
    writeFileSync(p, tsvColumns().Prompt.join('\n') + '\n');
    expect(await readPrompts(p)).toEqual(tsvRows.map((r) => ({ ...r, category: '', challenge: '', note: '' })));
    const q = join(work, 'few.txt');
    writeFileSync(q, '\uFEFF a cat \r\n\r\n\ta dog\r\n');
    expect(await readPrompts(q)).toEqual([
      { row: 0, prompt: 'a cat', category: '', challenge: '', note: '' },
      { row: 1, prompt: 'a dog', category: '', challenge: '', note: '' },
    ]);
  });
});

describe('readPrompts: errors', () => {
  it('a missing Prompt column is one FileFormatError naming the file and its columns, in every format', async () => {
    const cases: [string, string | Uint8Array, string][] = [
      ['np.tsv', 'Text\tCategory\nhello\tX\n', 'header columns: "Text", "Category"'],
      ['np.csv', 'Text,Category\nhello,X\n', 'header columns: "Text", "Category"'],
      ['np.jsonl', '{"text": "hello"}\n{"category": "X"}\n', 'keys: "text", "category"'],
      ['np.parquet', new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'caption', data: ['a'], type: 'STRING' }, { name: 'Category', data: ['X'], type: 'STRING' }] })), 'columns: "caption", "Category"'],
    ];
    for (const [name, content, cols] of cases) {
      const p = join(work, name);
      writeFileSync(p, content);
      const e = await failure(readPrompts(p));
      expect(e).toBeInstanceOf(FileFormatError);
      expect(e.message).toBe(`${p}: no "Prompt" column (${cols}); expected Prompt and optionally Category, Challenge, Note`);
    }
  });

  it('corrupt parquet: truncated, garbage footer, garbage pages, not parquet, empty — one FileFormatError naming the file', async () => {
    const cols = tsvColumns();
    const good = new Uint8Array(parquetWriteBuffer({ columnData: Object.entries(cols).map(([name, data]) => ({ name, data, type: 'STRING' })) }));
    const variants: Record<string, Uint8Array> = {
      'truncated-half': good.slice(0, good.length >> 1),
      'truncated-tail': good.slice(0, good.length - 3),
      'garbage-footer': (() => {
        const b = good.slice();
        const metaLen = new DataView(b.buffer).getUint32(b.length - 8, true);
        for (let i = b.length - 8 - metaLen; i < b.length - 8; i++) b[i] = (i * 131 + 7) & 0xff;
        return b;
      })(),
      'huge-footer-length': (() => {
        const b = good.slice();
        new DataView(b.buffer).setUint32(b.length - 8, 0xfffffff0, true);
        return b;
      })(),
      'garbage-pages': (() => {
        const b = good.slice();
        for (let i = 4; i < b.length >> 1; i++) b[i] = (i * 89 + 3) & 0xff;
        return b;
      })(),
      'not-parquet': new TextEncoder().encode('Prompt\tCategory\nhello\tX\n'),
      empty: new Uint8Array(0),
    };
    for (const [name, bytes] of Object.entries(variants)) {
      const p = join(work, `${name}.parquet`);
      writeFileSync(p, bytes);
      const e = await failure(readPrompts(p));
      expect(e, name).toBeInstanceOf(FileFormatError);
      expect(e.message, name).toMatch(new RegExp(`^${p.replace(/[.]/g, '\\.')}: not a readable parquet file \\(.+\\)$`));
      if (name === 'empty') expect(e.message).toBe(`${p}: not a readable parquet file (0 bytes, too short for parquet)`);
      if (name.startsWith('truncated')) expect(e.message).toMatch(/footer != PAR1/);
      expect(e.message.includes('\n'), name).toBe(false);
    }
  });

  it('missing file, folder, unknown extension, empty text, bad UTF-8', async () => {
    const missing = join(work, 'nope.tsv');
    let e = await failure(readPrompts(missing));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toBe(`${missing}: file not found`);
    e = await failure(readPrompts(join(work, 'nope.parquet')));
    expect(e.message).toBe(`${join(work, 'nope.parquet')}: file not found`);
    const dir = join(work, 'dir.parquet');
    rmSync(dir, { force: true, recursive: true });
    (await import('node:fs')).mkdirSync(dir);
    expect((await failure(readPrompts(dir))).message).toBe(`${dir}: is a folder, not a prompt list`);
    e = await failure(readPrompts(join(work, 'prompts.xlsx')));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(/unknown prompt-list format "\.xlsx"; use \.tsv, .*\.txt$/);
    const empty = join(work, 'empty.tsv');
    writeFileSync(empty, '\n\n');
    expect((await failure(readPrompts(empty))).message).toMatch(new RegExp(`^${empty}: the file is empty`));
    const latin1 = join(work, 'latin1.txt');
    writeFileSync(latin1, Uint8Array.from([0x53, 0x61, 0x6c, 0x76, 0x61, 0x64, 0x6f, 0x72, 0x20, 0x44, 0x61, 0x6c, 0xed]));
    e = await failure(readPrompts(latin1));
    expect(e).toBeInstanceOf(FileFormatError);
    expect(e.message).toBe(`${latin1}: is not UTF-8 text (save it as UTF-8)`);
    // the format option overrides the extension
    const tsvAsTxt = join(work, 'list.prompts');
    writeFileSync(tsvAsTxt, 'a\nb\n');
    expect((await readPrompts(tsvAsTxt, { format: 'txt' })).map((r) => r.prompt)).toEqual(['a', 'b']);
  });
});

describe('hub datasets: which files hold the prompts', () => {
  it('parquet shards of one split (train first), in shard order; the convert layout; a single TSV', () => {
    expect(chooseDataFiles(['.gitattributes', 'README.md', 'data/train-00000-of-00001.parquet'])).toEqual({ files: ['data/train-00000-of-00001.parquet'], split: 'train', format: 'parquet' });
    const shards = ['data/test-00000-of-00001-9f8e.parquet', 'data/train-00001-of-00002-5a1b.parquet', 'data/train-00000-of-00002-5a1b.parquet'];
    expect(chooseDataFiles(shards)).toEqual({ files: ['data/train-00000-of-00002-5a1b.parquet', 'data/train-00001-of-00002-5a1b.parquet'], split: 'train', format: 'parquet' });
    expect(chooseDataFiles(['data/test-00000-of-00001.parquet', 'README.md'])!.split).toBe('test');
    expect(chooseDataFiles(['data/train_sft-00000-of-00001.parquet', 'data/test_sft-00000-of-00001.parquet'])!.files).toEqual(['data/train_sft-00000-of-00001.parquet']);
    expect(chooseDataFiles(['default/train/0010.parquet', 'default/train/0002.parquet', 'default/test/0000.parquet'])).toEqual({ files: ['default/train/0002.parquet', 'default/train/0010.parquet'], split: 'train', format: 'parquet' });
    expect(chooseDataFiles(['other/train/0000.parquet', 'default/train/0000.parquet'])!.files).toEqual(['default/train/0000.parquet']);
    expect(chooseDataFiles(['PartiPrompts.tsv', 'README.md', 'LICENSE.txt'])).toEqual({ files: ['PartiPrompts.tsv'], split: 'PartiPrompts', format: 'tsv' });
    // one table in two formats: the better format
    expect(chooseDataFiles(['prompts.csv', 'prompts.tsv'])!.files).toEqual(['prompts.tsv']);
    expect(chooseDataFiles(['data/train.jsonl', 'data/validation.jsonl'])!.files).toEqual(['data/train.jsonl']);
  });
  it('none (a loading script, hidden folders, .txt) → null; unrelated tables without split names → one clear error', () => {
    expect(chooseDataFiles(['parti.py', 'README.md', 'notes.txt', '.cache/train.parquet'])).toBeNull();
    expect(() => chooseDataFiles(['prompts_a.csv', 'prompts_b.csv'], 'org/two')).toThrow(
      'org/two has several data files and none is a train/test split (prompts_a.csv, prompts_b.csv); download it (fewstep download --repo-type dataset) and pass one file',
    );
  });
  it('a spec is a hub dataset when it is org/name[@rev] and not a file on disk', async () => {
    expect(await isHubDatasetSpec('nateraw/parti-prompts')).toBe(true);
    expect(await isHubDatasetSpec('nateraw/parti-prompts@refs/convert/parquet')).toBe(true);
    expect(await isHubDatasetSpec('prompts.tsv')).toBe(false);
    expect(await isHubDatasetSpec('data/prompts.tsv')).toBe(false);
    expect(await isHubDatasetSpec('./a/b')).toBe(false);
    expect(await isHubDatasetSpec(parti)).toBe(false);
  });
});

describe('hub datasets through the fake hub, then offline', () => {
  let hub: FakeHub, converted: FakeHub, proxy: http.Server;
  let restore: () => void;
  const cache = join(work, 'hf-cache');
  const partiParquet = (rows: [number, number]) => {
    const cols = tsvColumns();
    return Buffer.from(parquetWriteBuffer({ columnData: Object.entries(cols).map(([name, data]) => ({ name, data: data.slice(...rows), type: 'STRING' })) }));
  };
  beforeAll(async () => {
    restore = isolateHfEnv();
    process.env['HF_HUB_CACHE'] = cache;
    process.env['HF_HOME'] = join(work, 'hf-home');
    const tsv = readFileSync(parti);
    hub = await startFakeHub([
      // datasets' push_to_hub layout, two shards of the train split
      {
        id: 'org/parti-prompts', type: 'dataset', commit: 'a'.repeat(40),
        files: [
          { path: 'README.md', content: Buffer.from('---\nconfigs:\n- config_name: default\n---\n') },
          { path: 'data/train-00000-of-00002.parquet', content: partiParquet([0, 1000]), lfs: true },
          { path: 'data/train-00001-of-00002.parquet', content: partiParquet([1000, 1632]), lfs: true },
        ],
      },
      // the TSV as the repo holds it, with a tag
      { id: 'org/parti-tsv', type: 'dataset', commit: 'b'.repeat(40), branches: { main: 'b'.repeat(40), v1: 'c'.repeat(40) }, files: [{ path: 'PartiPrompts.tsv', content: tsv }, { path: 'README.md', content: Buffer.from('#\n') }] },
      // a table without a Prompt column
      { id: 'org/captions', type: 'dataset', commit: 'd'.repeat(40), files: [{ path: 'data/train-00000-of-00001.parquet', content: Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'text', data: ['a'], type: 'STRING' }, { name: 'label', data: ['x'], type: 'STRING' }] })), lfs: true }] },
      // a loading script only: its prompts are in the hub's parquet conversion (served by `converted`)
      { id: 'org/scripted', type: 'dataset', commit: 'e'.repeat(40), files: [{ path: 'scripted.py', content: Buffer.from('import datasets\n') }, { path: 'README.md', content: Buffer.from('#\n') }] },
      // a model repo of the same name must not be taken for the dataset
      { id: 'org/model-only', commit: 'f'.repeat(40), files: [{ path: 'data/train-00000-of-00001.parquet', content: partiParquet([0, 10]) }] },
    ]);
    converted = await startFakeHub([
      { id: 'org/scripted', type: 'dataset', commit: '1'.repeat(40), branches: { 'refs/convert/parquet': '1'.repeat(40) }, files: [{ path: 'default/train/0000.parquet', content: partiParquet([0, 1632]), lfs: true }] },
    ]);
    // One endpoint for both: requests for the conversion's revision (or its commit) go to `converted`.
    proxy = http.createServer((req, res) => {
      const url = req.url ?? '/';
      const target = /refs%2Fconvert%2Fparquet|1{40}/.test(url) ? converted.url : hub.url;
      const fwd = http.request(`${target}${url}`, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    proxy?.closeAllConnections();
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
    await hub?.close();
    await converted?.close();
    restore?.();
  });

  it('parquet shards of the train split = the TSV, rows numbered on across shards; in the HF cache as a dataset', async () => {
    const tsvRows = await readPrompts(parti);
    const notes: string[] = [];
    const events: string[] = [];
    const src = await readPromptSource('org/parti-prompts', { note: (s) => notes.push(s), onProgress: (e) => void (e.status === 'done' && events.push(e.file)) });
    expect(src.rows).toEqual(tsvRows);
    expect(src.files).toEqual(['org/parti-prompts@main:data/train-00000-of-00002.parquet', 'org/parti-prompts@main:data/train-00001-of-00002.parquet']);
    expect(src.dataset).toEqual({ repo: 'org/parti-prompts', revision: 'main', split: 'train' });
    expect(notes).toEqual(['prompts: org/parti-prompts@main: 2 parquet files (data/train-00000-of-00002.parquet …), split train']);
    expect(events.sort()).toEqual(['data/train-00000-of-00002.parquet', 'data/train-00001-of-00002.parquet']);
    expect(existsSync(join(cache, 'datasets--org--parti-prompts', 'snapshots', 'a'.repeat(40), 'data', 'train-00001-of-00002.parquet'))).toBe(true);
    // README.md is not downloaded
    expect(hub.requests.some((r) => r.path.endsWith('README.md'))).toBe(false);
  });

  it('a TSV repo at a tag; the parquet conversion when the repo has no data file', async () => {
    const tsvRows = await readPrompts(parti);
    const tag = await readPromptSource('org/parti-tsv@v1');
    expect(tag.rows).toEqual(tsvRows);
    expect(tag.files).toEqual(['org/parti-tsv@v1:PartiPrompts.tsv']);
    expect(existsSync(join(cache, 'datasets--org--parti-tsv', 'snapshots', 'c'.repeat(40), 'PartiPrompts.tsv'))).toBe(true);
    const conv = await readPromptSource('org/scripted');
    expect(conv.rows).toEqual(tsvRows);
    expect(conv.dataset).toEqual({ repo: 'org/scripted', revision: 'refs/convert/parquet', split: 'train' });
    expect(converted.requests.length).toBeGreaterThan(0);
  });

  it('errors: no Prompt column names the repo file and its columns; a missing dataset; a model repo is not a dataset', async () => {
    let e = await failure(readPromptSource('org/captions'));
    expect(e).toBeInstanceOf(FileFormatError);
    expect(e.message).toBe('org/captions@main:data/train-00000-of-00001.parquet: no "Prompt" column (columns: "text", "label"); expected Prompt and optionally Category, Challenge, Note');
    e = await failure(readPromptSource('org/nothing-here'));
    expect(e).toBeInstanceOf(RepoNotFoundError);
    e = await failure(readPromptSource('org/model-only'));
    expect(e).toBeInstanceOf(RepoNotFoundError);
  });

  it('offline (HF_HUB_OFFLINE=1): the same rows from the cache, no request; a dataset never fetched is one clear error', async () => {
    const online = { shards: await readPromptSource('org/parti-prompts'), tsv: await readPromptSource('org/parti-tsv@v1'), conv: await readPromptSource('org/scripted') };
    const before = hub.requests.length + converted.requests.length;
    process.env['HF_HUB_OFFLINE'] = '1';
    try {
      expect(await readPromptSource('org/parti-prompts')).toEqual(online.shards);
      expect(await readPromptSource('org/parti-tsv@v1')).toEqual(online.tsv);
      expect(await readPromptSource('org/scripted')).toEqual(online.conv);
      expect(hub.requests.length + converted.requests.length).toBe(before);
      const e = await failure(readPromptSource('org/parti-tsv'));
      expect(e).toBeInstanceOf(OfflineMissingError);
      expect(e.message).toMatch(/^Offline mode \(HF_HUB_OFFLINE=1\): org\/parti-tsv@main is not in the cache/);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }
  });
});
