/**
 * Where downloaded files live in the browser, keyed by endpoint, repo, commit and path, so a second visit loads
 * offline. The Origin Private File System (OPFS) holds them: a stored file is a disk-backed `File`, read by
 * `slice()` ranges without loading it into memory (a 1.7 GB UNet stays on disk until its tensors are uploaded).
 * A file is written through `createWritable()`, which commits only on `close()`: an aborted or failed download
 * leaves nothing behind. Without OPFS (an old browser, some private modes) a memory store keeps files for the
 * page's lifetime only.
 */

/** The async iteration of a directory handle (typed here so the code does not need TypeScript's DOM.AsyncIterable lib). */
export type IterableDirectory = FileSystemDirectoryHandle & {
  keys(): AsyncIterable<string>;
  entries(): AsyncIterable<[string, FileSystemHandle]>;
};

export interface WeightStore {
  /** 'opfs' (persistent) or 'memory' (this page only). */
  readonly kind: 'opfs' | 'memory';
  get(key: readonly string[]): Promise<Blob | null>;
  /**
   * Streams `body` into the store under `key` and returns the stored file. `expectedSize` (when known) is
   * checked; on any error or abort nothing is stored.
   */
  put(key: readonly string[], body: ReadableStream<Uint8Array>, opts?: { expectedSize?: number | null | undefined; signal?: AbortSignal | undefined }): Promise<Blob>;
  getText(key: readonly string[]): Promise<string | null>;
  putText(key: readonly string[], text: string): Promise<void>;
  /** Removes everything under `prefix` (all when empty). */
  clear(prefix?: readonly string[]): Promise<void>;
  /** Bytes used and available to this origin, when the browser says. */
  estimate(): Promise<{ usage: number; quota: number } | null>;
}

/** One path segment as a file name: no '/', never '.' or '..'. */
const seg = (s: string): string => {
  const e = encodeURIComponent(s);
  return e === '.' || e === '..' ? `%2E${e.slice(1)}` : e;
};

async function drain(body: ReadableStream<Uint8Array>, sink: (chunk: Uint8Array) => Promise<void> | void, signal?: AbortSignal): Promise<number> {
  const reader = body.getReader();
  let n = 0;
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError');
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      await sink(value);
    }
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError');
    return n;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}

function sizeError(key: readonly string[], got: number, want: number): Error {
  return new Error(`${key.slice(1).join('/')}: received ${got} bytes, expected ${want} (the download was cut or the file changed)`);
}

export class OpfsStore implements WeightStore {
  readonly kind = 'opfs';
  private constructor(private readonly root: FileSystemDirectoryHandle) {}

  /** The store under OPFS `/<name>`, or null when this browser has no usable OPFS. */
  static async open(name = 'fewstep-weights-v1'): Promise<OpfsStore | null> {
    try {
      if (typeof navigator === 'undefined' || !navigator.storage?.getDirectory) return null;
      // createWritable is what makes writes atomic; without it (older Safari) fall back to memory.
      if (typeof FileSystemFileHandle === 'undefined' || !('createWritable' in FileSystemFileHandle.prototype)) return null;
      const top = await navigator.storage.getDirectory();
      return new OpfsStore(await top.getDirectoryHandle(name, { create: true }));
    } catch {
      return null;
    }
  }

  private async dir(parts: readonly string[], create: boolean): Promise<FileSystemDirectoryHandle | null> {
    let d = this.root;
    for (const p of parts) {
      try {
        d = await d.getDirectoryHandle(seg(p), { create });
      } catch (e) {
        if (!create && (e as DOMException).name === 'NotFoundError') return null;
        if (!create && (e as DOMException).name === 'TypeMismatchError') return null;
        throw e;
      }
    }
    return d;
  }

