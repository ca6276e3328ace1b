import { rename, unlink, writeFile } from 'node:fs/promises';
import { FileFormatError, ResourceLimitError, isAbortError } from '@fewstep/tensor';

/**
 * Writes `<file>.partial-<pid>` and renames it, so a failure or an abort (`signal`) never leaves a partial
 * `file`, nor the temporary one. Errors: the abort itself; ResourceLimitError for a full disk or quota;
 * else FileFormatError naming the file ("cannot write (EACCES)").
 */
export async function writeAtomic(path: string, bytes: Uint8Array | string, signal?: AbortSignal): Promise<void> {
  const tmp = `${path}.partial-${process.pid}`;
  try {
    signal?.throwIfAborted();
    await writeFile(tmp, bytes, signal ? { signal } : {});
    signal?.throwIfAborted();
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    if (isAbortError(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new ResourceLimitError(`${path}: cannot write (${code}: no space left)`);
    throw new FileFormatError(path, `cannot write (${code ?? (e as Error).message})`, 'file_format', { cause: e });
  }
}
