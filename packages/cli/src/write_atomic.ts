/**
 * How the CLI writes files, in one place: through a temp file beside the destination, renamed into place when
 * complete, so a failure, an abort or a kill never leaves a partial destination.
 *
 * - The temp file is `<file>.partial-<pid>` (partialPath): in the destination's folder (same file system, so the
 *   rename is atomic) and named after the process writing it.
 * - A process killed while writing (SIGKILL, a crash, power) cannot remove its temp file. The next write into
 *   that folder removes the temp files whose process is gone — `<name>.partial-<pid>`, and convert's older
 *   `.<name>.<pid>-<ms>.tmp` — when `process.kill(pid, 0)` says ESRCH; another live process' file is never
 *   touched (removeStaleTemps, once per folder per process). A pid reused by an unrelated process keeps a
 *   leftover until that process ends.
 * - Destinations are checked before any work (checkWritable: the folder exists and a file can be created there,
 *   by creating and removing the temp file itself — access() says yes to root on a read-only mount or /sys);
 *   write errors name the user's path, never the temp file.
 */
import { lstat, open, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { FewstepError, FileFormatError, ResourceLimitError, isAbortError } from '@fewstep/tensor';
import { UsageError } from './args.js';

/** The temp file a write of `path` goes through. */
export function partialPath(path: string): string {
  return `${path}.partial-${process.pid}`;
}

/** Temp files of the writers, with the pid of the process that wrote them. */
const TEMP_NAMES = [/^.+\.partial-(\d+)$/, /^\..+\.(\d+)-\d+\.tmp$/];

/** True when a process with this pid exists (EPERM: it does, as another user). */
function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const swept = new Set<string>();

/**
 * Removes the temp files of dead processes in `dir` (see the header); once per folder per process. Returns the
 * names it removed. Never throws: cleaning is a courtesy, not part of the write.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const key = resolve(dir);
  if (swept.has(key)) return [];
  swept.add(key);
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = TEMP_NAMES.map((re) => re.exec(name)?.[1]).find((p) => p !== undefined);
    if (pid === undefined || Number(pid) === process.pid || isProcessAlive(Number(pid))) continue;
    const p = join(dir, name);
    try {
      if (!(await lstat(p)).isFile()) continue;
      await unlink(p);
      removed.push(name);
    } catch {
      /* gone already, or not ours to remove */
    }
  }
  return removed;
}

/** A failed write as one typed line naming `path` (the user's file, never the temp file). */
export function writeError(path: string, e: unknown): Error {
  // Our own errors (a tensor of the wrong size, a limit, an abort) pass as they are; fs errors get the path.
  if (isAbortError(e) || e instanceof FewstepError || e instanceof UsageError) return e as Error;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new ResourceLimitError(`${path}: cannot write (${code}: no space left)`);
  return new FileFormatError(path, `cannot write (${code ?? (e as Error).message})`, 'file_format', { cause: e });
}

/**
 * Checks, before any work, that `path` can be written: its folder exists, is a folder, and a file can be
 * created in it (the temp file is created and removed); dead processes' temp files there are removed first.
 * Throws a UsageError starting with `label` (e.g. "--out x.png" or "output x.safetensors").
 */
export async function checkWritable(path: string, label: string): Promise<void> {
  const folder = dirname(path);
  const st = await stat(resolve(folder)).catch(() => undefined);
  if (!st) throw new UsageError(`${label}: folder ${folder} does not exist`);
  if (!st.isDirectory()) throw new UsageError(`${label}: ${folder} is not a folder`);
  await removeStaleTemps(folder);
  const probe = partialPath(path);
  try {
    const fh = await open(probe, 'w');
    await fh.close();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new UsageError(`${label}: folder ${folder} is not writable (${code})`);
  } finally {
    await unlink(probe).catch(() => undefined);
  }
}

/**
 * Writes `<file>.partial-<pid>` and renames it, so a failure or an abort (`signal`) never leaves a partial
 * `file`, nor the temporary one; first removes dead processes' temp files in the folder. Errors: the abort
 * itself; ResourceLimitError for a full disk or quota; else FileFormatError naming the file ("cannot write (EACCES)").
 */
export async function writeAtomic(path: string, bytes: Uint8Array | string, signal?: AbortSignal): Promise<void> {
  await removeStaleTemps(dirname(path));
  const tmp = partialPath(path);
  try {
    signal?.throwIfAborted();
    await writeFile(tmp, bytes, signal ? { signal } : {});
    signal?.throwIfAborted();
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw writeError(path, e);
  }
}
