/**
 * Hugging Face hub downloads into the standard cache (see cache.ts for the layout), speaking the
 * hub's protocol like huggingface_hub:
 *
 *  - `GET {endpoint}/api/{models|datasets|spaces}/{repo}/revision/{rev}` → `sha` (commit) and
 *    `siblings[].rfilename`;
 *  - `HEAD {endpoint}/[datasets/]{repo}/resolve/{rev}/{path}` without following the CDN redirect: the
 *    commit, the ETag (`X-Linked-Etag` for LFS files, the sha256) and the size (`X-Linked-Size` /
 *    `Content-Length`) are read from that first response, the `Location` is where the bytes are;
 *  - `GET` the bytes into `blobs/<etag>.incomplete` (resumed with `Range` after a cut), check the size and
 *    the content against the ETag (sha256 for LFS files, the git blob sha1 for the others), rename into
 *    `blobs/`, then link `snapshots/<commit>/<path>` and write `refs/<rev>`.
 *
 * Concurrency: the download of a blob and its rename into place happen under huggingface_hub's per-blob lock
 * (`.locks/<repo folder>/<etag>.lock`, see lock.ts), so two processes — fewstep or Python — never write the
 * same `.incomplete`; whoever waited finds the blob in place and reuses it. Within one process, calls that
 * share a blob share one transfer.
 *
 * A branch whose snapshot is complete in the cache is reused without any request (`refresh: true`
 * asks the hub for the branch's latest commit instead). Files downloaded by Python are reused.
 *
 * Progress: `DownloadProgressEvent`s (see progress.ts). Cancellation: `signal` — aborting closes the
 * socket of the transfer in flight and rejects with an AbortError (code 'aborted'); a partial
 * `blobs/<etag>.incomplete` stays to be resumed, nothing is added to snapshots/ and no blob is
 * renamed into place unchecked.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, truncate } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { isAbortError, throwIfAborted } from '@fewstep/tensor';
import { COMMIT_RE, RepoCache, SHA256_RE, exists, fileSize, resolveConfig, validateRepoId, validateRepoPath, type HubConfig, type HubEnvOptions } from './cache.js';
import {
  AuthRequiredError,
  EntryNotFoundError,
  FileForbiddenError,
  HubConnectionError,
  HubError,
  HubHttpError,
  HubInputError,
  IntegrityError,
  NoMatchingFilesError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
} from './errors.js';
import { compileGlob, fileFilter, isLiteralPattern } from './glob.js';
import { NetworkError, discard, header, isRedirect, readText, requestFollow, toNetworkError, type HttpResponse } from './http.js';
import { withLock } from './lock.js';
import type { DownloadProgressCallback, DownloadProgressEvent } from './progress.js';
import { parseRepoSpec } from './repo_spec.js';

/** What every hub call takes: where (HubEnvOptions), which revision, how hard to try, and a way to stop. */
export interface HubRequestOptions extends HubEnvOptions {
  /** Branch, tag or commit hash (default 'main'). */
  revision?: string | undefined;
  /** Ask the hub for the branch's latest commit even when the cache already has it complete. */
  refresh?: boolean | undefined;
  /** Extra attempts after a network failure, each resuming the partial file (default 4). */
  retries?: number | undefined;
  /** Base delay between attempts; attempt k waits k × this (default 500 ms). */
  retryDelayMs?: number | undefined;
  /** Idle timeout of a request, in ms (default 30 s). */
  timeoutMs?: number | undefined;
  /** Cancels the call: the transfer in flight stops (its socket is closed) and the call rejects with an AbortError. */
  signal?: AbortSignal | undefined;
}

export interface DownloadOptions extends HubRequestOptions {
  /** Per file: 'initiate' → 'progress' (bytes) → 'done' (`cached: true` when no transfer was needed). */
  onProgress?: DownloadProgressCallback | undefined;
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
  opts: HubRequestOptions;
  signal: AbortSignal | undefined;
  authorization: string | undefined;
  /** True once the hub has answered the repo's file list (a later 403 on one file is about that file). */
  listed: boolean;
  /** Sends one DownloadProgressEvent about a file of this repo. */
  emit: (status: DownloadProgressEvent['status'], file: string, loaded: number, total: number | null, cached?: boolean) => void;
}

