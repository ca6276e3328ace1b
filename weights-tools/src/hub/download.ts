/**
 * Hugging Face hub downloads into the standard cache (see cache.ts for the layout), speaking the
 * hub's protocol like huggingface_hub:
 *
 *  - `GET {endpoint}/api/models/{repo}/revision/{rev}` → `sha` (commit) and `siblings[].rfilename`;
 *  - `HEAD {endpoint}/{repo}/resolve/{rev}/{path}` without following the CDN redirect: the commit,
 *    the ETag (`X-Linked-Etag` for LFS files, the sha256) and the size (`X-Linked-Size` /
 *    `Content-Length`) are read from that first response, the `Location` is where the bytes are;
 *  - `GET` the bytes into `blobs/<etag>.incomplete` (resumed with `Range` after a cut), check size
 *    and sha256, rename into `blobs/`, then link `snapshots/<commit>/<path>` and write `refs/<rev>`.
 *
 * A branch whose snapshot is complete in the cache is reused without any request (`refresh: true`
 * asks the hub for the branch's latest commit instead). Files downloaded by Python are reused.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, truncate } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { COMMIT_RE, RepoCache, SHA256_RE, exists, fileSize, resolveConfig, validateRepoId, validateRepoPath, type HubConfig, type HubEnvOptions } from './cache.js';
import {
  AuthRequiredError,
  EntryNotFoundError,
  HubConnectionError,
  HubError,
  HubHttpError,
  HubInputError,
  IntegrityError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
} from './errors.js';
import { compileGlob, fileFilter, isLiteralPattern } from './glob.js';
import { NetworkError, discard, header, isRedirect, readText, requestFollow, toNetworkError, type HttpResponse } from './http.js';
import type { ProgressCallback } from './progress.js';

export interface DownloadOptions extends HubEnvOptions {
  /** Branch, tag or commit hash (default 'main'). */
  revision?: string | undefined;
  onProgress?: ProgressCallback | undefined;
  /** Ask the hub for the branch's latest commit even when the cache already has it complete. */
  refresh?: boolean | undefined;
  /** Extra attempts after a network failure, each resuming the partial file (default 4). */
  retries?: number | undefined;
  /** Base delay between attempts; attempt k waits k × this (default 500 ms). */
  retryDelayMs?: number | undefined;
  /** Idle timeout of a request, in ms (default 30 s). */
  timeoutMs?: number | undefined;
}

export interface SnapshotOptions extends DownloadOptions {
  /** Keep only files matching one of these globs (see glob.ts: `*`, `**`, `?`, folder patterns). */
  allowPatterns?: readonly string[] | undefined;
  /** Drop files matching one of these globs. */
  ignorePatterns?: readonly string[] | undefined;
  /** Keep only files for which this returns true (after the patterns). */
  filter?: (path: string) => boolean;
  /** Files that must exist: missing on the hub → EntryNotFoundError; offline and not cached → OfflineMissingError. */
  required?: readonly string[] | undefined;
  /** Files downloaded at the same time (default 4). */
  maxWorkers?: number | undefined;
}

interface Session {
  cfg: HubConfig;
  cache: RepoCache;
  repoId: string;
  opts: DownloadOptions;
  authorization: string | undefined;
}

interface FileMeta {
  commit: string | undefined;
  etag: string;
  size: number | undefined;
  downloadUrl: URL;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function session(repoId: string, opts: DownloadOptions): Promise<Session> {
  validateRepoId(repoId);
  const cfg = await resolveConfig(opts);
  return { cfg, cache: new RepoCache(cfg.cacheDir, repoId, cfg.repoType), repoId, opts, authorization: cfg.token ? `Bearer ${cfg.token}` : undefined };
}

const timeout = (s: Session) => s.opts.timeoutMs ?? 30_000;
const typePrefix = (s: Session) => (s.cfg.repoType === 'model' ? '' : `${s.cfg.repoType}s/`);
const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

function resolveUrl(s: Session, revision: string, file: string): URL {
  return new URL(`${s.cfg.endpoint}/${typePrefix(s)}${s.repoId}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`);
}

/** A retryable server-side failure (5xx), handled like a network error. */
class RetryableStatus extends NetworkError {}

/** Runs `fn`, retrying network failures a bounded number of times; then fails naming `target`. */
async function withRetries<T>(s: Session, target: string, fn: (attempt: number) => Promise<T>): Promise<T> {
  const retries = Math.max(0, s.opts.retries ?? 4);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const net = toNetworkError(e);
      if (!net) throw e;
      if (attempt >= retries) throw new HubConnectionError(target, net.code, attempt + 1);
      await sleep((s.opts.retryDelayMs ?? 500) * (attempt + 1));
    }
  }
}

