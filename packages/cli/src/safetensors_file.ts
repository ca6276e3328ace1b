import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ST_DTYPE_BYTES, ShapeError, numel, safetensorsHeader, type TensorHeaderEntry } from '@fewstep/tensor';
import { partialPath, removeStaleTemps, writeError } from './write_atomic.js';

/**
 * Writes a safetensors file one tensor at a time (never the whole file in memory): header first, then
 * `data(i)` for each entry in order, each checked against its dtype × shape. The bytes go to the temp file
 * `<path>.partial-<pid>` (write_atomic.ts: its rules, the cleaning of dead processes' temp files, the errors),
 * fsynced and renamed at the end, so a failure or an abort (`signal`, checked before each tensor) never leaves
 * a partial file. File-system errors name `path`, never the temp file.
 * Returns the file's size in bytes.
 */
export async function writeSafetensorsFile(
  path: string,
  entries: readonly TensorHeaderEntry[],
  data: (i: number) => Promise<Uint8Array>,
  metadata?: Record<string, string>,
  signal?: AbortSignal,
): Promise<number> {
  const header = safetensorsHeader(entries, metadata);
  await removeStaleTemps(dirname(path));
  const tmp = partialPath(path);
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'w');
  } catch (e) {
    throw writeError(path, e);
  }
  let done = false;
  try {
    let pos = 0;
    const write = async (b: Uint8Array) => {
      for (let off = 0; off < b.byteLength; ) {
        const { bytesWritten } = await fh.write(b, off, b.byteLength - off, pos);
        off += bytesWritten;
        pos += bytesWritten;
      }
    };
    await write(header.bytes);
    for (const [i, e] of entries.entries()) {
      signal?.throwIfAborted();
      const bytes = await data(i);
      const want = numel(e.shape) * ST_DTYPE_BYTES[e.dtype];
      if (bytes.byteLength !== want) throw new ShapeError(`${path}: tensor "${e.name}" gave ${bytes.byteLength} bytes, expected ${want}`);
      await write(bytes);
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
    done = true;
    return pos;
  } catch (e) {
    throw writeError(path, e);
  } finally {
    if (!done) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}
