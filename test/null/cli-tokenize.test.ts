// `fewstep tokenize` through main() with a capturing io (no subprocess).
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../packages/cli/src/main';

const SRC = new URL('../fixtures/clip-tokenizer/', import.meta.url).pathname;
// An SD2-style tokenizer folder: vocab + merges next to the sd2 configs (pad token '!' = id 0).
const dir = mkdtempSync(join(tmpdir(), 'fewstep-tok-'));
for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(SRC, f), join(dir, f));
for (const f of ['tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(join(SRC, 'sd2', f), join(dir, f));
const empty = mkdtempSync(join(tmpdir(), 'fewstep-empty-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
});

const golden = JSON.parse(readFileSync(new URL('../fixtures/golden/tokenizer_clip/tokenizer_clip.json', import.meta.url), 'utf8')) as {
  cases: { prompt: string; basic: { sd2: { input_ids: number[] } } }[];
};
const want = (prompt: string) => golden.cases.find((c) => c.prompt === prompt)!.basic.sd2.input_ids;

async function run(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), isTTY: false });
  return { code, stdout, stderr };
}

describe('fewstep tokenize', () => {
  it('--json prints one 77-id array per prompt, in order', async () => {
    const p1 = 'a photo of a cat';
    const p2 = 'wow!!! what?!?! ... --- *** ((masterpiece)), [best quality], {detailed} <<<>>> ~~~ ___';
    const r = await run(['tokenize', '--tokenizer', dir, '--json', p1, p2]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ids = JSON.parse(r.stdout) as number[][];
    expect(ids).toEqual([want(p1), want(p2)]);
    expect(ids.every((a) => a.length === 77)).toBe(true);
  });

  it('accepts a prompt starting with "-" after --', async () => {
    const r = await run(['tokenize', '--tokenizer', dir, '--json', '--', '-a cat']);
    expect(r.code).toBe(0);
    const ids = JSON.parse(r.stdout) as number[][];
    expect(ids).toHaveLength(1);
    expect(ids[0]!.slice(0, 5)).toEqual([49406, 268, 320, 2368, 49407]);
    expect(ids[0]!.slice(5)).toEqual(new Array(72).fill(0));
  });

  it('prints a readable listing without --json', async () => {
    const r = await run(['tokenize', '--tokenizer', dir, 'a cat!']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'prompt 1: "a cat!"',
        '  5 of 77 positions used',
        '   0  49406  <|startoftext|>',
        '   1    320  a</w>',
        '   2   2368  cat</w>',
        '   3      0  !',
        '   4  49407  <|endoftext|>',
        '  5..76: padding with 0 (!)',
        '',
      ].join('\n'),
    );
  });

  it('missing tokenizer folder: one line naming the path, exit 2 (a bad --tokenizer)', async () => {
    const missing = join(empty, 'nope');
    const r = await run(['tokenize', '--tokenizer', missing, 'a cat']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`fewstep tokenize: ${missing}: tokenizer folder not found\n`);
  });

  it('folder without vocab/merges: one line naming the path, exit 1', async () => {
    const r = await run(['tokenize', '--tokenizer', empty, 'a cat']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`fewstep tokenize: ${empty}: not a CLIP tokenizer folder (missing vocab.json and merges.txt)\n`);
  });

  it('no prompt: usage error, exit 2', async () => {
    const r = await run(['tokenize', '--tokenizer', dir]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('fewstep tokenize: give at least one prompt (put -- before a prompt that starts with "-")\n');
  });

  it('no --tokenizer: usage error, exit 2', async () => {
    const r = await run(['tokenize', 'a cat']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('fewstep tokenize: --tokenizer <dir> is required\n');
  });
});
