/**
 * An exclusive lock between processes on one blob of the cache, at huggingface_hub's own path:
 *
 *   $HF_HUB_CACHE/.locks/<repo folder>/<blob name>.lock      (e.g. .locks/models--org--name/<sha256>.lock)
 *
 * huggingface_hub takes that lock (filelock.FileLock → fcntl.flock(LOCK_EX) on Linux and macOS) around the
 * download of a blob into `blobs/<name>.incomplete` and its rename into place, and whoever gets it second finds
 * the blob there and reuses it. fewstep does the same around the same steps, so two fewstep processes never
 * write the same `.incomplete` at once, and — where the lock is a real flock — neither do fewstep and Python.
 *
 * Node has no flock(2) in its standard library, so there are two ways of holding the lock:
 *
 *  - 'flock' (used when util-linux's `flock` command exists: Linux): a small helper process,
 *    `flock -x <lock> sh -c 'echo locked; exec cat >/dev/null'`, takes flock(2) on the lock file and holds it
 *    while its stdin is open. Releasing closes stdin; a process that dies (even by SIGKILL) closes it too, so the
 *    kernel drops the lock — there are no stale locks. This is exactly the lock Python's filelock takes on the
 *    same file (flock on the same path excludes across processes whatever opened it), so fewstep and
 *    huggingface_hub exclude each other both ways. Like filelock on Unix, the lock file is never deleted
 *    (deleting a flocked file lets a third process lock a new file of the same name).
 *
 *  - 'pidfile' (elsewhere: macOS without util-linux, Windows; or `mode: 'pidfile'`): the lock file is created
 *    exclusively (`open(…, 'wx')`) holding "fewstep <pid> <host>", and deleted on release. A lock of this host
 *    whose pid no longer runs (process.kill(pid, 0) → ESRCH) is stale and taken over. LIMITATION: this does not
 *    exclude Python's filelock, which flocks the file without looking at its content (and truncates it);
 *    and since filelock leaves an empty lock file behind after every download, an empty or foreign lock file
 *    older than FOREIGN_GRACE_MS is treated as a leftover, not as a lock. Among fewstep processes it is exact,
 *    except that a pid reused by an unrelated process makes a dead holder's lock look alive (the waiter then
 *    waits until that process ends or is cancelled).
 *
 * Waiting is unbounded (like huggingface_hub) but cancellable through `signal`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { FileFormatError, throwIfAborted } from '@fewstep/tensor';

export type LockMode = 'flock' | 'pidfile';

export interface HeldLock {
  readonly path: string;
  readonly mode: LockMode;
  /** Releases the lock (idempotent). */
  release(): Promise<void>;
}

export interface LockOptions {
  /** Cancels the wait: rejects with the signal's AbortError. */
  signal?: AbortSignal | undefined;
  /** Called once when the lock is held by someone else and the call starts waiting. */
  onWait?: (() => void) | undefined;
  /** Force one way of locking (tests); default: 'flock' where the command exists, else 'pidfile'. */
  mode?: LockMode | undefined;
}

/** An empty or foreign lock file younger than this may be one being created; older, it is a leftover. */
const FOREIGN_GRACE_MS = 10_000;

/** undefined: not probed yet; false: no `flock` command on this machine. */
let flockAvailable: boolean | undefined;

/** True when a process with this pid exists (EPERM: it does, as another user). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const lockError = (path: string, e: unknown) => new FileFormatError(path, `cannot create the download lock (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'file_format', { cause: e });

/** Takes the exclusive lock at `path` (creating its folder), waiting while another process holds it. */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<HeldLock> {
  throwIfAborted(opts.signal, `lock ${path}`);
  try {
    await mkdir(dirname(path), { recursive: true });
  } catch (e) {
    throw lockError(path, e);
  }
  const mode = opts.mode ?? (flockAvailable === false ? 'pidfile' : 'flock');
  if (mode === 'flock') {
    const held = await flockLock(path, opts);
    if (held) {
      flockAvailable = true;
      return held;
    }
    if (opts.mode === 'flock') throw lockError(path, new Error('no flock command'));
    flockAvailable = false;
  }
  return pidfileLock(path, opts);
}