interface FileMeta {
  /** The revision asked for (for messages). */
  revision?: string | undefined;
  commit: string | undefined;
  etag: string;
  size: number | undefined;
  downloadUrl: URL;
}

async function session(repoId: string, opts: HubRequestOptions, onProgress?: DownloadProgressCallback | undefined): Promise<Session> {
  validateRepoId(repoId);
  const cfg = await resolveConfig(opts);
  const emit: Session['emit'] = onProgress
    ? (status, file, loaded, total, cached) => onProgress(status === 'done' ? { type: 'download', status, repo: repoId, file, loaded, total, cached: cached ?? false } : { type: 'download', status, repo: repoId, file, loaded, total })
    : () => {};
  return { cfg, cache: new RepoCache(cfg.cacheDir, repoId, cfg.repoType), repoId, opts, signal: opts.signal, authorization: cfg.token ? `Bearer ${cfg.token}` : undefined, listed: false, emit };
}

/**
 * Runs a public entry point: rejects at once when `signal` is already aborted, and turns whatever a
 * cancelled call fails with (a destroyed socket, a stream error) into the AbortError.
 */
async function cancellable<T>(signal: AbortSignal | undefined, what: string, fn: () => Promise<T>): Promise<T> {
  throwIfAborted(signal, what);
  try {
    return await fn();
  } catch (e) {
    if (signal?.aborted) throwIfAborted(signal, what);
    throw e;
  }
}

/** Waits `ms`, or rejects as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `p`, or a rejection as soon as `signal` aborts (p keeps running for whoever else awaits it). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const timeout = (s: Session) => s.opts.timeoutMs ?? 30_000;
const typePrefix = (s: Session) => (s.cfg.repoType === 'model' ? '' : `${s.cfg.repoType}s/`);
const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

function resolveUrl(s: Session, revision: string, file: string): URL {
  return new URL(`${s.cfg.endpoint}/${typePrefix(s)}${s.repoId}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`);
}

/** A retryable server-side failure (5xx), handled like a network error. */
class RetryableStatus extends NetworkError {}

