/**
 * The HTTP side of `fewstep serve`: an OpenAI-compatible `POST /v1/images/generations`, `GET /v1/models`,
 * `GET /health`, and the web page's static files — over one resident model, one GPU job at a time.
 *
 * - A bounded FIFO queue: when it is full a request gets 429 with `Retry-After` (seconds, from the mean job
 *   time). A client that disconnects cancels its job (queued: dropped; running: aborted at the next GPU
 *   dispatch).
 * - Bodies are size-limited (413, sent before the rest of a large body is read), must be JSON (400 naming the
 *   problem), and values are checked by `parseImageRequest` (400 naming the field) and then by the model's own
 *   rules (400).
 * - Whatever the bytes, an answer is one well-formed HTTP response whose errors are OpenAI's JSON shape with a
 *   one-line message: malformed targets and %-escapes (400), what Node's parser refuses (400, 431), CONNECT
 *   (405), an unknown Expect (417), HTTP/1.1 without Host (400). fuzz-serve.test.ts holds it to that.
 * - `apiKey`: every API request (`/v1/*`, `/health`) must carry `Authorization: Bearer <key>` (401 otherwise);
 *   the page's static files need none (they hold no data; the page sends the key with its API calls).
 * - `close()`: stops accepting, answers queued requests 503, lets the running job finish for `graceMs`, then
 *   aborts it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, normalize, resolve, sep } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { InvalidArgumentError, isAbortError } from '@fewstep/tensor';
import { HttpError, oneLine, parseImageRequest, type ImageRequest } from './openai_request.js';

/** The model behind the server. */
export interface ImageService {
  /** The id `GET /v1/models` lists and a request's `model` may name. */
  readonly modelId: string;
  /** PNGs for one request; `signal` aborts it (client gone, shutdown). Throws InvalidArgumentError for values the model cannot take. */
  generate(req: ImageRequest, signal: AbortSignal): Promise<{ png: Uint8Array; seed: string }[]>;
}

export interface ServeOptions {
  host: string;
  port: number;
  apiKey?: string | undefined;
  /** Requests waiting behind the running one before 429 (default 8). */
  maxQueue?: number | undefined;
  /** Largest request body (default 64 KiB). */
  maxBodyBytes?: number | undefined;
  /** The web page's files (packages/web/dist), served at `/`. */
  staticDir?: string | undefined;
  /** How long close() lets a running job finish before aborting it (default 10 s). */
  graceMs?: number | undefined;
  log?: ((line: string) => void) | undefined;
}

export interface RunningServer {
  readonly url: string;
  readonly server: Server;
  /** Jobs waiting and running now, and done so far. */
  stats(): { running: number; waiting: number; done: number; meanSeconds: number | null };
  close(): Promise<void>;
}

interface Job {
  req: ImageRequest;
  ctl: AbortController;
  resolve: (v: { png: Uint8Array; seed: string }[]) => void;
  reject: (e: unknown) => void;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
};

