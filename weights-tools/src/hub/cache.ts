/**
 * The huggingface_hub cache layout (shared with Python):
 *
 *   $HF_HUB_CACHE/models--{org}--{name}/
 *     blobs/<etag>                 file contents, named by ETag (git sha1) or, for LFS files, sha256
 *     blobs/<etag>.incomplete      a download in progress (resumed with Range)
 *     snapshots/<commit>/<path>    relative symlinks to ../../blobs/<etag> (a copy where symlinks fail)
 *     refs/<revision>              the commit hash a branch / tag last resolved to (no newline)
 *     .fewstep/<commit>.json       our own file list of the commit (lets a complete snapshot be reused
 *                                  with no request; huggingface_hub ignores this folder)
 *   $HF_HUB_CACHE/.locks/models--{org}--{name}/<etag>.lock
 *                                  huggingface_hub's per-blob download lock (see lock.ts), shared with Python
 */
import { constants as fsc } from 'node:fs';
import { copyFile, lstat, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { HubInputError } from './errors.js';
import { isProcessAlive } from './lock.js';

export type RepoType = 'model' | 'dataset' | 'space';

export interface HubEnvOptions {
  /** Hub cache folder (default `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string | undefined;
  /** Access token; `false` disables the env / token-file lookup. Default `$HF_TOKEN`, else `$HF_HOME/token`. */
  token?: string | false | undefined;
  /** Hub URL (default `$HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string | undefined;
  /** Never touch the network (default `$HF_HUB_OFFLINE`). */
  offline?: boolean | undefined;
  repoType?: RepoType | undefined;
}

export interface HubConfig {
  cacheDir: string;
  token: string | undefined;
  endpoint: string;
  offline: boolean;
  repoType: RepoType;
}

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());

export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return env['HF_HOME'] || join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface');
}

