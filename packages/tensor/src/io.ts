/**
 * The small IO seam that keeps tensor/kernels/models browser-safe: every file read goes through
 * a `FileSource`. Node's implementation lives in `node.ts` (subpath `@fewstep/tensor/node`);
 * a browser can back it with `fetch` + Range requests or a `Blob`.
 */
import { FileFormatError } from './errors.js';

export interface RandomAccessFile {
  /** Human-readable name used in error messages (a path or URL). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` (throws if the file is shorter). */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Optional: as `read`, into a buffer the file reuses — the bytes stay valid only until the next
   * `readTransient` or `close`. For data copied away at once (weights uploaded to the GPU): no fresh memory
   * per read, whose first touch is most of a load on some machines (~3.6 ms per MB on a VM measured here).
   */
  readTransient?(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Optional: as `readTransient`, synchronously, into a second reused buffer (valid until the next
   * `readTransientSync` or `close`). Streamed weights need it: they are uploaded while a kernel is recorded.
   * Node's files have it; a browser's fetch- or Blob-backed file cannot.
   */
  readTransientSync?(offset: number, length: number): Uint8Array;
  close(): Promise<void>;
}

export interface FileSource {
  open(path: string): Promise<RandomAccessFile>;
  readText(path: string): Promise<string>;
  exists(path: string): Promise<boolean>;
  /** Joins path segments with '/'. */
  join(...parts: string[]): string;
  /** Lists the file names (not paths) directly inside a folder. */
  list(dir: string): Promise<string[]>;
}

/** An in-memory file, used by tests and by browsers holding a whole file already. */
export class MemoryFile implements RandomAccessFile {
  constructor(readonly name: string, private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.byteLength;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || offset + length > this.bytes.byteLength) {
      throw new FileFormatError(this.name, `read of ${length} bytes at ${offset} is past the end (${this.bytes.byteLength} bytes)`);
    }
    return this.bytes.subarray(offset, offset + length);
  }
  async close(): Promise<void> {}
}