  async get(key: readonly string[]): Promise<Blob | null> {
    const d = await this.dir(key.slice(0, -1), false);
    if (!d) return null;
    try {
      const f = await (await d.getFileHandle(seg(key[key.length - 1]!))).getFile();
      // A zero-byte file is what a download cut before its first commit can leave (the handle is created
      // before the write); real empty files are re-fetched, which costs nothing.
      return f.size > 0 ? f : null;
    } catch {
      return null;
    }
  }

  async put(key: readonly string[], body: ReadableStream<Uint8Array>, opts: { expectedSize?: number | null | undefined; signal?: AbortSignal | undefined } = {}): Promise<Blob> {
    const d = (await this.dir(key.slice(0, -1), true))!;
    const name = seg(key[key.length - 1]!);
    const handle = await d.getFileHandle(name, { create: true });
    const w = await handle.createWritable({ keepExistingData: false });
    try {
      const n = await drain(body, (c) => w.write(c as Uint8Array<ArrayBuffer>), opts.signal);
      if (opts.expectedSize != null && n !== opts.expectedSize) throw sizeError(key, n, opts.expectedSize);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      await d.removeEntry(name).catch(() => {});
      throw e;
    }
    return handle.getFile();
  }

  async getText(key: readonly string[]): Promise<string | null> {
    const b = await this.get(key);
    return b ? b.text() : null;
  }

  async putText(key: readonly string[], text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    await this.put(key, new Blob([bytes]).stream(), { expectedSize: bytes.byteLength });
  }

  async clear(prefix: readonly string[] = []): Promise<void> {
    if (prefix.length === 0) {
      const names: string[] = [];
      for await (const name of (this.root as IterableDirectory).keys()) names.push(name);
      for (const name of names) await this.root.removeEntry(name, { recursive: true });
      return;
    }
    const d = await this.dir(prefix.slice(0, -1), false);
    await d?.removeEntry(seg(prefix[prefix.length - 1]!), { recursive: true }).catch(() => {});
  }

  async estimate(): Promise<{ usage: number; quota: number } | null> {
    return estimate();
  }
}

async function estimate(): Promise<{ usage: number; quota: number } | null> {
  try {
    const e = await navigator.storage.estimate();
    return e.usage !== undefined && e.quota !== undefined ? { usage: e.usage, quota: e.quota } : null;
  } catch {
    return null;
  }
}

/** Files for this page's lifetime only (no OPFS). */
export class MemoryStore implements WeightStore {
  readonly kind = 'memory';
  private files = new Map<string, Blob>();
  private k = (key: readonly string[]) => key.map(seg).join('/');

  async get(key: readonly string[]): Promise<Blob | null> {
    return this.files.get(this.k(key)) ?? null;
  }

  async put(key: readonly string[], body: ReadableStream<Uint8Array>, opts: { expectedSize?: number | null | undefined; signal?: AbortSignal | undefined } = {}): Promise<Blob> {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    const n = await drain(body, (c) => void parts.push(c as Uint8Array<ArrayBuffer>), opts.signal);
    if (opts.expectedSize != null && n !== opts.expectedSize) throw sizeError(key, n, opts.expectedSize);
    const b = new Blob(parts);
    this.files.set(this.k(key), b);
    return b;
  }

  async getText(key: readonly string[]): Promise<string | null> {
    return (await this.get(key))?.text() ?? null;
  }

  async putText(key: readonly string[], text: string): Promise<void> {
    this.files.set(this.k(key), new Blob([text]));
  }

  async clear(prefix: readonly string[] = []): Promise<void> {
    const p = this.k(prefix);
    for (const k of [...this.files.keys()]) if (!p || k === p || k.startsWith(`${p}/`)) this.files.delete(k);
  }

  async estimate(): Promise<{ usage: number; quota: number } | null> {
    return estimate();
  }
}

/** OPFS when the browser has it, else memory. Asks once for persistent storage (so weights are not evicted). */
export async function openWeightStore(): Promise<WeightStore> {
  const opfs = await OpfsStore.open();
  if (opfs) {
    void navigator.storage.persist?.().catch(() => false);
    return opfs;
  }
  return new MemoryStore();
}