/** Options override the environment. The token file is read synchronously once per call. */
export async function resolveConfig(opts: HubEnvOptions, env: NodeJS.ProcessEnv = process.env): Promise<HubConfig> {
  const home = hfHome(env);
  const cacheDir = opts.cacheDir ?? (env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'] || join(home, 'hub'));
  let token: string | undefined;
  if (typeof opts.token === 'string') token = opts.token || undefined;
  else if (opts.token !== false) {
    token = env['HF_TOKEN'] || env['HUGGING_FACE_HUB_TOKEN'] || undefined;
    if (!token) {
      try {
        token = (await readFile(env['HF_TOKEN_PATH'] || join(home, 'token'), 'utf8')).trim() || undefined;
      } catch {
        token = undefined;
      }
    }
  }
  const endpoint = (opts.endpoint ?? (env['HF_ENDPOINT'] || 'https://huggingface.co')).replace(/\/+$/, '');
  const offline = opts.offline ?? truthy(env['HF_HUB_OFFLINE']);
  return { cacheDir, token: token?.trim(), endpoint, offline, repoType: opts.repoType ?? 'model' };
}

const REPO_ID = /^(?:[\w.-]+\/)?[\w.-]+$/;
export function validateRepoId(repoId: string): void {
  if (!REPO_ID.test(repoId) || repoId.length > 96 || repoId.includes('--') || repoId.includes('..') || /(^|\/)[.-]|[.-]($|\/)/.test(repoId)) {
    throw new HubInputError(`"${repoId}" is not a valid Hugging Face repo id (expected org/name)`);
  }
}

/** A repo file path as listed by the hub, checked so it can never escape the snapshot folder. */
export function validateRepoPath(path: string, repoId: string): void {
  const segs = path.split('/');
  if (path === '' || path.includes('\\') || path.includes('\0') || segs.some((s) => s === '' || s === '.' || s === '..')) {
    throw new HubInputError(`unsafe file path "${path}" in ${repoId}`);
  }
}

export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;

export class RepoCache {
  readonly root: string;
  constructor(readonly cacheDir: string, readonly repoId: string, readonly repoType: RepoType = 'model') {
    validateRepoId(repoId);
    this.root = join(cacheDir, `${repoType}s--${repoId.replace(/\//g, '--')}`);
  }
  get blobsDir() {
    return join(this.root, 'blobs');
  }
  /** The lock huggingface_hub takes around a blob's download: `<cache>/.locks/<repo folder>/<etag>.lock`. */
  lockPath(etag: string) {
    return join(this.cacheDir, '.locks', basename(this.root), `${etag}.lock`);
  }
  blobPath(etag: string) {
    return join(this.root, 'blobs', etag);
  }
  snapshotDir(commit: string) {
    return join(this.root, 'snapshots', commit);
  }
  snapshotPath(commit: string, file: string) {
    return join(this.root, 'snapshots', commit, ...file.split('/'));
  }
  refPath(revision: string) {
    return join(this.root, 'refs', ...revision.split('/'));
  }
  /** Scratch space for atomic renames, outside refs/ and snapshots/ (which huggingface_hub scans). */
  get tmpDir() {
    return join(this.root, '.fewstep', 'tmp');
  }
  manifestPath(commit: string) {
    return join(this.root, '.fewstep', `${commit}.json`);
  }

  /** The commit a revision points to locally: itself when it is a commit hash, else refs/<revision>. */
  async resolveRevision(revision: string): Promise<string | undefined> {
    if (COMMIT_RE.test(revision)) return revision;
    try {
      const c = (await readFile(this.refPath(revision), 'utf8')).trim();
      return COMMIT_RE.test(c) ? c : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const p = this.refPath(revision);
    try {
      if ((await readFile(p, 'utf8')) === commit) return;
    } catch {
      /* absent */
    }
    await atomicWrite(p, commit, this.tmpDir);
  }

  async readManifest(commit: string): Promise<string[] | undefined> {
    try {
      const j = JSON.parse(await readFile(this.manifestPath(commit), 'utf8')) as { files?: unknown | undefined };
      return Array.isArray(j.files) && j.files.every((f) => typeof f === 'string') ? (j.files as string[]) : undefined;
    } catch {
      return undefined;
    }
  }

  async writeManifest(commit: string, files: string[]): Promise<void> {
    await atomicWrite(this.manifestPath(commit), JSON.stringify({ files }) + '\n', this.tmpDir);
  }

  /** All files of a snapshot folder (as repo paths), following symlinks; [] when it is absent. */
  async listSnapshot(commit: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        return;
      }
      for (const n of names.sort()) {
        const p = join(dir, n);
        const s = await stat(p).catch(() => undefined); // a broken link is not a file
        if (!s) continue;
        if (s.isDirectory()) await walk(p, prefix + n + '/');
        else out.push(prefix + n);
      }
    };
    await walk(this.snapshotDir(commit), '');
    return out;
  }

  /** Points snapshots/<commit>/<file> at blobs/<etag> with a relative link (a copy where links fail). */
  async linkSnapshot(commit: string, file: string, etag: string): Promise<string> {
    const dst = this.snapshotPath(commit, file);
    const blob = this.blobPath(etag);
    await mkdir(dirname(dst), { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    await sweepTmp(this.tmpDir);
    const tmp = tmpName(this.tmpDir, 'link');
    try {
      await symlink(relative(dirname(dst), blob), tmp);
    } catch {
      await copyFile(blob, tmp, fsc.COPYFILE_FICLONE);
    }
    try {
      // rename replaces a stale (e.g. broken) link atomically.
      await rename(tmp, dst);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    return dst;
  }
}

export async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Size of a file, or undefined (lstat: does not follow links). */
export async function fileSize(p: string): Promise<number | undefined> {
  return lstat(p).then(
    (s) => (s.isFile() ? s.size : undefined),
    () => undefined,
  );
}

const tmpName = (dir: string, what: string) => join(dir, `${what}-${process.pid}-${Math.random().toString(36).slice(2)}.tmp`);
const TMP_RE = /^(?:link|write)-(\d+)-[0-9a-z]*\.tmp$/;
const sweptTmp = new Set<string>();

/**
 * Removes the temp files (`link-<pid>-….tmp`, `write-<pid>-….tmp`; a copied blob where symlinks fail can be big)
 * that processes killed mid-write left in `dir`: those whose pid no longer runs. Once per folder per process.
 */
async function sweepTmp(dir: string): Promise<void> {
  if (sweptTmp.has(dir)) return;
  sweptTmp.add(dir);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    const pid = TMP_RE.exec(n)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid && !isProcessAlive(Number(pid))) await rm(join(dir, n), { force: true }).catch(() => undefined);
  }
}

/** Writes via a temp file in `tmpDir` (same file system) and a rename, so readers never see half a file. */
export async function atomicWrite(p: string, data: string, tmpDir = dirname(p)): Promise<void> {
  await mkdir(dirname(p), { recursive: true });
  await mkdir(tmpDir, { recursive: true });
  await sweepTmp(tmpDir);
  const tmp = tmpName(tmpDir, 'write');
  try {
    await writeFile(tmp, data);
    await rename(tmp, p);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