export async function startServer(service: ImageService, opts: ServeOptions): Promise<RunningServer> {
  const maxQueue = opts.maxQueue ?? 8, maxBody = opts.maxBodyBytes ?? 64 * 1024, graceMs = opts.graceMs ?? 10_000;
  const log = opts.log ?? (() => {});
  const waiting: Job[] = [];
  let running: Job | null = null;
  let done = 0, busySeconds = 0, closing = false;
  const created = Math.floor(Date.now() / 1000);

  const pump = () => {
    if (running || !waiting.length) return;
    const job = waiting.shift()!;
    running = job;
    const t0 = performance.now();
    service.generate(job.req, job.ctl.signal).then(job.resolve, job.reject).finally(() => {
      running = null;
      done++;
      busySeconds += (performance.now() - t0) / 1000;
      pump();
    });
  };

  const enqueue = (req: ImageRequest, ctl: AbortController) => {
    if (closing) throw new HttpError(503, 'the server is shutting down', null, 'shutting_down', 'server_error');
    if (waiting.length >= maxQueue) {
      const mean = done ? busySeconds / done : 5;
      const retry = Math.max(1, Math.ceil(mean * (waiting.length + 1)));
      throw new HttpError(429, `the queue is full (${waiting.length} waiting behind the running request); retry in about ${retry} s`, null, 'queue_full', 'rate_limit_error', { 'Retry-After': String(retry) });
    }
    return new Promise<{ png: Uint8Array; seed: string }[]>((resolve, reject) => {
      const job: Job = { req, ctl, resolve, reject };
      waiting.push(job);
      ctl.signal.addEventListener('abort', () => {
        const i = waiting.indexOf(job);
        if (i >= 0) {
          waiting.splice(i, 1);
          reject(ctl.signal.reason);
        }
      });
      pump();
    });
  };

  const authorized = (req: IncomingMessage) => {
    if (!opts.apiKey) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const got = Buffer.from(m?.[1] ?? ''), want = Buffer.from(opts.apiKey);
    return got.length === want.length && timingSafeEqual(got, want);
  };

  /**
   * The body as text, at most maxBody bytes. A larger one (declared, or chunked and seen growing) is answered
   * 413 at once with `Connection: close`: the rest is read and dropped until the answer is sent and the
   * connection closed (destroying the request would take the answer with it).
   */
  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolveBody, reject) => {
      const tooLarge = (message: string) => {
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, message, null, 'body_too_large', 'invalid_request_error', { Connection: 'close' }));
      };
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > maxBody) return tooLarge(`the request body is ${declared} bytes; at most ${maxBody}`);
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) tooLarge(`the request body is larger than ${maxBody} bytes`);
        else chunks.push(c);
      });
      req.on('end', () => resolveBody(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const generations = async (req: IncomingMessage, res: ServerResponse) => {
    const text = await readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new HttpError(400, `the request body is not valid JSON (${oneLine((e as Error).message)})`, null, 'invalid_json');
    }
    const r = parseImageRequest(body);
    if (r.model !== undefined && r.model !== service.modelId) {
      throw new HttpError(404, `The model '${oneLine(r.model)}' does not exist (this server runs '${service.modelId}'; see GET /v1/models)`, 'model', 'model_not_found');
    }
    // A client that goes away cancels its job: 'close' on the response before it was sent.
    const ctl = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort();
    });
    let images: { png: Uint8Array; seed: string }[];
    try {
      images = await enqueue(r, ctl);
    } catch (e) {
      if (e instanceof InvalidArgumentError) throw new HttpError(400, e.message, e.field ?? null, 'invalid_value');
      throw e;
    }
    const data = images.map(({ png, seed }) => {
      const b64 = Buffer.from(png).toString('base64');
      return r.responseFormat === 'url' ? { url: `data:image/png;base64,${b64}`, seed } : { b64_json: b64, seed };
    });
    json(res, 200, { created: Math.floor(Date.now() / 1000), data });
  };

  const serveStatic = async (res: ServerResponse, urlPath: string) => {
    if (!opts.staticDir) throw new HttpError(404, 'not found', null, 'not_found');
    const root = resolve(opts.staticDir);
    let rel: string;
    try {
      rel = decodeURIComponent(urlPath);
    } catch {
      throw new HttpError(400, `${oneLine(urlPath)}: a malformed %-escape in the path`, null, 'invalid_path');
    }
    if (rel.includes('\0')) throw new HttpError(404, `${oneLine(urlPath)}: not found`, null, 'not_found');
    if (rel.endsWith('/')) rel += 'index.html';
    const file = resolve(root, '.' + normalize(rel));
    if (file !== root && !file.startsWith(root + sep)) throw new HttpError(404, 'not found', null, 'not_found');
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) throw new HttpError(404, `${oneLine(urlPath)}: not found`, null, 'not_found');
    const bytes = await readFile(file);
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': bytes.length, 'Cache-Control': 'no-cache' });
    res.end(bytes);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && req.headers.host === undefined) throw new HttpError(400, 'an HTTP/1.1 request needs a Host header', null, 'bad_request');
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      throw new HttpError(400, `${oneLine(req.url ?? '')}: not a valid request target`, null, 'invalid_path');
    }
    const api = path.startsWith('/v1/') || path === '/health';
    if (api && !authorized(req)) throw new HttpError(401, 'a valid API key is required (Authorization: Bearer <key>)', null, 'invalid_api_key');
    const allow = (method: string) => {
      if (req.method !== method) throw new HttpError(405, `${oneLine(path)} takes ${method}, not ${req.method}`, null, 'method_not_allowed', 'invalid_request_error', { Allow: method });
    };
    if (path === '/health') {
      allow('GET');
      return json(res, 200, { status: closing ? 'shutting_down' : 'ok', model: service.modelId, ...stats() });
    }
    if (path === '/v1/models') {
      allow('GET');
      return json(res, 200, { object: 'list', data: [{ id: service.modelId, object: 'model', created, owned_by: 'fewstep' }] });
    }
    if (path === '/v1/images/generations') {
      allow('POST');
      return generations(req, res);
    }
    if (api) throw new HttpError(404, `${oneLine(path)}: no such endpoint (POST /v1/images/generations, GET /v1/models, GET /health)`, null, 'not_found');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`, null, 'method_not_allowed', 'invalid_request_error', { Allow: 'GET' });
    return serveStatic(res, path);
  };

  const stats = () => ({ running: running ? 1 : 0, waiting: waiting.length, done, meanSeconds: done ? busySeconds / done : null });

  // Node's own answer to an HTTP/1.1 request without Host is a bare 400; handle() gives it in the JSON shape.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const t0 = performance.now();
    handle(req, res)
      .catch((e: unknown) => {
        if (res.headersSent || res.destroyed) return;
        if (e instanceof HttpError) return json(res, e.status, e.body(), e.headers);
        // Cancelled: by shutdown (503), else the client is gone and the answer goes nowhere.
        if (isAbortError(e)) return json(res, closing ? 503 : 499, new HttpError(closing ? 503 : 499, 'the request was cancelled', null, 'cancelled', 'server_error').body());
        log(`error: ${(e as Error).stack ?? e}`);
        json(res, 500, new HttpError(500, `generation failed: ${(e as Error).message.split('\n')[0]}`).body());
      })
      .finally(() => {
        res.on('finish', () => log(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - t0).toFixed(0)} ms`));
      });
  });
  server.requestTimeout = 0; // a queued generation may legitimately take minutes
  /**
   * Answers on a socket Node's HTTP layer has let go of (a CONNECT, a request its parser refused), then lets
   * it close: what the client still sends is read and dropped (an unread socket never sees the client's end
   * and would stay open), and it is destroyed after a few seconds whatever the client does.
   */
  const answerRaw = (socket: Duplex, status: number, reason: string, body: string, extra = '') => {
    socket.on('error', () => {});
    socket.resume();
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`);
    setTimeout(() => socket.destroy(), 5000).unref();
  };
  // Every socket, for close(): those Node's HTTP layer let go of are not among closeAllConnections()'.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // CONNECT (a proxy tunnel) is no request this server takes: 405 in the JSON shape (Node would just close).
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answerRaw(socket, 405, 'Method Not Allowed', new HttpError(405, `${req.method} is not allowed here`, null, 'method_not_allowed').body(), 'Allow: GET, POST\r\n');
  });
  // An Expect header other than 100-continue: 417 in the JSON shape (Node's own answer has no body).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    json(res, 417, new HttpError(417, `Expect: ${oneLine(String(req.headers.expect ?? ''))} is not supported (only 100-continue)`, null, 'expectation_failed').body(), { Connection: 'close' });
  });
  // A request Node's parser refuses (bad request line or headers, headers too large, a header timeout) gets an
  // answer in the same JSON shape as every other error, then the connection is closed.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const [status, reason, code]: [number, string, string] =
      err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'headers_too_large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'request_timeout']
      : [400, 'Bad Request', 'bad_request'];
    const answer = () => answerRaw(socket, status, reason, new HttpError(status, `the request could not be parsed (${oneLine(err.code ?? err.message)})`, null, code).body());
    // Bytes after a complete request (pipelined) that do not parse: that request is answered first. (A request
    // whose own body is cut short is the one refused: its handler's answer cannot come.)
    const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (pending && !pending.writableFinished && pending.req.complete) {
      pending.once('finish', answer);
      pending.once('close', () => (pending.writableFinished ? undefined : socket.destroy()));
    } else answer();
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port, opts.host, () => ok());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  return {
    url: `http://${host}:${port}`,
    server,
    stats,
    async close() {
      closing = true;
      for (const job of waiting.splice(0)) job.reject(new HttpError(503, 'the server is shutting down', null, 'shutting_down', 'server_error'));
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      const job = running as Job | null;
      if (job) {
        const timer = setTimeout(() => job.ctl.abort(), graceMs);
        await new Promise<void>((ok) => {
          const check = () => (running ? setTimeout(check, 20) : ok());
          check();
        });
        clearTimeout(timer);
      }
      server.closeAllConnections?.();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

