// The CLI's clean edges: text from files printed with control characters escaped (tensor names, metadata,
// pickle globals in refusals, hub file names in progress lines), a closed stdout pipe (`| head -1`) ending
// quietly, destinations checked before any work with errors naming the user's path (never a temp file), and
// temp files of killed runs removed by the next run into the same folder (never a live process' file).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeSafetensors } from '@fewstep/tensor';
import { createProgressPrinter, type DownloadProgressEvent } from '@fewstep/weights-tools';
import { main } from '../../packages/cli/src/main';
import { terminalSafe, terminalSafeJson } from '../../packages/cli/src/terminal';
import { partialPath, removeStaleTemps, writeAtomic } from '../../packages/cli/src/write_atomic';
import { Pickle, checkpoint } from './hostile-files';

const work = mkdtempSync(join(tmpdir(), 'fewstep-edges-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const repoRoot = new URL('../../', import.meta.url).pathname;
const cliBin = join(repoRoot, 'packages/cli/bin/fewstep.mjs');
const built = existsSync(join(repoRoot, 'packages/cli/dist/main.js'));
const isRoot = process.getuid?.() === 0;

const capture = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), isTTY: false } };
};
/** No raw control character but the line breaks. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;

/** The pid of a process that has exited (so no process runs with it, unless the system reuses it at once). */
const deadPid = () => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());

const EVIL = 'evil\x1b[2J\x1b[31mname\rOVERWRITE\u202e';

function evilSafetensors(path: string, count = 3): string {
  const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = Object.create(null);
  for (let i = 0; i < count; i++) t[`layer.${i}.weight`] = { dtype: 'F32', shape: [2], data: new Float32Array([i, -i]) };
  t[EVIL] = { dtype: 'F32', shape: [1], data: new Float32Array([1]) };
  writeFileSync(path, encodeSafetensors(t, { 'title\x1b]0;pwned\x07': 'v\x9b2J' }));
  return path;
}

describe('terminalSafe', () => {
  it('shows C0, DEL, C1, line separators and bidi overrides escaped; keeps text and (when asked) line breaks', () => {
    expect(terminalSafe('plain — ünïcode 日本 \\x1b stays')).toBe('plain — ünïcode 日本 \\x1b stays');
    expect(terminalSafe('a\x1b[2Jb\rc\td\x00e\x7ff\x9bg\u2028h\u202ei\u2066j')).toBe('a\\x1b[2Jb\\x0dc\\x09d\\x00e\\x7ff\\x9bg\\u2028h\\u202ei\\u2066j');
    expect(terminalSafe('one\ntwo\r')).toBe('one\\x0atwo\\x0d');
    expect(terminalSafe('one\ntwo\r', { keepNewlines: true })).toBe('one\ntwo\\x0d');
    const j = terminalSafeJson({ k: 'a\x1b\x9b\u202e' });
    expect(j).toBe('{"k":"a\\u001b\\u009b\\u202e"}');
    expect(JSON.parse(j)).toEqual({ k: 'a\x1b\x9b\u202e' });
  });

  it('hub file names in download progress lines and bars', () => {
    let out = '';
    const ev = (status: DownloadProgressEvent['status'], loaded: number): DownloadProgressEvent => ({ type: 'download', status, repo: 'a/b', file: 'x\x1b[2J.bin', loaded, total: 10, ...(status === 'done' ? { cached: false } : {}) });
    const tty = createProgressPrinter((s) => void (out += s), { isTTY: true, now: () => 1e6 });
    tty.onProgress(ev('progress', 5));
    tty.onProgress(ev('done', 10));
    tty.finish();
    const plain = createProgressPrinter((s) => void (out += s), { isTTY: false });
    plain.onProgress(ev('done', 10));
    expect(out).toContain('x\\x1b[2J.bin');
    expect(out).not.toContain('x\x1b');
  });
});

