/**
 * A Hugging Face hub client for the browser, over `fetch` (the hub serves CORS): a repo's file list at a
 * revision (`/api/models/<repo>/revision/<rev>`, which also names the commit) and single files
 * (`/<repo>/resolve/<commit>/<path>`), each stored in a WeightStore keyed by endpoint, repo, commit and path.
 * Files are fetched only when asked for — the pipeline's own loader decides which (see io/hub_files.ts) — with
 * DownloadProgressEvent progress (initiate → progress → done; `cached: true` from the store) and an
 * AbortSignal. When the hub cannot be reached, the listing and the files come from the store (offline).
 */
import { FewstepError, ResourceLimitError, type ErrorCode } from '@fewstep/tensor';
import type { DownloadProgressEvent } from '@fewstep/models';
import type { WeightStore } from './weight_store.js';

/** Hub failures, with the same codes as @fewstep/weights-tools' HubError classes (the Node client). */
export class HubError extends FewstepError {
  constructor(code: Extract<ErrorCode, 'repo_not_found' | 'revision_not_found' | 'entry_not_found' | 'auth_required' | 'offline_missing' | 'integrity' | 'hub_connection' | 'hub_http' | 'hub_input'>, message: string, readonly status?: number | undefined) {
    super(code, message);
  }
}

export interface HubFile {
  /** Path in the repo, '/'-separated. */
  path: string;
  /** Bytes, when the hub said (`?blobs=true`). */
  size: number | null;
}

export interface RepoListing {
  endpoint: string;
  repo: string;
  /** The revision asked for (a branch, tag or commit). */
  revision: string;
  /** The commit it names. */
  commit: string;
  files: HubFile[];
  /** Read from the store because the hub could not be reached. */
  offline: boolean;
}

export interface HubCallOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((e: DownloadProgressEvent) => void) | undefined;
}

const encPath = (p: string) => p.split('/').map(encodeURIComponent).join('/');
const abortReason = (signal: AbortSignal | undefined): unknown => signal?.reason ?? new DOMException('aborted', 'AbortError');

export class BrowserHub {
  private inflight = new Map<string, Promise<Blob>>();

  constructor(
    readonly store: WeightStore,
    private readonly fetchFn: typeof fetch = (...a) => fetch(...a),
  ) {}

  private repoKey(endpoint: string, repo: string): string[] {
    return [endpoint, ...repo.split('/')];
  }