/** Maps a hub error response to a typed error (reads the hub's X-Error-Code like huggingface_hub). */
async function httpError(s: Session, res: HttpResponse, revision: string, file?: string): Promise<HubError> {
  const code = header(res, 'x-error-code');
  let detail = header(res, 'x-error-message') ?? '';
  if (!detail && res.status >= 400) {
    try {
      const text = await readText(res, 64 << 10);
      detail = (JSON.parse(text) as { error?: string | undefined }).error ?? text.slice(0, 200);
    } catch {
      /* no body */
    }
  } else discard(res);
  const hasToken = s.authorization !== undefined;
  const ep = s.cfg.endpoint;
  if (code === 'RepoNotFound') {
    return new RepoNotFoundError(s.repoId, ep, res.status === 401 && !hasToken ? ' (if it is private or gated, set HF_TOKEN or run `huggingface-cli login`)' : '');
  }
  if (code === 'RevisionNotFound') return new RevisionNotFoundError(s.repoId, revision, ep);
  if (code === 'EntryNotFound') return new EntryNotFoundError(s.repoId, revision, file ?? '?');
  if (code === 'GatedRepo' || res.status === 401 || res.status === 403) return new AuthRequiredError(s.repoId, res.status, hasToken, ep, code === 'GatedRepo');
  if (res.status === 404) return file !== undefined ? new EntryNotFoundError(s.repoId, revision, file) : new RepoNotFoundError(s.repoId, ep);
  return new HubHttpError(res.status, res.url.href, detail.split('\n')[0]!.trim());
}

const retryableStatus = (status: number) => status === 500 || status === 502 || status === 503 || status === 504 || status === 429;

function checkRetryable(res: HttpResponse): void {
  if (retryableStatus(res.status)) {
    discard(res);
    throw new RetryableStatus(`HTTP ${res.status}`, `HTTP ${res.status} from ${res.url.host}`);
  }
}

/** `GET /api/{type}s/{repo}/revision/{rev}` → the commit and the file list. */
async function repoInfo(s: Session, revision: string): Promise<{ commit: string; files: string[] }> {
  const url = new URL(`${s.cfg.endpoint}/api/${s.cfg.repoType}s/${s.repoId}/revision/${encodeURIComponent(revision)}`);
  const res = await withRetries(s, `the file list of ${s.repoId}`, async () => {
    const r = await requestFollow('GET', url, { accept: 'application/json' }, { authorization: s.authorization, timeoutMs: timeout(s) });
    checkRetryable(r);
    return r;
  });
  if (res.status !== 200) throw await httpError(s, res, revision);
  let info: { sha?: unknown; siblings?: { rfilename?: unknown | undefined }[] };
  try {
    info = JSON.parse(await readText(res, 64 << 20)) as typeof info;
  } catch (e) {
    throw new HubHttpError(res.status, url.href, `bad JSON (${(e as Error).message})`);
  }
  if (typeof info.sha !== 'string' || !COMMIT_RE.test(info.sha) || !Array.isArray(info.siblings)) {
    throw new HubHttpError(res.status, url.href, 'response has no commit sha / siblings');
  }
  const files = info.siblings.map((x) => x.rfilename).filter((f): f is string => typeof f === 'string');
  for (const f of files) validateRepoPath(f, s.repoId);
  return { commit: info.sha, files };
}