describe('text from files is printed escaped', () => {
  it('inspect: tensor names and metadata in the table and the JSON', async () => {
    const f = evilSafetensors(join(work, 'evil-names.safetensors'));
    const c = capture();
    expect(await main(['inspect', f], c.io)).toBe(0);
    const text = c.out.join('');
    expect(text).not.toMatch(RAW_CONTROL);
    expect(text).toContain('evil\\x1b[2J\\x1b[31mname\\x0dOVERWRITE\\u202e  F32    [1]\n');
    expect(text).toContain('metadata: title\\x1b]0;pwned\\x07=v\\x9b2J\n');
    const j = capture();
    expect(await main(['inspect', f, '--json'], j.io)).toBe(0);
    const json = j.out.join('');
    expect(json).not.toMatch(RAW_CONTROL);
    const parsed = JSON.parse(json) as { tensors: { name: string }[]; metadata: Record<string, string> };
    expect(parsed.tensors.map((t) => t.name)).toContain(EVIL); // the JSON still carries the exact names
    expect(parsed.metadata).toEqual({ 'title\x1b]0;pwned\x07': 'v\x9b2J' });
  });

  it('a refused pickle global with escape sequences and a carriage return: one escaped line', async () => {
    const p = new Pickle().global('os\x1b[2J', 'system\r\x1b[1Aall good').stop().bytes();
    const f = join(work, 'evil-global.bin');
    writeFileSync(f, checkpoint(p, {}, 'evil'));
    for (const cmd of [['inspect', f], ['convert', f, join(work, 'evil-global.safetensors')]]) {
      const c = capture();
      expect(await main(cmd, c.io)).toBe(1);
      const err = c.err.join('');
      expect(err.split('\n')).toHaveLength(2); // one line
      expect(err).not.toMatch(RAW_CONTROL);
      expect(err).toContain(`fewstep ${cmd[0]}: ${f}: unsafe pickle refused: global "os`);
      expect(err).toContain('nothing was executed\n');
    }
    expect(existsSync(join(work, 'evil-global.safetensors'))).toBe(false);
  });

  it('an error message quoting a tensor name with control characters (convert through main)', async () => {
    const c = capture();
    expect(await main(['inspect', join(work, 'no\x1b[2Jsuch.safetensors')], c.io)).toBe(1);
    expect(c.err.join('')).not.toMatch(RAW_CONTROL);
    expect(c.err.join('')).toContain('no\\x1b[2Jsuch.safetensors');
    const u = capture();
    expect(await main(['frob\x1b[2J'], u.io)).toBe(2);
    expect(u.err.join('')).toMatch(/^fewstep: unknown command "frob\\x1b\[2J"/);
  });
});