/** Runs `fn`, retrying network failures a bounded number of times; then fails naming `target`. Never retries a cancelled call. */
async function withRetries<T>(s: Session, target: string, fn: (attempt: number) => Promise<T>): Promise<T> {
  const retries = Math.max(0, s.opts.retries ?? 4);
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(s.signal, target);
    try {
      return await fn(attempt);
    } catch (e) {
      throwIfAborted(s.signal, target);
      const net = toNetworkError(e);
      if (!net) throw e;
      if (attempt >= retries) throw new HubConnectionError(target, net.code, attempt + 1);
      await sleep((s.opts.retryDelayMs ?? 500) * (attempt + 1), s.signal);
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
  // A 403 on one file once the repo could be listed (or from a CDN, which never sees our token) is not about
  // authenticating to the repo: the hub refuses that file. Say so, with the hub's own message.
  if (file !== undefined && res.status === 403 && code !== 'GatedRepo' && code !== 'RepoNotFound' && (s.listed || res.url.origin !== new URL(ep).origin)) {
    return new FileForbiddenError(s.repoId, revision, file, res.url.href, detail.split('\n')[0]!.trim().slice(0, 300), hasToken);
  }
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
  const { res, text } = await withRetries(s, `the file list of ${s.repoId}`, async () => {
    const r = await requestFollow('GET', url, { accept: 'application/json' }, { authorization: s.authorization, timeoutMs: timeout(s), signal: s.signal });
    checkRetryable(r);
    // The body is read inside the retries: a cut in the middle of a big listing is a network failure too.
    return { res: r, text: r.status === 200 ? await readText(r, 64 << 20) : undefined };
  });
  if (text === undefined) throw await httpError(s, res, revision);
  let info: { sha?: unknown; siblings?: { rfilename?: unknown | undefined }[] };
  try {
    info = JSON.parse(text) as typeof info;
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

/** Asks the hub for the commit and file list, and records both in the cache (refs/ and our manifest). */
async function fetchRepoInfo(s: Session, revision: string): Promise<{ commit: string; files: string[] }> {
  const info = await repoInfo(s, revision);
  s.listed = true;
  await s.cache.writeManifest(info.commit, info.files);
  await s.cache.writeRef(revision, info.commit);
  return info;
}

const normalizeEtag = (e: string | undefined) => e?.replace(/^W\//, '').replace(/^"|"$/g, '');
const hasMeta = (r: HttpResponse) => header(r, 'x-repo-commit') !== undefined || header(r, 'x-linked-etag') !== undefined;

/**
 * `HEAD .../resolve/{rev}/{file}`: metadata from the first response that carries it (not the CDN's). Errors name
 * `shown` (the revision the caller asked for, when `revision` is the commit it resolved to).
 */
async function fileMetadata(s: Session, revision: string, file: string, shown = revision): Promise<FileMeta> {
  const url = resolveUrl(s, revision, file);
  const res = await withRetries(s, `${file} from ${s.repoId}`, async () => {
    const r = await requestFollow('HEAD', url, { 'accept-encoding': 'identity' }, { authorization: s.authorization, timeoutMs: timeout(s), stop: hasMeta, signal: s.signal });
    checkRetryable(r);
    return r;
  });
  discard(res);
  let downloadUrl: URL;
  if (isRedirect(res.status) && res.headers.location) downloadUrl = new URL(res.headers.location, res.url);
  else if (res.status === 200) downloadUrl = res.url;
  else throw await httpError(s, res, shown, file);
  const etag = normalizeEtag(header(res, 'x-linked-etag') ?? header(res, 'etag'));
  if (!etag || !/^[\w.-]+$/.test(etag)) throw new HubHttpError(res.status, url.href, `no usable ETag for ${file} (is HF_ENDPOINT a Hugging Face hub?)`);
  const sizeHeader = header(res, 'x-linked-size') ?? header(res, 'content-length');
  const size = sizeHeader !== undefined && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
  return { revision: shown, commit: header(res, 'x-repo-commit'), etag, size, downloadUrl };
}

const inflight = new Map<string, Promise<boolean>>();

/**
 * Makes `blobs/<etag>` hold the file (once per process even when several snapshot files or calls share it);
 * resolves true when this call transferred bytes, false when the blob was found in place (put there by another
 * process while we waited for its lock). A call waiting on another's transfer stops waiting when its own signal
 * aborts, and takes the transfer over when the other call was the one cancelled.
 */
async function downloadBlob(s: Session, file: string, meta: FileMeta, progress: (loaded: number) => void): Promise<boolean> {
  const blob = s.cache.blobPath(meta.etag);
  for (;;) {
    const running = inflight.get(blob);
    if (!running) break;
    try {
      return await untilAborted(running, s.signal);
    } catch (e) {
      if (s.signal?.aborted || !isAbortError(e)) throw e;
    }
  }
  const p = lockedDownload(s, file, meta, progress).finally(() => inflight.delete(blob));
  inflight.set(blob, p);
  return p;
}

/** The blob is in place and usable: present and, when the size is known, of that size. */
async function blobReady(blob: string, size: number | undefined): Promise<boolean> {
  const got = await fileSize(blob);
  return got !== undefined && (size === undefined || got === size);
}

/**
 * Under the blob's lock (huggingface_hub's, shared with Python): reuse the blob when another process finished it
 * while we waited, else download it (resuming its `.incomplete`), verify it and rename it into place.
 */
async function lockedDownload(s: Session, file: string, meta: FileMeta, progress: (loaded: number) => void): Promise<boolean> {
  await mkdir(s.cache.blobsDir, { recursive: true });
  const blob = s.cache.blobPath(meta.etag);
  return withLock(s.cache.lockPath(meta.etag), { signal: s.signal }, async () => {
    if (await blobReady(blob, meta.size)) return false;
    // A blob of the wrong size (an older, broken copy): replaced, never linked.
    await rm(blob, { force: true });
    await downloadBlobOnce(s, file, meta, progress);
    return true;
  });
}

async function hashFile(path: string, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  for await (const c of createReadStream(path, signal ? { signal } : {}) as AsyncIterable<Buffer>) hash.update(c);
}

/** The git blob id of a file: sha1("blob <size>\0" + bytes), what the hub's ETag is for a file outside LFS. */
async function gitBlobSha1(path: string, size: number, signal: AbortSignal | undefined): Promise<string> {
  const h = createHash('sha1').update(`blob ${size}\0`);
  await hashFile(path, h, signal);
  return h.digest('hex');
}

const GIT_SHA1_RE = /^[0-9a-f]{40}$/;

/** The transfer into `blobs/<etag>.incomplete` and, once checked, the rename to `blobs/<etag>`; the caller holds the blob's lock. */
async function downloadBlobOnce(s: Session, file: string, meta: FileMeta, progress: (loaded: number) => void): Promise<void> {
  const shown = meta.revision ?? meta.commit ?? '?';
  const blob = s.cache.blobPath(meta.etag);
  const inc = `${blob}.incomplete`;
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
      if (hash && have > 0) await hashFile(inc, hash, s.signal);
      if (meta.size !== undefined && have === meta.size && have > 0) return;
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (have > 0) headers['range'] = `bytes=${have}-`;
      const res = await requestFollow('GET', meta.downloadUrl, headers, { authorization: auth, timeoutMs: timeout(s), signal: s.signal });
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
        throw await httpError(s, res, shown, file);
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
        s.signal ? { signal: s.signal } : {},
      );
      const got = (await fileSize(inc)) ?? 0;
      // A body that ended early without an error (e.g. chunked): resume like after a cut.
      if (meta.size !== undefined && got < meta.size) throw new NetworkError('ECONNRESET', `body ended after ${got} of ${meta.size} bytes`);
      return;
    }
    throw new HubHttpError(0, meta.downloadUrl.href, 'the server keeps answering byte ranges that do not fit the partial file');
  });
  // Checked before anything is renamed into blobs/: a cancelled call stops here, the .incomplete kept.
  throwIfAborted(s.signal, `${file} from ${s.repoId}`);

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
  } else if (GIT_SHA1_RE.test(meta.etag)) {
    // A file outside LFS: the hub's ETag is its git blob id (files outside LFS are small; one more read).
    const digest = await gitBlobSha1(inc, got, s.signal);
    throwIfAborted(s.signal, `${file} from ${s.repoId}`);
    if (digest !== meta.etag) {
      await rm(inc, { force: true });
      throw new IntegrityError(s.repoId, file, `git blob sha1 ${digest} does not match the ETag ${meta.etag}`);
    }
  }
  await rename(inc, blob);
}