  /** The repo's files at `revision` (from the hub, or from the store when the hub cannot be reached). */
  async listRepo(endpoint: string, repo: string, revision: string, opts: HubCallOptions = {}): Promise<RepoListing> {
    const refKey = [...this.repoKey(endpoint, repo), '.refs', revision];
    const url = `${endpoint}/api/models/${encPath(repo)}/revision/${encodeURIComponent(revision)}?blobs=true`;
    let res: Response;
    try {
      res = await this.fetchFn(url, { signal: opts.signal ?? null, credentials: 'omit' });
    } catch (e) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      const cached = await this.store.getText(refKey);
      if (cached) return { ...(JSON.parse(cached) as Omit<RepoListing, 'offline'>), offline: true };
      throw new HubError(
        'offline_missing',
        `cannot reach ${endpoint} (${(e as Error).message || 'network error'}), and ${repo}@${revision} is not in this browser's cache yet`,
      );
    }
    if (!res.ok) {
      const code = res.headers.get('x-error-code');
      const where = `${repo}${revision !== 'main' ? `@${revision}` : ''}`;
      if (res.status === 401 || res.status === 403) {
        throw new HubError('auth_required', `${where}: the hub refused access (HTTP ${res.status}); gated or private repos need a token, which this page does not send`, res.status);
      }
      if (res.status === 404) {
        if (code === 'RevisionNotFound') throw new HubError('revision_not_found', `${repo}: revision "${revision}" not found on ${endpoint}`, 404);
        throw new HubError('repo_not_found', `model ${where} not found on ${endpoint} (HTTP 404): check the repo id${revision !== 'main' ? ' and the revision' : ''}`, 404);
      }
      throw new HubError('hub_http', `${endpoint}: listing ${where} failed with HTTP ${res.status}`, res.status);
    }
    const body = (await res.json()) as { sha?: unknown; siblings?: { rfilename?: unknown; size?: unknown; lfs?: { size?: unknown } | null }[] };
    if (typeof body.sha !== 'string' || !Array.isArray(body.siblings)) throw new HubError('hub_http', `${endpoint}: unexpected answer listing ${repo} (no sha / siblings)`);
    const files: HubFile[] = [];
    for (const s of body.siblings) {
      if (typeof s.rfilename !== 'string') continue;
      const size = typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : null;
      files.push({ path: s.rfilename, size });
    }
    const listing: RepoListing = { endpoint, repo, revision, commit: body.sha, files, offline: false };
    const json = JSON.stringify({ ...listing, offline: undefined });
    // Remembered under the revision asked for and under the commit, so either loads offline next time.
    await this.store.putText(refKey, json).catch(() => {});
    if (revision !== body.sha) await this.store.putText([...this.repoKey(endpoint, repo), '.refs', body.sha], json).catch(() => {});
    return listing;
  }

  /** The stored file, or null. */
  async cached(listing: RepoListing, path: string): Promise<Blob | null> {
    const blob = await this.store.get(this.fileKey(listing, path));
    const want = listing.files.find((f) => f.path === path)?.size;
    return blob && (want == null || blob.size === want) ? blob : null;
  }

  private fileKey(listing: RepoListing, path: string): string[] {
    return [...this.repoKey(listing.endpoint, listing.repo), listing.commit, ...path.split('/')];
  }

  /** One file of the listing: from the store, else downloaded into it (one transfer even when asked for twice at once). */
  file(listing: RepoListing, path: string, opts: HubCallOptions = {}): Promise<Blob> {
    const k = this.fileKey(listing, path).join('\u0000');
    let p = this.inflight.get(k);
    if (!p) {
      p = this.fetchFile(listing, path, opts).finally(() => this.inflight.delete(k));
      this.inflight.set(k, p);
    }
    return p;
  }

  private async fetchFile(listing: RepoListing, path: string, opts: HubCallOptions): Promise<Blob> {
    const { repo, endpoint } = listing;
    const emit = (status: DownloadProgressEvent['status'], loaded: number, total: number | null, cached?: boolean) =>
      opts.onProgress?.({ type: 'download', status, repo, file: path, loaded, total, ...(cached ? { cached } : {}) });
    const entry = listing.files.find((f) => f.path === path);
    if (!entry) throw new HubError('entry_not_found', `${repo}: no file ${path} at ${listing.commit.slice(0, 12)}`, 404);
    const hit = await this.cached(listing, path);
    if (hit) {
      emit('done', hit.size, hit.size, true);
      return hit;
    }
    emit('initiate', 0, entry.size);
    const url = `${endpoint}/${encPath(repo)}/resolve/${encodeURIComponent(listing.commit)}/${encPath(path)}`;
    let res: Response;
    try {
      res = await this.fetchFn(url, { signal: opts.signal ?? null, credentials: 'omit' });
    } catch (e) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      throw new HubError(
        listing.offline ? 'offline_missing' : 'hub_connection',
        listing.offline
          ? `${repo}/${path} is not in this browser's cache and ${endpoint} cannot be reached`
          : `downloading ${repo}/${path} from ${endpoint} failed: ${(e as Error).message || 'network error'}`,
      );
    }
    if (!res.ok || !res.body) {
      if (res.status === 401 || res.status === 403) throw new HubError('auth_required', `${repo}/${path}: the hub refused access (HTTP ${res.status})`, res.status);
      if (res.status === 404) throw new HubError('entry_not_found', `${repo}/${path}: not found (HTTP 404)`, 404);
      throw new HubError('hub_http', `${repo}/${path}: HTTP ${res.status}`, res.status);
    }
    const lengthHeader = res.headers.get('content-length');
    const encoded = res.headers.get('content-encoding');
    const total = entry.size ?? (lengthHeader && !encoded ? Number(lengthHeader) : null);
    let loaded = 0;
    let last = 0;
    const counter = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        loaded += chunk.byteLength;
        const t = performance.now();
        if (t - last > 100) {
          last = t;
          emit('progress', loaded, total);
        }
        ctl.enqueue(chunk);
      },
    });
    let blob: Blob;
    try {
      blob = await this.store.put(this.fileKey(listing, path), res.body.pipeThrough(counter), { expectedSize: total, signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      if (e instanceof FewstepError) throw e;
      const msg = (e as Error).message || String(e);
      if (/expected \d+/.test(msg)) throw new HubError('integrity', `${repo}/${msg}`);
      if ((e as DOMException).name === 'QuotaExceededError') {
        throw new ResourceLimitError(`${repo}/${path}: the browser's storage is full (${msg}); clear the weight cache or free disk space`);
      }
      throw new HubError('hub_connection', `downloading ${repo}/${path} failed: ${msg}`);
    }
    emit('done', blob.size, blob.size);
    return blob;
  }
}