const normalizeEtag = (e: string | undefined) => e?.replace(/^W\//, '').replace(/^"|"$/g, '');
const hasMeta = (r: HttpResponse) => header(r, 'x-repo-commit') !== undefined || header(r, 'x-linked-etag') !== undefined;

/** `HEAD .../resolve/{rev}/{file}`: metadata from the first response that carries it (not the CDN's). */
async function fileMetadata(s: Session, revision: string, file: string): Promise<FileMeta> {
  const url = resolveUrl(s, revision, file);
  const res = await withRetries(s, `${file} from ${s.repoId}`, async () => {
    const r = await requestFollow('HEAD', url, { 'accept-encoding': 'identity' }, { authorization: s.authorization, timeoutMs: timeout(s), stop: hasMeta });
    checkRetryable(r);
    return r;
  });
  discard(res);
  let downloadUrl: URL;
  if (isRedirect(res.status) && res.headers.location) downloadUrl = new URL(res.headers.location, res.url);
  else if (res.status === 200) downloadUrl = res.url;
  else throw await httpError(s, res, revision, file);
  const etag = normalizeEtag(header(res, 'x-linked-etag') ?? header(res, 'etag'));
  if (!etag || !/^[\w.-]+$/.test(etag)) throw new HubHttpError(res.status, url.href, `no usable ETag for ${file} (is HF_ENDPOINT a Hugging Face hub?)`);
  const sizeHeader = header(res, 'x-linked-size') ?? header(res, 'content-length');
  const size = sizeHeader !== undefined && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
  return { commit: header(res, 'x-repo-commit'), etag, size, downloadUrl };
}

const inflight = new Map<string, Promise<void>>();

/** Downloads one blob (once per process even when several snapshot files share it). */
async function downloadBlob(s: Session, file: string, meta: FileMeta, progress: (loaded: number) => void): Promise<void> {
  const blob = s.cache.blobPath(meta.etag);
  const running = inflight.get(blob);
  if (running) return running;
  const p = downloadBlobOnce(s, file, meta, progress).finally(() => inflight.delete(blob));
  inflight.set(blob, p);
  return p;
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const c of createReadStream(path) as AsyncIterable<Buffer>) hash.update(c);
}

async function downloadBlobOnce(s: Session, file: string, meta: FileMeta, progress: (loaded: number) => void): Promise<void> {
  const blob = s.cache.blobPath(meta.etag);
  const inc = `${blob}.incomplete`;
  await mkdir(s.cache.blobsDir, { recursive: true });
  const expectSha = SHA256_RE.test(meta.etag) ? meta.etag : undefined;
  // The Authorization header only goes to the hub itself, never to a CDN on another origin.
  const auth = meta.downloadUrl.origin === new URL(s.cfg.endpoint).origin ? s.authorization : undefined;
  let hash: Hash | undefined;

  await withRetries(s, `${file} from ${s.repoId}`, async () => {
    for (let restart = 0; restart < 3; restart++) {
      let have = (await fileSize(inc)) ?? 0;
      if (meta.size !== undefined && have > meta.size) {
        await truncate(inc, 0);
        have = 0;
      }
      hash = expectSha ? createHash('sha256') : undefined;
      if (hash && have > 0) await hashFile(inc, hash);
      if (meta.size !== undefined && have === meta.size && have > 0) return;
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (have > 0) headers['range'] = `bytes=${have}-`;
      const res = await requestFollow('GET', meta.downloadUrl, headers, { authorization: auth, timeoutMs: timeout(s) });
      checkRetryable(res);
      if (have > 0 && res.status === 416) {
        discard(res);
        await truncate(inc, 0);
        continue;
      }
      if (res.status === 206) {
        const start = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '')?.[1];
        if (Number(start) !== have) {
          discard(res);
          await truncate(inc, 0);
          continue;
        }
      } else if (res.status === 200) {
        // The server ignored Range (or there was none): start over from byte 0.
        if (have > 0) hash = expectSha ? createHash('sha256') : undefined;
        have = 0;
      } else {
        throw await httpError(s, res, meta.commit ?? '?', file);
      }
      let loaded = have;
      progress(loaded);
      const h = hash;
      await pipeline(
        res.body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            h?.update(c);
            loaded += c.length;
            progress(loaded);
            yield c;
          }
        },
        createWriteStream(inc, { flags: have > 0 ? 'a' : 'w' }),
      );
      const got = (await fileSize(inc)) ?? 0;
      // A body that ended early without an error (e.g. chunked): resume like after a cut.
      if (meta.size !== undefined && got < meta.size) throw new NetworkError('ECONNRESET', `body ended after ${got} of ${meta.size} bytes`);
      return;
    }
    throw new HubHttpError(0, meta.downloadUrl.href, 'the server keeps answering byte ranges that do not fit the partial file');
  });

  const got = (await fileSize(inc)) ?? 0;
  if (meta.size !== undefined && got !== meta.size) {
    await rm(inc, { force: true });
    throw new IntegrityError(s.repoId, file, `got ${got} bytes, expected ${meta.size}`);
  }
  if (expectSha) {
    const digest = hash!.digest('hex');
    if (digest !== expectSha) {
      await rm(inc, { force: true });
      throw new IntegrityError(s.repoId, file, `sha256 ${digest} does not match ${expectSha}`);
    }
  }
  await rename(inc, blob);
}

