// A small fake Hugging Face hub on 127.0.0.1 for download tests: the revision API, `resolve` with
// ETag / X-Repo-Commit / X-Linked-* headers, LFS files redirected to a "CDN" (a second server on
// another port, or a path on the same server), Range requests, model and dataset repos, and knobs for
// faults (cuts, corruption, wrong sizes, slow bodies).
import { createHash } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  path: string;
  content: Buffer;
  /** Served through the CDN redirect with X-Linked-Etag = sha256 (like LFS files). */
  lfs?: boolean;
}

export interface FakeRepo {
  id: string;
  /** 'dataset': served under /api/datasets/ and /datasets/{id}/resolve/ (default 'model'). */
  type?: 'model' | 'dataset';
  commit: string;
  files: FakeFile[];
  /** Branch → commit; 'main' → commit by default. */
  branches?: Record<string, string>;
  /** When set, requests need `Authorization: Bearer <token>` (401 without, 403 with a wrong one). */
  token?: string;
  gated?: boolean;
}

export interface Recorded {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export class FakeHub {
  url = '';
  cdnUrl = '';
  requests: Recorded[] = [];
  /** File path → cut the connection after `bytes` body bytes, for the next `times` GETs. */
  cutAfter = new Map<string, { bytes: number; times: number }>();
  /** Answer Range requests with a full 200. */
  ignoreRange = false;
  /** Serve these files with flipped bytes (same length). */
  corrupt = new Set<string>();
  /** Advertise this size (X-Linked-Size / Content-Length of the HEAD) instead of the real one. */
  advertisedSize = new Map<string, number>();
  /** 'other': LFS redirects go to the CDN server (another origin); 'same': to /cdn-lfs/ on the hub. */
  cdnMode: 'other' | 'same' = 'other';
  /** File path → send its body `chunk` bytes at a time, `delayMs` apart. */
  slow = new Map<string, { chunk: number; delayMs: number }>();
  /** File paths whose body the client closed before it was all sent (in order). */
  closedEarly: string[] = [];
  /** File path → answer its resolve (HEAD and GET) with 403 and this X-Error-Message ('' for none), though the repo lists fine. */
  forbidden = new Map<string, string>();
  /** Answer as huggingface.co does for browsers (pages on another origin): CORS headers on every response, preflights. */
  cors = false;
  private hub = http.createServer((q, r) => this.handle('hub', q, r));
  private cdn = http.createServer((q, r) => this.handle('cdn', q, r));

  constructor(public repos: FakeRepo[]) {}

  async start(): Promise<this> {
    const listen = (s: http.Server) =>
      new Promise<number>((res) => s.listen(0, '127.0.0.1', () => res((s.address() as AddressInfo).port)));
    this.url = `http://127.0.0.1:${await listen(this.hub)}`;
    this.cdnUrl = `http://127.0.0.1:${await listen(this.cdn)}`;
    return this;
  }

  reset(): void {
    this.requests = [];
    this.cutAfter.clear();
    this.ignoreRange = false;
    this.corrupt.clear();
    this.advertisedSize.clear();
    this.cdnMode = 'other';
    this.slow.clear();
    this.closedEarly = [];
    this.forbidden.clear();
  }

  async close(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise<void>((res) => s.close(() => res()));
    }
  }

  /** Requests of one server / method (e.g. count('hub', 'GET')). */
  count(server?: 'hub' | 'cdn', method?: string): number {
    return this.requests.filter((r) => (!server || r.server === server) && (!method || r.method === method)).length;
  }

  private findBlob(sha: string): FakeFile | undefined {
    for (const repo of this.repos) for (const f of repo.files) if (f.lfs && sha256(f.content) === sha) return f;
    return undefined;
  }