describe.skipIf(!built)('a closed stdout pipe', () => {
  it('`fewstep inspect big.safetensors | head -1` exits 0 without a word on stderr', async () => {
    const f = evilSafetensors(join(work, 'many.safetensors'), 30_000);
    for (const args of [['inspect', f], ['inspect', f, '--json']]) {
      const c = spawn(process.execPath, [cliBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(c);
      let err = '';
      c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      // Like head -1: read the first chunk, then close the pipe.
      c.stdout!.once('data', () => c.stdout!.destroy());
      const code = await new Promise<number | null>((r) => c.on('close', (code) => r(code)));
      expect({ code, err }).toEqual({ code: 0, err: '' });
    }
  });
});

describe('destinations are checked before any work; errors name the user\'s path', () => {
  const input = () => evilSafetensors(join(work, 'in.safetensors'));

  it('convert into a folder that does not exist, or that is a file', async () => {
    const out = join(work, 'nope', 'x.safetensors');
    let c = capture();
    expect(await main(['convert', input(), out], c.io)).toBe(2);
    expect(c.err.join('')).toBe(`fewstep convert: output ${out}: folder ${join(work, 'nope')} does not exist\n`);
    writeFileSync(join(work, 'afile'), '');
    c = capture();
    expect(await main(['convert', input(), join(work, 'afile', 'x.safetensors')], c.io)).toBe(2);
    expect(c.err.join('')).toBe(`fewstep convert: output ${join(work, 'afile', 'x.safetensors')}: ${join(work, 'afile')} is not a folder\n`);
    expect(existsSync(join(work, 'nope'))).toBe(false);
  });

  it.skipIf(isRoot)('convert into a folder without write permission', async () => {
    const ro = join(work, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    const c = capture();
    expect(await main(['convert', input(), join(ro, 'x.safetensors')], c.io)).toBe(2);
    expect(c.err.join('')).toBe(`fewstep convert: output ${join(ro, 'x.safetensors')}: folder ${ro} is not writable (EACCES)\n`);
    expect(readdirSync(ro)).toEqual([]);
  });

  it.skipIf(!existsSync('/sys/kernel'))('convert and generate into /sys (refused even to root): exit 2 before any work, no temp file named', async () => {
    let c = capture();
    expect(await main(['convert', input(), '/sys/x.safetensors'], c.io)).toBe(2);
    expect(c.err.join('')).toMatch(/^fewstep convert: output \/sys\/x\.safetensors: folder \/sys is not writable \((EACCES|EPERM|EROFS)\)\n$/);
    // generate checks its destinations before the model is even looked at (an offline cache without it).
    const env = { HF_HUB_OFFLINE: process.env['HF_HUB_OFFLINE'], HF_HUB_CACHE: process.env['HF_HUB_CACHE'] };
    process.env['HF_HUB_OFFLINE'] = '1';
    process.env['HF_HUB_CACHE'] = join(work, 'empty-cache');
    try {
      c = capture();
      expect(await main(['generate', 'cat', '--out-dir', '/sys/x'], c.io)).toBe(2);
      expect(c.err.join('')).toMatch(/^fewstep generate: --out-dir \/sys\/x: cannot create it \(\/sys is not writable: (EACCES|EPERM|EROFS)\)\n$/);
      c = capture();
      expect(await main(['generate', 'cat', '--out', '/sys/x.png'], c.io)).toBe(2);
      expect(c.err.join('')).toMatch(/^fewstep generate: --out \/sys\/x\.png: folder \/sys is not writable \((EACCES|EPERM|EROFS)\)\n$/);
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(c.err.join('')).not.toContain('.partial-');
  });

  it('a write that fails names the destination, not the temp file', async () => {
    const dir = join(work, 'wfail');
    mkdirSync(dir);
    mkdirSync(join(dir, 'x.png')); // rename onto a folder fails
    const e = await writeAtomic(join(dir, 'x.png'), 'bytes').catch((x: Error) => x);
    expect((e as Error).message).toMatch(new RegExp(`^${join(dir, 'x.png').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot write \\(E[A-Z]+\\)$`));
    expect((e as Error).message).not.toContain('.partial-');
    expect(readdirSync(dir)).toEqual(['x.png']);
  });
});

describe('temp files of killed runs', () => {
  it('the next write into the folder removes dead processes\' temp files, never a live process\' (writeAtomic, convert)', async () => {
    const dir = join(work, 'stale');
    mkdirSync(dir);
    const dead = deadPid();
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    children.push(sleeper);
    const live = sleeper.pid!;
    const names = {
      deadPng: `0000-a-cat.png.partial-${dead}`,
      deadLegacy: `.out.safetensors.${dead}-1712345678901.tmp`,
      deadOther: `other.safetensors.partial-${dead}`,
      livePng: `0001-a-dog.png.partial-${live}`,
      liveLegacy: `.big.safetensors.${live}-1712345678901.tmp`,
      user: 'notes.partial-draft',
      userNumbered: 'photo.partial-2', // pid 2 (kthreadd) is alive on Linux; either way a user's file of that name is rare
    };
    for (const n of Object.values(names)) writeFileSync(join(dir, n), 'x');
    const c = capture();
    expect(await main(['convert', evilSafetensors(join(work, 'in2.safetensors')), join(dir, 'out.safetensors')], c.io), c.err.join('')).toBe(0);
    const left = readdirSync(dir).sort();
    expect(left).not.toContain(names.deadPng);
    expect(left).not.toContain(names.deadLegacy);
    expect(left).not.toContain(names.deadOther);
    for (const n of [names.livePng, names.liveLegacy, names.user, 'out.safetensors']) expect(left).toContain(n);
    expect(left.filter((n) => n.endsWith(`.partial-${process.pid}`))).toEqual([]);

    // writeAtomic (generate, batch, run, report) follows the same rule, once per folder per process.
    const dir2 = join(work, 'stale2');
    mkdirSync(dir2);
    writeFileSync(join(dir2, `a.png.partial-${dead}`), 'x');
    writeFileSync(join(dir2, `b.png.partial-${live}`), 'x');
    await writeAtomic(join(dir2, 'c.png'), 'png');
    expect(readdirSync(dir2).sort()).toEqual(['b.png.partial-' + live, 'c.png'].sort());
    writeFileSync(join(dir2, `d.png.partial-${dead}`), 'x');
    expect(await removeStaleTemps(dir2)).toEqual([]); // already swept in this process
    expect(partialPath('/x/y.png')).toBe(`/x/y.png.partial-${process.pid}`);
  });

  it('generate removes them when it checks its destination, before any model is loaded (even if the run then fails)', async () => {
    const dir = join(work, 'gen-stale');
    mkdirSync(dir);
    const dead = deadPid();
    writeFileSync(join(dir, `0000-a-cat.png.partial-${dead}`), 'x');
    writeFileSync(join(dir, `one.png.partial-${dead}`), 'x');
    const env = { HF_HUB_OFFLINE: process.env['HF_HUB_OFFLINE'], HF_HUB_CACHE: process.env['HF_HUB_CACHE'] };
    process.env['HF_HUB_OFFLINE'] = '1';
    process.env['HF_HUB_CACHE'] = join(work, 'empty-cache');
    try {
      let c = capture();
      expect(await main(['generate', 'cat', '--out-dir', dir], c.io)).toBe(1); // the model is not in the (empty, offline) cache
      expect(readdirSync(dir)).toEqual([]);
      const dir2 = join(work, 'gen-stale2');
      mkdirSync(dir2);
      writeFileSync(join(dir2, `one.png.partial-${dead}`), 'x');
      c = capture();
      expect(await main(['generate', 'cat', '--out', join(dir2, 'one.png')], c.io)).toBe(1);
      expect(readdirSync(dir2)).toEqual([]);
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it.skipIf(!built)('a convert killed mid-write leaves <out>.partial-<pid>; the next convert into that folder removes it', async () => {
    const dir = join(work, 'killed');
    mkdirSync(dir);
    // ~48 MiB of F32 converted to F16 one tensor at a time: long enough to be caught writing.
    const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 48; i++) t[`w${i}`] = { dtype: 'F32', shape: [256, 1024], data: new Float32Array(256 * 1024).fill(i) };
    const big = join(work, 'big-in.safetensors');
    writeFileSync(big, encodeSafetensors(t));
    const out = join(dir, 'out.safetensors');
    let leftover: string | undefined;
    for (let attempt = 0; attempt < 5 && !leftover; attempt++) {
      const c = spawn(process.execPath, [cliBin, 'convert', big, out, '--dtype', 'f16', '--force'], { stdio: 'ignore' });
      children.push(c);
      const closed = new Promise<void>((r) => c.on('close', () => r()));
      const temp = `out.safetensors.partial-${c.pid}`;
      const t0 = Date.now();
      while (!existsSync(join(dir, temp)) && Date.now() - t0 < 20_000 && c.exitCode === null) await new Promise((r) => setTimeout(r, 2));
      c.kill('SIGKILL');
      await closed;
      if (existsSync(join(dir, temp))) leftover = temp;
    }
    expect(leftover).toBeDefined();
    expect(existsSync(out)).toBe(false); // never a partial output
    const c = capture();
    expect(await main(['convert', evilSafetensors(join(work, 'in3.safetensors')), join(dir, 'small.safetensors')], c.io), c.err.join('')).toBe(0);
    expect(readdirSync(dir)).toEqual(['small.safetensors']);
  });
});
