/// <reference types="@webgpu/types" preserve="true" />
/**
 * Node-only helpers (file IO and Dawn). Kept out of the package root so tensor, kernels and models
 * stay browser-safe; import them from `@fewstep/tensor/node`.
 */
import { open, readFile, stat, readdir } from 'node:fs/promises';
import { readSync } from 'node:fs';
import { join } from 'node:path';
import type { FileSource, RandomAccessFile } from './io.js';
import { FileFormatError } from './errors.js';

class NodeFile implements RandomAccessFile {
  private scratch: Uint8Array | null = null;
  private syncScratch: Uint8Array | null = null;
  constructor(readonly name: string, readonly size: number, private fh: import('node:fs/promises').FileHandle) {}
  async read(offset: number, length: number): Promise<Uint8Array> {
    // Not zero-filled (every byte is read below, or this throws): zeroing is a pass over all the weights.
    return this.readInto(new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length), offset);
  }
  async readTransient(offset: number, length: number): Promise<Uint8Array> {
    if (!this.scratch || this.scratch.byteLength < length) this.scratch = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
    return this.readInto(this.scratch.subarray(0, length), offset);
  }
  readTransientSync(offset: number, length: number): Uint8Array {
    if (!this.syncScratch || this.syncScratch.byteLength < length) this.syncScratch = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
    const buf = this.syncScratch.subarray(0, length);
    this.checkRange(offset, length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fh.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new FileFormatError(this.name, `unexpected end of file at ${offset + done}`);
      done += n;
    }
    return buf;
  }
  private checkRange(offset: number, length: number): void {
    if (offset + length > this.size) throw new FileFormatError(this.name, `read of ${length} bytes at ${offset} is past the end (${this.size} bytes)`);
  }
  private async readInto(buf: Uint8Array, offset: number): Promise<Uint8Array> {
    const length = buf.byteLength;
    this.checkRange(offset, length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new FileFormatError(this.name, `unexpected end of file at ${offset + done}`);
      done += bytesRead;
    }
    return buf;
  }
  async close(): Promise<void> {
    this.scratch = null;
    this.syncScratch = null;
    await this.fh.close();
  }
}

/** Reads from the local file system. */
export const nodeFiles: FileSource = {
  async open(path) {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new FileFormatError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'file_format', { cause: e });
    }
    const s = await fh.stat();
    if (!s.isFile()) {
      await fh.close();
      throw new FileFormatError(path, 'not a regular file');
    }
    return new NodeFile(path, s.size, fh);
  },
  async readText(path) {
    try {
      return await readFile(path, 'utf8');
    } catch (e) {
      throw new FileFormatError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'file_format', { cause: e });
    }
  },
  async exists(path) {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  },
  join: (...parts) => join(...parts),
  list: async (dir) => readdir(dir),
};

/**
 * Dawn's instance flags by default: `FEWSTEP_DAWN_OPTIONS` (whitespace-separated create() flags, e.g.
 * `enable-dawn-features=vulkan_enable_f16_on_nvidia`), else none.
 */
export function defaultDawnOptions(env: Record<string, string | undefined> = process.env): string[] {
  return (env['FEWSTEP_DAWN_OPTIONS'] ?? '').split(/\s+/).filter(Boolean);
}

/**
 * Dawn's WebGPU entry point for Node. `dawnOptions` are Dawn's create() flags, e.g.
 * `enable-dawn-features=allow_unsafe_apis` (several features after one `=`, comma-separated).
 */
export async function nodeGPU(dawnOptions: string[] = defaultDawnOptions()): Promise<GPU> {
  const key = dawnOptions.join('\n');
  let gpu = instances.get(key);
  if (!gpu) {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    gpu = create(dawnOptions) as GPU;
    // Never let a Dawn instance be garbage-collected while devices may use it (see Device).
    instances.set(key, gpu);
  }
  return gpu;
}

const instances = new Map<string, GPU>();