/** Puts one file into snapshots/<commit>/ (downloading its blob unless cached) and returns its path; emits its progress and 'done'. */
async function fetchFile(s: Session, revision: string, file: string, meta: FileMeta, commitHint: string | undefined): Promise<string> {
  const commit = commitHint ?? meta.commit;
  if (!commit || !COMMIT_RE.test(commit)) throw new HubHttpError(200, resolveUrl(s, revision, file).href, `no X-Repo-Commit header for ${file}`);
  const dst = s.cache.snapshotPath(commit, file);
  const total = meta.size ?? null;
  if (await exists(dst)) {
    const size = (await stat(dst)).size;
    s.emit('done', file, size, size, true);
  } else {
    const blob = s.cache.blobPath(meta.etag);
    let transferred = false;
    if (!(await blobReady(blob, meta.size))) {
      let last = 0;
      transferred = await downloadBlob(s, file, meta, (loaded) => {
        const t = Date.now();
        if (t - last >= 50 || loaded === total) {
          last = t;
          s.emit('progress', file, loaded, total);
        }
      });
      throwIfAborted(s.signal, `${file} from ${s.repoId}`);
    }
    const size = (await stat(blob)).size;
    await s.cache.linkSnapshot(commit, file, meta.etag);
    s.emit('done', file, size, size, !transferred);
  }
  await s.cache.writeRef(revision, commit);
  return dst;
}

/**
 * Downloads one file of a repo into the cache and returns its path in `snapshots/<commit>/`.
 * Uses the cache without a request when `refs/<revision>` (or the commit) already has the file.
 */
