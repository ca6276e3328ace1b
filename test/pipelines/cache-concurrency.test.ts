// Several fewstep processes on one Hugging Face cache at once (the built CLI, packages/cli/bin/fewstep.mjs,
// against the fake hub): downloads of the same repo into an empty cache, in a loop, each transferring every
// blob once (the loser of the blob lock waits and reuses the winner's blob); a download waiting on a
// Python-style lock (fcntl.flock on .locks/<repo>/<etag>.lock, as huggingface_hub takes it) and reusing the
// blob Python wrote; and two `fewstep generate` on a cold cache, both succeeding with identical images.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolateHfEnv, sha256, startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { tinyModelHubFiles } from '../helpers/tiny_sdxs_model';

const repoRoot = new URL('../../', import.meta.url).pathname;
const cliBin = join(repoRoot, 'packages/cli/bin/fewstep.mjs');
const built = existsSync(join(repoRoot, 'packages/cli/dist/main.js')) && existsSync(join(repoRoot, 'weights-tools/dist/hub/lock.js'));
const hasFlock = spawnSync('flock', ['--version']).status === 0;
const hasPython = spawnSync('python3', ['-c', 'import fcntl']).status === 0;

const work = mkdtempSync(join(tmpdir(), 'fewstep-conc-'));
let hub: FakeHub;
let restoreEnv: (() => void) | undefined;

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
const big = bytes(9_793_292, 5);
const small = [Buffer.from('{"_class_name": "X"}\n'), Buffer.from('# big\n'), bytes(30_000, 6)];
const BIG_COMMIT = 'f'.repeat(40);
const TINY_COMMIT = 'd'.repeat(40);

beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  hub = await startFakeHub([
    {
      id: 'acme/big',
      commit: BIG_COMMIT,
      files: [
        { path: 'config.json', content: small[0]! },
        { path: 'README.md', content: small[1]! },
        { path: 'tokenizer/vocab.txt', content: small[2]! },
        { path: 'model.safetensors', content: big, lfs: true },
      ],
    },
    { id: 'org/tiny-sdxs', commit: TINY_COMMIT, files: tinyModelHubFiles() },
  ]);
});
afterAll(async () => {
  await hub?.close();
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The built CLI in a child process, with only the HF variables given (no user cache, token or endpoint). */
function fewstep(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<Result> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^HF_/.test(k)) base[k] = v;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [cliBin, ...args], { cwd: work, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const freshCache = (name: string) => {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  return { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(d, 'hub'), HF_HOME: join(d, 'home') };
};

describe.skipIf(!built)('processes sharing one cache', () => {
  it('two `fewstep download` of one repo into an empty cache, again and again: both succeed, each blob is transferred once', async () => {
    // The big file's body takes ~0.3 s, so the two processes overlap.
    hub.slow.set('model.safetensors', { chunk: 512 * 1024, delayMs: 15 });
    const t0 = Date.now();
    let trials = 0;
    for (; trials < 12 && Date.now() - t0 < 60_000; trials++) {
      hub.requests = [];
      const env = freshCache(`dl-${trials}`);
      const rs = await Promise.all([fewstep(['download', 'acme/big', '-q'], env), fewstep(['download', 'acme/big', '-q'], env)]);
      for (const r of rs) expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
      const snap = join(env.HF_HUB_CACHE, 'models--acme--big', 'snapshots', BIG_COMMIT);
      expect(rs.map((r) => r.stdout)).toEqual([`${snap}\n`, `${snap}\n`]);
      expect(readFileSync(join(snap, 'model.safetensors')).equals(big)).toBe(true);
      expect(readFileSync(join(snap, 'tokenizer/vocab.txt')).equals(small[2]!)).toBe(true);
      const blobs = readdirSync(join(env.HF_HUB_CACHE, 'models--acme--big', 'blobs'));
      expect(blobs.filter((b) => b.endsWith('.incomplete'))).toEqual([]);
      expect(blobs).toHaveLength(4);
      // The loser of each blob's lock found the blob in place: one transfer per file, from either process.
      expect(hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET')).toHaveLength(1);
      expect(hub.requests.filter((r) => r.server === 'hub' && r.method === 'GET' && r.path.includes('/resolve/'))).toHaveLength(3);
      // huggingface_hub's lock files, beside the repo folder.
      expect(existsSync(join(env.HF_HUB_CACHE, '.locks', 'models--acme--big', `${sha256(big)}.lock`))).toBe(hasFlock);
    }
    expect(trials).toBeGreaterThanOrEqual(3);
  });

  it.skipIf(!hasFlock || !hasPython)('a download waits for the lock Python (huggingface_hub) holds on a blob, then reuses the blob Python wrote', async () => {
    hub.slow.clear();
    hub.requests = [];
    const env = freshCache('py');
    const repo = join(env.HF_HUB_CACHE, 'models--acme--big');
    const lock = join(env.HF_HUB_CACHE, '.locks', 'models--acme--big', `${sha256(big)}.lock`);
    mkdirSync(join(lock, '..'), { recursive: true });
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    writeFileSync(join(work, 'big.bin'), big);
    // What huggingface_hub does for this blob: filelock (flock LOCK_EX) on the lock file, the bytes written, the
    // blob renamed into place, the lock released (the lock file stays).
    const py = `
import fcntl, os, shutil, sys, time
lock, src, blob = sys.argv[1:4]
fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(1.5)
shutil.copyfile(src, blob + ".incomplete")
os.replace(blob + ".incomplete", blob)
fcntl.flock(fd, fcntl.LOCK_UN)
os.close(fd)`;
    const p = spawn('python3', ['-c', py, lock, join(work, 'big.bin'), join(repo, 'blobs', sha256(big))], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => p.stdout.once('data', () => r()));
    const t0 = Date.now();
    const r = await fewstep(['download', 'acme/big', '-q', '--include', 'model.safetensors'], env);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(Date.now() - t0).toBeGreaterThan(700); // it waited for Python
    expect(readFileSync(join(repo, 'snapshots', BIG_COMMIT, 'model.safetensors')).equals(big)).toBe(true);
    expect(hub.count('cdn', 'GET')).toBe(0); // Python's blob was reused, not downloaded again
  });

  it('two `fewstep generate` started together on a cold cache both succeed, with identical images', async () => {
    hub.slow.clear();
    const env = freshCache('gen');
    const args = (out: string) => ['generate', 'a lighthouse', '--model', 'org/tiny-sdxs', '--seed', '3', '--width', '64', '--height', '64', '--out', join(work, out), '--quiet'];
    const rs = await Promise.all([fewstep(args('gen-a.png'), env, 170_000), fewstep(args('gen-b.png'), env, 170_000)]);
    for (const r of rs) expect(r.code, r.stderr).toBe(0);
    const a = readFileSync(join(work, 'gen-a.png'));
    const b = readFileSync(join(work, 'gen-b.png'));
    expect(a.length).toBeGreaterThan(1000);
    // The PNGs record the same parameters; the bytes are the same image.
    expect(a.equals(b)).toBe(true);
    const blobs = readdirSync(join(env.HF_HUB_CACHE, 'models--org--tiny-sdxs', 'blobs'));
    expect(blobs.filter((x) => x.endsWith('.incomplete'))).toEqual([]);
  }, 180_000);
});