  private handle(server: 'hub' | 'cdn', req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ server, method: req.method ?? '', path: decodeURIComponent(url.pathname), headers: req.headers });
    if (this.cors) {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-expose-headers', 'etag, content-length, content-range, x-repo-commit, x-linked-etag, x-linked-size, x-error-code');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-methods': 'GET, HEAD', 'access-control-allow-headers': 'authorization, range', 'access-control-max-age': '600' });
        res.end();
        return;
      }
    }
    const fail = (status: number, code?: string) => {
      if (code) res.setHeader('X-Error-Code', code);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ error: code ?? `status ${status}` }));
    };
    if (server === 'cdn' || url.pathname.startsWith('/cdn-lfs/')) {
      const f = this.findBlob(url.pathname.split('/').pop()!);
      if (!f) return fail(404);
      return this.sendBody(req, res, f, { etag: '"cdn-md5-etag"' });
    }

    const find = (type: string, id: string) => this.repos.find((r) => r.id === id && (r.type ?? 'model') === type);
    let m = /^\/api\/(models|datasets)\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const repo = find(m[1]!.slice(0, -1), m[2]!);
      if (!repo) return fail(404, 'RepoNotFound');
      if (!this.authorized(repo, req, fail)) return;
      const commit = this.commitOf(repo, decodeURIComponent(m[3]!));
      if (!commit) return fail(404, 'RevisionNotFound');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: repo.id, sha: commit, siblings: repo.files.map((f) => ({ rfilename: f.path })) }));
      return;
    }
    m = /^\/(datasets\/)?(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = find(m[1] ? 'dataset' : 'model', m[2]!);
      if (!repo) return fail(404, 'RepoNotFound');
      if (!this.authorized(repo, req, fail)) return;
      const commit = this.commitOf(repo, decodeURIComponent(m[3]!));
      if (!commit) return fail(404, 'RevisionNotFound');
      const path = m[4]!.split('/').map(decodeURIComponent).join('/');
      const f = repo.files.find((x) => x.path === path);
      if (!f) return fail(404, 'EntryNotFound');
      const refused = this.forbidden.get(f.path);
      if (refused !== undefined) {
        if (refused) res.setHeader('X-Error-Message', refused);
        return fail(403);
      }
      const size = this.advertisedSize.get(f.path) ?? f.content.length;
      if (f.lfs) {
        const sha = sha256(f.content);
        res.writeHead(302, {
          location: this.cdnMode === 'other' ? `${this.cdnUrl}/blobs/${sha}` : `/cdn-lfs/${sha}`,
          'x-repo-commit': commit,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(size),
          etag: '"redirect-etag-not-the-blob"',
          'content-length': '0',
        });
        res.end();
        return;
      }
      return this.sendBody(req, res, f, { etag: `"${gitSha1(f.content)}"`, 'x-repo-commit': commit }, size);
    }
    fail(404);
  }

  private commitOf(repo: FakeRepo, rev: string): string | undefined {
    const branches = repo.branches ?? { main: repo.commit };
    if (rev === repo.commit || Object.values(branches).includes(rev)) return rev;
    return branches[rev];
  }

  private authorized(repo: FakeRepo, req: IncomingMessage, fail: (s: number, c?: string) => void): boolean {
    if (!repo.token) return true;
    const auth = req.headers.authorization;
    if (!auth) {
      fail(401);
      return false;
    }
    if (auth !== `Bearer ${repo.token}`) {
      fail(403, repo.gated ? 'GatedRepo' : undefined);
      return false;
    }
    return true;
  }

  private sendBody(req: IncomingMessage, res: ServerResponse, f: FakeFile, headers: Record<string, string>, advertised?: number): void {
    let body = f.content;
    if (this.corrupt.has(f.path)) body = Buffer.from(body.map((b) => b ^ 0xff));
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...headers, 'content-length': String(advertised ?? body.length), 'accept-ranges': 'bytes' });
      res.end();
      return;
    }
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !this.ignoreRange) {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    res.writeHead(status, { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' });
    res.on('close', () => {
      if (!res.writableFinished) this.closedEarly.push(f.path);
    });
    const slow = this.slow.get(f.path);
    if (slow) {
      let at = 0;
      const next = () => {
        if (res.destroyed) return;
        const part = body.subarray(at, at + slow.chunk);
        at += part.length;
        if (at >= body.length) res.end(part);
        else res.write(part, () => setTimeout(next, slow.delayMs));
      };
      next();
      return;
    }
    const cut = this.cutAfter.get(f.path);
    if (cut && cut.times > 0) {
      cut.times--;
      // Send part of the body, then drop the connection (Content-Length promised more).
      res.write(body.subarray(0, cut.bytes), () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    res.end(body);
  }
}

export async function startFakeHub(repos: FakeRepo[]): Promise<FakeHub> {
  return new FakeHub(repos).start();
}

/** The Hugging Face variables the hub client reads; tests clear them so the machine's own never leak in. */
const HF_ENV_KEYS = ['HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'HF_ENDPOINT'];

/** Clears the HF variables (call in beforeAll); the returned function puts the old values back (afterAll). */
export function isolateHfEnv(): () => void {
  const saved = new Map(HF_ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of HF_ENV_KEYS) delete process.env[k];
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