export async function hfHubDownload(repoId: string, filePath: string, opts: DownloadOptions = {}): Promise<string> {
  return cancellable(opts.signal, `download of ${filePath} from ${repoId}`, async () => {
    const s = await session(repoId, opts, opts.onProgress);
    validateRepoPath(filePath, repoId);
    const revision = opts.revision ?? 'main';
    const local = async (): Promise<string | undefined> => {
      const commit = await s.cache.resolveRevision(revision);
      const p = commit && s.cache.snapshotPath(commit, filePath);
      if (!p || !(await exists(p))) return undefined;
      const size = (await stat(p)).size;
      s.emit('initiate', filePath, 0, size);
      s.emit('done', filePath, size, size, true);
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
    s.emit('initiate', filePath, 0, meta.size ?? null);
    return fetchFile(s, revision, filePath, meta, COMMIT_RE.test(revision) ? revision : undefined);
  });
}

/**
 * The file list of a revision from the cache alone: our manifest of the commit, else (a cache written by
 * Python) the files its snapshot folder holds; undefined when the revision is not cached.
 */
async function cachedFileList(s: Session, revision: string): Promise<{ commit: string; files: string[]; complete: boolean } | undefined> {
  const commit = await s.cache.resolveRevision(revision);
  if (!commit) return undefined;
  const manifest = await s.cache.readManifest(commit);
  if (manifest) return { commit, files: manifest, complete: true };
  const present = await s.cache.listSnapshot(commit);
  return present.length ? { commit, files: present, complete: false } : undefined;
}

/**
 * Include / exclude patterns that select nothing are an error, not an empty snapshot: every include pattern
 * must match a file of the revision's list, and together with the excludes they must leave at least one file.
 */
function checkSelection(s: Session, revision: string, files: readonly string[], wanted: readonly string[], opts: SnapshotOptions): void {
  const allow = opts.allowPatterns ?? [];
  const unmatched = allow.filter((p) => !files.some(compileGlob(p)));
  if (unmatched.length) throw new NoMatchingFilesError(s.repoId, revision, unmatched, 'include', files.length);
  if (wanted.length === 0 && files.length > 0 && (allow.length > 0 || (opts.ignorePatterns ?? []).length > 0)) {
    throw new NoMatchingFilesError(s.repoId, revision, [], 'selection', files.length);
  }
}

const notCached = (s: Session, revision: string) => new OfflineMissingError(s.repoId, revision, [], `${s.repoId}@${revision} is not in the cache at ${s.cache.root}`);

/**
 * The files of a repo revision (paths relative to the repo root, as the hub lists them). From the cache
 * without a request when it knows the commit's full list (a complete earlier listing; `refresh: true`
 * asks the hub again); offline, or when the hub cannot be reached, from the cache (a snapshot written by
 * Python: the files it holds), else OfflineMissingError / HubConnectionError. `repoType: 'dataset'` for
 * datasets. Records the commit in `refs/<revision>`, like a download.
 */
export async function listRepoFiles(repoId: string, opts: HubRequestOptions = {}): Promise<string[]> {
  return cancellable(opts.signal, `file list of ${repoId}`, async () => {
    const s = await session(repoId, opts);
    const revision = opts.revision ?? 'main';
    if (s.cfg.offline) {
      const cached = await cachedFileList(s, revision);
      if (!cached) throw notCached(s, revision);
      return cached.files;
    }
    if (!opts.refresh) {
      const cached = await cachedFileList(s, revision);
      if (cached?.complete) return cached.files;
    }
    try {
      return (await fetchRepoInfo(s, revision)).files;
    } catch (e) {
      if (e instanceof HubConnectionError) {
        const cached = await cachedFileList(s, revision);
        if (cached) return cached.files;
      }
      throw e;
    }
  });
}

/** The snapshot folder from the cache alone; throws OfflineMissingError naming what is absent. */
async function localSnapshot(s: Session, revision: string, opts: SnapshotOptions): Promise<string> {
  const commit = await s.cache.resolveRevision(revision);
  if (!commit) throw notCached(s, revision);
  const manifest = await s.cache.readManifest(commit);
  const present = await s.cache.listSnapshot(commit);
  if (!manifest && present.length === 0) throw notCached(s, revision);
  const presentSet = new Set(present);
  const keep = fileFilter(opts);
  const wanted = (manifest ?? present).filter(keep);
  // With the revision's full list known, patterns that select nothing are said so (not "missing from the cache").
  if (manifest) checkSelection(s, revision, manifest, wanted, opts);
  const missing = wanted.filter((f) => !presentSet.has(f)).sort();
  // Literal include patterns (e.g. "model_index.json", "unet") and `required` must match something.
  for (const lit of (opts.allowPatterns ?? []).filter(isLiteralPattern)) {
    const m = compileGlob(lit);
    if (!present.some(m) && !missing.some(m)) missing.push(lit);
  }
  for (const r of opts.required ?? []) if (!presentSet.has(r) && !missing.includes(r)) missing.push(r);
  if (missing.length) throw new OfflineMissingError(s.repoId, revision, missing);
  const files = wanted.filter((f) => presentSet.has(f));
  const sizes = await Promise.all(files.map(async (f) => (await stat(s.cache.snapshotPath(commit, f))).size));
  for (const [i, file] of files.entries()) s.emit('initiate', file, 0, sizes[i]!);
  for (const [i, file] of files.entries()) s.emit('done', file, sizes[i]!, sizes[i]!, true);
  return s.cache.snapshotDir(commit);
}

/**
 * Downloads the files of a repo revision (those passing the filters) into the cache and returns the
 * snapshot folder `$HF_HUB_CACHE/models--org--name/snapshots/<commit>` (`datasets--…` for datasets).
 * Progress: every file is announced ('initiate') once the list is known, then reports its bytes and
 * its 'done'.
 */
export async function snapshotDownload(repoId: string, opts: SnapshotOptions = {}): Promise<string> {
  return cancellable(opts.signal, `download of ${repoId}`, async () => {
    const s = await session(repoId, opts, opts.onProgress);
    const revision = opts.revision ?? 'main';
    for (const r of opts.required ?? []) validateRepoPath(r, repoId);
    if (s.cfg.offline) return localSnapshot(s, revision, opts);

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
          return localSnapshot(s, revision, opts);
        }
      }
    }

    let info: { commit: string; files: string[] };
    try {
      info = await fetchRepoInfo(s, revision);
    } catch (e) {
      if (e instanceof HubConnectionError) {
        try {
          return await localSnapshot(s, revision, opts);
        } catch {
          /* fall through to the connection error */
        }
      }
      throw e;
    }
    const { commit, files } = info;
    for (const r of opts.required ?? []) if (!files.includes(r)) throw new EntryNotFoundError(repoId, revision, r);
    const wanted = files.filter(keep);
    checkSelection(s, revision, files, wanted, opts);
    await mkdir(s.cache.snapshotDir(commit), { recursive: true });
    for (const file of wanted) s.emit('initiate', file, 0, null);

    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined && next < wanted.length) {
        const file = wanted[next++]!;
        try {
          throwIfAborted(s.signal, `download of ${repoId}`);
          const dst = s.cache.snapshotPath(commit, file);
          if (await exists(dst)) {
            const size = (await stat(dst)).size;
            s.emit('done', file, size, size, true);
            continue;
          }
          const meta = await fileMetadata(s, commit, file, revision);
          await fetchFile(s, revision, file, meta, commit);
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.maxWorkers ?? 4, wanted.length)) }, worker));
    if (failure !== undefined) throw failure;
    return s.cache.snapshotDir(commit);
  });
}

/**
 * A local folder is returned as is; anything else is treated as a repo id (optionally
 * `org/name@revision`) and downloaded with `snapshotDownload`.
 */
export async function resolveRepo(idOrDir: string, opts: SnapshotOptions = {}): Promise<string> {
  throwIfAborted(opts.signal, `download of ${idOrDir}`);
  const st = await stat(idOrDir).catch(() => undefined);
  if (st?.isDirectory()) return idOrDir;
  if (st) throw new HubInputError(`${idOrDir} is a file, expected a model folder or a Hugging Face repo id`);
  if (/^(\.{1,2}|~)?[\\/]/.test(idOrDir) || idOrDir.startsWith('.') || /^[A-Za-z]:[\\/]/.test(idOrDir)) {
    throw new HubInputError(`folder ${idOrDir} not found`);
  }
  const { repoId, revision } = parseRepoSpec(idOrDir, opts.revision);
  return snapshotDownload(repoId, { ...opts, revision });
}