/** Puts one file into snapshots/<commit>/ (downloading its blob unless cached) and returns its path. */
async function fetchFile(s: Session, revision: string, file: string, meta: FileMeta, commitHint: string | undefined, progress: ProgressCallback): Promise<string> {
  const commit = commitHint ?? meta.commit;
  if (!commit || !COMMIT_RE.test(commit)) throw new HubHttpError(200, resolveUrl(s, revision, file).href, `no X-Repo-Commit header for ${file}`);
  const dst = s.cache.snapshotPath(commit, file);
  const total = meta.size ?? -1;
  if (await exists(dst)) {
    progress({ file, loaded: total, total, status: 'cached' });
  } else {
    const blob = s.cache.blobPath(meta.etag);
    const blobSize = (await stat(blob).catch(() => undefined))?.size;
    if (blobSize === undefined || (meta.size !== undefined && blobSize !== meta.size)) {
      if (blobSize !== undefined) await rm(blob, { force: true });
      let last = 0;
      await downloadBlob(s, file, meta, (loaded) => {
        const t = Date.now();
        if (t - last >= 50 || loaded === total) {
          last = t;
          progress({ file, loaded, total, status: 'downloading' });
        }
      });
      const size = (await stat(blob)).size;
      await s.cache.linkSnapshot(commit, file, meta.etag);
      progress({ file, loaded: size, total: size, status: 'done' });
    } else {
      await s.cache.linkSnapshot(commit, file, meta.etag);
      progress({ file, loaded: blobSize, total: blobSize, status: 'cached' });
    }
  }
  await s.cache.writeRef(revision, commit);
  return dst;
}

/**
 * Downloads one file of a repo into the cache and returns its path in `snapshots/<commit>/`.
 * Uses the cache without a request when `refs/<revision>` (or the commit) already has the file.
 */
export async function hfHubDownload(repoId: string, filePath: string, opts: DownloadOptions = {}): Promise<string> {
  const s = await session(repoId, opts);
  validateRepoPath(filePath, repoId);
  const revision = opts.revision ?? 'main';
  const progress = opts.onProgress ?? (() => {});
  const local = async (): Promise<string | undefined> => {
    const commit = await s.cache.resolveRevision(revision);
    const p = commit && s.cache.snapshotPath(commit, filePath);
    if (!p || !(await exists(p))) return undefined;
    const size = (await stat(p)).size;
    progress({ file: filePath, loaded: size, total: size, status: 'cached' });
    return p;
  };
  if (s.cfg.offline) {
    const p = await local();
    if (p) return p;
    throw new OfflineMissingError(repoId, revision, [filePath]);
  }
  if (!opts.refresh) {
    const p = await local();
    if (p) return p;
  }
  let meta: FileMeta;
  try {
    meta = await fileMetadata(s, revision, filePath);
  } catch (e) {
    // Like huggingface_hub: when the hub cannot be reached, a cached copy will do.
    if (e instanceof HubConnectionError) {
      const p = await local();
      if (p) return p;
    }
    throw e;
  }
  return fetchFile(s, revision, filePath, meta, COMMIT_RE.test(revision) ? revision : undefined, progress);
}

/** The snapshot folder from the cache alone; throws OfflineMissingError naming what is absent. */
async function localSnapshot(s: Session, revision: string, opts: SnapshotOptions, progress: ProgressCallback): Promise<string> {
  const commit = await s.cache.resolveRevision(revision);
  const notCached = () => new OfflineMissingError(s.repoId, revision, [], `${s.repoId}@${revision} is not in the cache at ${s.cache.root}`);
  if (!commit) throw notCached();
  const manifest = await s.cache.readManifest(commit);
  const present = await s.cache.listSnapshot(commit);
  if (!manifest && present.length === 0) throw notCached();
  const presentSet = new Set(present);
  const keep = fileFilter(opts);
  const wanted = (manifest ?? present).filter(keep);
  const missing = wanted.filter((f) => !presentSet.has(f)).sort();
  // Literal include patterns (e.g. "model_index.json", "unet") and `required` must match something.
  for (const lit of (opts.allowPatterns ?? []).filter(isLiteralPattern)) {
    const m = compileGlob(lit);
    if (!present.some(m) && !missing.some(m)) missing.push(lit);
  }
  for (const r of opts.required ?? []) if (!presentSet.has(r) && !missing.includes(r)) missing.push(r);
  if (missing.length) throw new OfflineMissingError(s.repoId, revision, missing);
  const files = wanted.filter((f) => presentSet.has(f));
  for (const [index, file] of files.entries()) {
    const size = (await stat(s.cache.snapshotPath(commit, file))).size;
    progress({ file, loaded: size, total: size, status: 'cached', index, count: files.length });
  }
  return s.cache.snapshotDir(commit);
}

