/**
 * The FileSource the pipeline reads through in the browser: folders "mounted" under a prefix, each a list of
 * relative paths and a way to get one file as a Blob (a stored download, a file the user picked). Reads are
 * `Blob.slice(offset, end).arrayBuffer()` — a disk-backed Blob is never read whole.
 */
import { FileFormatError, type FileSource, type RandomAccessFile } from '@fewstep/tensor';
import type { IterableDirectory } from '../hub/weight_store.js';

/** A RandomAccessFile over a Blob (an OPFS file, a picked File). */
export class BlobFile implements RandomAccessFile {
  constructor(
    readonly name: string,
    private readonly blob: Blob,
  ) {}
  get size(): number {
    return this.blob.size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.blob.size) {
      throw new FileFormatError(this.name, `read of ${length} bytes at ${offset} is past the end (${this.blob.size} bytes)`);
    }
    if (length === 0) return new Uint8Array(0);
    const buf = await this.blob.slice(offset, offset + length).arrayBuffer();
    if (buf.byteLength !== length) throw new FileFormatError(this.name, `read ${buf.byteLength} of ${length} bytes at ${offset} (the file changed or went away)`);
    return new Uint8Array(buf);
  }
  async close(): Promise<void> {}
}

/** One mounted folder: its files' relative paths ('/'-separated) and how to get one. */
export interface Mount {
  /** Every file under the folder, relative to it. */
  readonly files: readonly string[];
  /** The file's bytes (downloading it first, for a hub mount). */
  blob(relPath: string): Promise<Blob>;
}

/** A FileSource over mounted folders. Paths are `<mount>/<relative path>`; mount names may hold '/'. */
export class MountedFiles implements FileSource {
  private mounts = new Map<string, { mount: Mount; files: Set<string>; dirs: Map<string, Set<string>> }>();

  /** Mounts `m` at `dir` (replacing what was there) and returns `dir`. */
  mount(dir: string, m: Mount): string {
    const files = new Set(m.files);
    const dirs = new Map<string, Set<string>>();
    for (const f of files) {
      const parts = f.split('/');
      for (let i = 0; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/');
        let set = dirs.get(parent);
        if (!set) dirs.set(parent, (set = new Set()));
        set.add(parts[i]!);
      }
    }
    this.mounts.set(dir, { mount: m, files, dirs });
    return dir;
  }

  unmount(dir: string): void {
    this.mounts.delete(dir);
  }

  /** Finds the mount holding `path` (the longest matching prefix) and the path inside it. */
  private locate(path: string): { m: { mount: Mount; files: Set<string>; dirs: Map<string, Set<string>> }; rel: string } | null {
    let best: string | null = null;
    for (const dir of this.mounts.keys()) {
      if ((path === dir || path.startsWith(`${dir}/`)) && (best === null || dir.length > best.length)) best = dir;
    }
    if (best === null) return null;
    const rel = path === best ? '' : path.slice(best.length + 1);
    return { m: this.mounts.get(best)!, rel: normalize(rel) };
  }

  join(...parts: string[]): string {
    return parts.filter((p) => p !== '').join('/').replace(/\/{2,}/g, '/');
  }

  async exists(path: string): Promise<boolean> {
    const l = this.locate(path);
    return !!l && (l.m.files.has(l.rel) || l.m.dirs.has(l.rel));
  }

  async list(dir: string): Promise<string[]> {
    const l = this.locate(dir);
    const names = l?.m.dirs.get(l.rel);
    if (!l || !names) throw new FileFormatError(dir, 'no such folder');
    return [...names].sort();
  }

  async open(path: string): Promise<RandomAccessFile> {
    const l = this.locate(path);
    if (!l || !l.m.files.has(l.rel)) throw new FileFormatError(path, 'no such file');
    return new BlobFile(path, await l.m.mount.blob(l.rel));
  }

  async readText(path: string): Promise<string> {
    const f = await this.open(path);
    return new TextDecoder().decode(await f.read(0, f.size));
  }
}

/** `a/./b/../c` → `a/c` (relative paths inside a mount). */
function normalize(rel: string): string {
  const out: string[] = [];
  for (const p of rel.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out.join('/');
}

/**
 * A folder the user picked (`<input type=file webkitdirectory>`: each File's webkitRelativePath starts with
 * the folder's name) as a Mount; `root` is that name.
 */
export function pickedFolderMount(files: readonly File[]): { root: string; mount: Mount } {
  const byPath = new Map<string, File>();
  let root = '';
  for (const f of files) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    const parts = rel.split('/');
    if (parts.length > 1) {
      root ||= parts[0]!;
      byPath.set(parts.slice(1).join('/'), f);
    } else byPath.set(rel, f);
  }
  return {
    root: root || 'folder',
    mount: {
      files: [...byPath.keys()],
      blob: async (rel) => {
        const f = byPath.get(rel);
        if (!f) throw new FileFormatError(rel, 'not in the picked folder');
        return f;
      },
    },
  };
}

/**
 * A directory picked through the File System Access API (`showDirectoryPicker`) as a list of Files with
 * webkitRelativePath-style paths, for `pickedFolderMount`. Only the first `maxDepth` levels are walked.
 */
export async function filesOfDirectoryHandle(dir: FileSystemDirectoryHandle, maxDepth = 3): Promise<File[]> {
  const out: File[] = [];
  const walk = async (d: FileSystemDirectoryHandle, prefix: string, depth: number): Promise<void> => {
    for await (const [name, h] of (d as IterableDirectory).entries()) {
      if (h.kind === 'file') {
        const f = await (h as FileSystemFileHandle).getFile();
        Object.defineProperty(f, 'webkitRelativePath', { value: `${prefix}/${name}` });
        out.push(f);
      } else if (depth < maxDepth) await walk(h as FileSystemDirectoryHandle, `${prefix}/${name}`, depth + 1);
    }
  };
  await walk(dir, dir.name, 0);
  return out;
}
