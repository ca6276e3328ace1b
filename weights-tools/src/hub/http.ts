/**
 * Minimal HTTP(S) client on node:http / node:https: manual redirects (so the hub's metadata headers
 * are read from the first response, and the Authorization header never follows a redirect to
 * another origin), streaming bodies, an idle timeout, and an AbortSignal that closes the socket.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { HubHttpError, HubInputError } from './errors.js';

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  url: URL;
  body: IncomingMessage;
}

export const USER_AGENT = `fewstep/0.1.0; node/${process.versions.node}`;

/** A network-level failure (no HTTP status): refused, reset, timed out, cut mid-body. */
export class NetworkError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'NetworkError';
  }
}

export function toNetworkError(e: unknown): NetworkError | undefined {
  if (e instanceof NetworkError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err?.code;
  if (
    code &&
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE'].includes(code)
  ) {
    return new NetworkError(code, err.message);
  }
  if (err?.message === 'aborted' || err?.message === 'socket hang up') return new NetworkError('ECONNRESET', err.message);
  return undefined;
}

/**
 * One request. `signal`: aborting destroys the request — before the response or while its body is
 * being read — and closes the socket.
 */
export function request(method: string, url: URL, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal | undefined): Promise<HttpResponse> {
  const mod = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
  if (!mod) return Promise.reject(new HubInputError(`unsupported URL ${url.href} (HF_ENDPOINT and redirects must be http: or https:)`));
  return new Promise((resolve, reject) => {
    const options: http.RequestOptions = { method, headers: { 'user-agent': USER_AGENT, ...headers } };
    if (signal) options.signal = signal;
    const req = mod.request(url, options, (res) => {
      // After the headers arrive the idle timeout keeps guarding the body (the socket stays the same).
      resolve({ status: res.statusCode ?? 0, headers: res.headers, url, body: res });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new NetworkError('ETIMEDOUT', `no data from ${url.host} for ${timeoutMs} ms`)));
    req.on('error', (e) => reject(toNetworkError(e) ?? e));
    req.end();
  });
}

export const isRedirect = (status: number) => status === 301 || status === 302 || status === 303 || status === 307 || status === 308;

/** Drops a response body we do not read (keeps keep-alive sockets usable). */
export function discard(res: HttpResponse): void {
  res.body.on('error', () => {});
  res.body.resume();
}

export async function readText(res: HttpResponse, limit = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.body.destroy();
      throw new HubHttpError(res.status, res.url.href, `response is larger than ${limit} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Follows redirects by hand (at most `max`). `authorization` is sent only to `authOrigin`; once a
 * redirect leaves that origin it is never sent again in this chain. `stop(res)` may end the chain
 * early on a redirect (it is then returned as is).
 */
export async function requestFollow(
  method: string,
  url: URL,
  headers: Record<string, string>,
  opts: { authorization?: string | undefined; timeoutMs: number; max?: number | undefined; stop?: ((res: HttpResponse) => boolean) | undefined; signal?: AbortSignal | undefined },
): Promise<HttpResponse> {
  const authOrigin = url.origin;
  let sendAuth = opts.authorization !== undefined;
  for (let hop = 0; ; hop++) {
    if (url.origin !== authOrigin) sendAuth = false;
    const h = { ...headers };
    if (sendAuth) h['authorization'] = opts.authorization!;
    const res = await request(method, url, h, opts.timeoutMs, opts.signal);
    if (!isRedirect(res.status) || !res.headers.location || opts.stop?.(res)) return res;
    discard(res);
    if (hop >= (opts.max ?? 10)) throw new HubHttpError(res.status, url.href, 'too many redirects');
    url = new URL(res.headers.location, url);
  }
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