/**
 * Downloads the files of a repo revision (those passing the filters) into the cache and returns the
 * snapshot folder `$HF_HUB_CACHE/models--org--name/snapshots/<commit>`.
 */
export async function snapshotDownload(repoId: string, opts: SnapshotOptions = {}): Promise<string> {
  const s = await session(repoId, opts);
  const revision = opts.revision ?? 'main';
  const userProgress = opts.onProgress ?? (() => {});
  for (const r of opts.required ?? []) validateRepoPath(r, repoId);
  if (s.cfg.offline) return localSnapshot(s, revision, opts, userProgress);

  const keep = fileFilter(opts);
  if (!opts.refresh) {
    // A complete snapshot of a known file list needs no request at all.
    const commit = await s.cache.resolveRevision(revision);
    const manifest = commit && (await s.cache.readManifest(commit));
    if (commit && manifest && (opts.required ?? []).every((r) => manifest.includes(r))) {
      const wanted = manifest.filter(keep);
      const present = new Set(await s.cache.listSnapshot(commit));
      if (wanted.every((f) => present.has(f))) {
        await mkdir(s.cache.snapshotDir(commit), { recursive: true });
        return localSnapshot(s, revision, opts, userProgress);
      }
    }
  }

  let info: { commit: string; files: string[] };
  try {
    info = await repoInfo(s, revision);
  } catch (e) {
    if (e instanceof HubConnectionError) {
      try {
        return await localSnapshot(s, revision, opts, userProgress);
      } catch {
        /* fall through to the connection error */
      }
    }
    throw e;
  }
  const { commit, files } = info;
  for (const r of opts.required ?? []) if (!files.includes(r)) throw new EntryNotFoundError(repoId, revision, r);
  await s.cache.writeManifest(commit, files);
  await s.cache.writeRef(revision, commit);
  const wanted = files.filter(keep);
  await mkdir(s.cache.snapshotDir(commit), { recursive: true });

  const count = wanted.length;
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < count) {
      const index = next++;
      const file = wanted[index]!;
      const progress: ProgressCallback = (e) => userProgress({ ...e, index, count });
      try {
        const dst = s.cache.snapshotPath(commit, file);
        if (await exists(dst)) {
          const size = (await stat(dst)).size;
          progress({ file, loaded: size, total: size, status: 'cached' });
          continue;
        }
        const meta = await fileMetadata(s, commit, file);
        await fetchFile(s, revision, file, meta, commit, progress);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.maxWorkers ?? 4, count)) }, worker));
  if (failure !== undefined) throw failure;
  return s.cache.snapshotDir(commit);
}

/**
 * A local folder is returned as is; anything else is treated as a repo id (optionally
 * `org/name@revision`) and downloaded with `snapshotDownload`.
 */
export async function resolveRepo(idOrDir: string, opts: SnapshotOptions = {}): Promise<string> {
  const st = await stat(idOrDir).catch(() => undefined);
  if (st?.isDirectory()) return idOrDir;
  if (st) throw new HubInputError(`${idOrDir} is a file, expected a model folder or a Hugging Face repo id`);
  if (/^(\.{1,2}|~)?[\\/]/.test(idOrDir) || idOrDir.startsWith('.') || /^[A-Za-z]:[\\/]/.test(idOrDir)) {
    throw new HubInputError(`folder ${idOrDir} not found`);
  }
  const at = idOrDir.lastIndexOf('@');
  const [repoId, revision] = at > 0 ? [idOrDir.slice(0, at), idOrDir.slice(at + 1)] : [idOrDir, opts.revision];
  return snapshotDownload(repoId, { ...opts, revision });
}