/** Runs `fn` holding the lock at `path`; the lock is released however `fn` ends. */
export async function withLock<T>(path: string, opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(path, opts);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

// ---- flock(2) through util-linux's flock(1)

/** The lock through a helper process; undefined when there is no `flock` command. */
function flockLock(path: string, opts: LockOptions): Promise<HeldLock | undefined> {
  const { signal } = opts;
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      // -x: exclusive. The helper holds the flock until `cat` sees EOF on the stdin we hold open. Its own process
      // group: a Ctrl-C in the terminal reaches only us, and we release the lock after cleaning up.
      child = spawn('flock', ['-x', path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      return reject(lockError(path, e));
    }
    let settled = false;
    let out = '';
    let err = '';
    let exited = false;
    const exit = new Promise<void>((res) => child.once('close', () => res()));
    child.stdin!.on('error', () => {}); // EPIPE after the helper has gone
    const waitTimer = setTimeout(() => opts.onWait?.(), 200);
    const cleanup = () => {
      clearTimeout(waitTimer);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      child.stdin!.destroy();
      if (!exited) child.kill('SIGKILL');
      reject(e);
    };
    const onAbort = () => {
      try {
        throwIfAborted(signal, `waiting for the download lock ${path}`);
      } catch (e) {
        fail(e);
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.once('error', (e: NodeJS.ErrnoException) => {
      exited = true;
      if (settled) return;
      if (e.code === 'ENOENT') {
        settled = true;
        cleanup();
        return resolve(undefined);
      }
      fail(lockError(path, e));
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (err.length < 1000) err += d.toString();
    });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (settled || !out.includes('locked')) return;
      settled = true;
      cleanup();
      let released = false;
      resolve({
        path,
        mode: 'flock',
        async release() {
          if (released) return;
          released = true;
          child.stdin!.end();
          // The helper exits as soon as cat sees EOF; the kernel drops the flock with its file descriptor.
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exit;
          clearTimeout(t);
        },
      });
    });
    child.once('exit', (code) => {
      exited = true;
      if (settled) return;
      const msg = err.trim().split('\n')[0] ?? '';
      fail(lockError(path, new Error(`flock exited with ${code}${msg ? `: ${msg}` : ''}`)));
    });
  });
}

// ---- exclusive-create pid file

const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      try {
        throwIfAborted(signal, 'waiting for a download lock');
      } catch (e) {
        reject(e);
      }
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

const OWNER_RE = /^fewstep (\d+) (\S+)\n?$/;

async function pidfileLock(path: string, opts: LockOptions): Promise<HeldLock> {
  const me = `fewstep ${process.pid} ${hostname()}\n`;
  let waited = false;
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    throwIfAborted(opts.signal, `waiting for the download lock ${path}`);
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      let released = false;
      return {
        path,
        mode: 'pidfile',
        async release() {
          if (released) return;
          released = true;
          // Only our own file: a lock taken over (we were judged dead) is someone else's now.
          if ((await readFile(path, 'utf8').catch(() => undefined)) === me) await unlink(path).catch(() => undefined);
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw lockError(path, e);
    }
    if (await removeIfStale(path)) continue;
    if (!waited) {
      waited = true;
      opts.onWait?.();
    }
    await sleep(delay, opts.signal);
  }
}

/** Removes the lock file at `path` when its holder is gone (see the header); true when it did. */
async function removeIfStale(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return true; // released meanwhile: try again at once
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return true;
  const m = OWNER_RE.exec(text);
  let stale: boolean;
  if (m) stale = m[2] === hostname() && !isProcessAlive(Number(m[1]));
  else stale = Date.now() - st.mtimeMs > FOREIGN_GRACE_MS; // empty (Python's leftover) or foreign
  if (!stale) return false;
  // Move it aside and check that what moved is the file judged stale (same inode), not a lock taken meanwhile.
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch {
    return true; // gone already
  }
  const moved = await stat(aside).catch(() => undefined);
  if (moved && moved.ino !== st.ino) {
    // A fresh lock was moved by mistake: put it back unless another was created meanwhile.
    try {
      await link(aside, path).catch(() => undefined);
    } finally {
      await rm(aside, { force: true });
    }
    return false;
  }
  await rm(aside, { force: true });
  return true;
}

/** Which way `acquireLock` locks on this machine (probing once); for messages and tests. */
export async function defaultLockMode(): Promise<LockMode> {
  if (flockAvailable === undefined) {
    flockAvailable = await new Promise<boolean>((resolve) => {
      const c = spawn('flock', ['--version'], { stdio: 'ignore' });
      c.once('error', () => resolve(false));
      c.once('exit', (code) => resolve(code === 0));
    });
  }
  return flockAvailable ? 'flock' : 'pidfile';
}
