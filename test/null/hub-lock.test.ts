// The per-blob download lock (weights-tools/src/hub/lock.ts): both ways of holding it ('flock' through
// util-linux's flock(1), 'pidfile' elsewhere), in one process and across real processes, stale pid files,
// cancellation, and the flock's exclusion of a Python-style fcntl.flock on the same file.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError } from '@fewstep/tensor';
import { acquireLock, defaultLockMode, isProcessAlive, type LockMode } from '@fewstep/weights-tools';

const work = mkdtempSync(join(tmpdir(), 'fewstep-lock-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hasFlock = spawnSync('flock', ['--version']).status === 0;
const hasPython = spawnSync('python3', ['-c', 'import fcntl']).status === 0;
const lockDist = new URL('../../weights-tools/dist/hub/lock.js', import.meta.url).pathname;
const modes: LockMode[] = hasFlock ? ['flock', 'pidfile'] : ['pidfile'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let n = 0;
const lockPath = () => join(work, `.locks/models--a--b/${'0'.repeat(63)}${n++ % 10}.lock`);

/** A child process that, at time `at` (all of them together), takes the lock, logs "<tag> in", holds it `holdMs`, logs "<tag> out" and releases. */
function holder(path: string, mode: LockMode, log: string, tag: string, holdMs: number, at: number): Promise<number | null> {
  const script = `
    import { appendFileSync } from 'node:fs';
    const { acquireLock } = await import(${JSON.stringify(lockDist)});
    await new Promise((r) => setTimeout(r, Math.max(0, ${at} - Date.now())));
    const lock = await acquireLock(${JSON.stringify(path)}, { mode: ${JSON.stringify(mode)} });
    appendFileSync(${JSON.stringify(log)}, '${tag} in\\n');
    await new Promise((r) => setTimeout(r, ${holdMs}));
    appendFileSync(${JSON.stringify(log)}, '${tag} out\\n');
    await lock.release();`;
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    c.on('close', (code) => resolve(code));
  });
}

describe('download lock', () => {
  it('the default is flock where util-linux has it', async () => {
    expect(await defaultLockMode()).toBe(hasFlock ? 'flock' : 'pidfile');
    expect(isProcessAlive(process.pid)).toBe(true);
    expect(isProcessAlive(2 ** 22 + 12345)).toBe(false);
  });

  for (const mode of modes) {
    it(`${mode}: a second holder waits until the first releases; abort stops the wait`, async () => {
      const p = lockPath();
      const a = await acquireLock(p, { mode });
      expect(a.mode).toBe(mode);
      let waited = false;
      let got = false;
      const second = acquireLock(p, { mode, onWait: () => (waited = true) }).then((l) => {
        got = true;
        return l;
      });
      await sleep(400);
      expect(got).toBe(false);
      expect(waited).toBe(true);
      await a.release();
      const b = await second;
      expect(got).toBe(true);
      // A third call, cancelled while it waits: an AbortError at once, and the lock stays usable.
      const ac = new AbortController();
      const third = acquireLock(p, { mode, signal: ac.signal });
      await sleep(100);
      const t0 = Date.now();
      ac.abort();
      await expect(third).rejects.toBeInstanceOf(AbortError);
      expect(Date.now() - t0).toBeLessThan(500);
      await b.release();
      await b.release(); // idempotent
      const c = await acquireLock(p, { mode });
      await c.release();
      // flock never deletes the lock file (as Python's filelock); the pid file is removed on release.
      expect(existsSync(p)).toBe(mode === 'flock');
    });

    it(`${mode}: real processes take turns (no two inside at once), ${hasFlock ? '' : '(pid file) '}in a loop`, async () => {
      const t0 = Date.now();
      for (let round = 0; round < 4 && Date.now() - t0 < 15_000; round++) {
        const p = lockPath();
        const log = join(work, `turns-${mode}-${round}.log`);
        writeFileSync(log, '');
        const at = Date.now() + 1500;
        const codes = await Promise.all(['a', 'b', 'c'].map((tag) => holder(p, mode, log, tag, 40, at)));
        expect(codes).toEqual([0, 0, 0]);
        const lines = readFileSync(log, 'utf8').trim().split('\n');
        expect(lines).toHaveLength(6);
        for (let i = 0; i < 6; i += 2) {
          expect(lines[i]!.endsWith(' in')).toBe(true);
          expect(lines[i + 1]).toBe(lines[i]!.replace(' in', ' out'));
        }
      }
    });
  }

  it('pidfile: a dead holder\'s lock is taken over, a live one\'s is not, an old empty file (Python\'s leftover) is one', async () => {
    const p = lockPath();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(join(p, '..', 'x'), ''); // makes the folder
    writeFileSync(p, `fewstep ${dead} ${hostname()}\n`);
    const l1 = await acquireLock(p, { mode: 'pidfile' });
    expect(readFileSync(p, 'utf8')).toBe(`fewstep ${process.pid} ${hostname()}\n`);
    await l1.release();
    expect(existsSync(p)).toBe(false);

    // A live process of this host (us, as another holder would be): waited on.
    writeFileSync(p, `fewstep ${process.pid} ${hostname()}\n`);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    await expect(acquireLock(p, { mode: 'pidfile', signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    expect(readFileSync(p, 'utf8')).toBe(`fewstep ${process.pid} ${hostname()}\n`);
    rmSync(p);

    // An empty file: fresh = maybe being created, waited on; old = a leftover, taken over.
    writeFileSync(p, '');
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 300);
    await expect(acquireLock(p, { mode: 'pidfile', signal: ac2.signal })).rejects.toBeInstanceOf(AbortError);
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(p, old, old);
    const l2 = await acquireLock(p, { mode: 'pidfile' });
    await l2.release();
  });

  it.skipIf(!hasFlock || !hasPython)('flock: excludes (and is excluded by) a Python fcntl.flock on the same file, as huggingface_hub takes it', async () => {
    const p = lockPath();
    await acquireLock(p, { mode: 'flock' }).then((l) => l.release()); // creates the folder and file
    // Python: the same call filelock's UnixFileLock makes (open O_RDWR|O_TRUNC, flock LOCK_EX|LOCK_NB).
    const py = `
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy", flush=True); sys.exit(0)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
fcntl.flock(fd, fcntl.LOCK_UN)
print("released", flush=True)`;
    const runPy = (holdS: number) => {
      const c = spawn('python3', ['-c', py, p, String(holdS)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      return { out: () => out, done: new Promise<void>((r) => c.on('close', () => r())) };
    };
    // fewstep holds → Python finds it busy.
    const ours = await acquireLock(p, { mode: 'flock' });
    let r = runPy(0);
    await r.done;
    expect(r.out().trim()).toBe('busy');
    await ours.release();
    // Python holds → fewstep waits until Python lets go.
    r = runPy(0.6);
    while (!r.out().includes('held')) await sleep(20);
    const t0 = Date.now();
    const l = await acquireLock(p, { mode: 'flock' });
    expect(Date.now() - t0).toBeGreaterThan(300);
    // Python prints "released" after it unlocks, so the line may arrive after we hold the lock: wait for its exit.
    await r.done;
    expect(r.out()).toContain('released');
    await l.release();
  });
});
