// Property-based fuzzing of fewstep serve's request handling (fast-check), within a fixed budget (see
// test/helpers/fuzz.ts: FEWSTEP_FUZZ_SECONDS, default 3 s per target; FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED).
//  - parseImageRequest with any JSON value (objects of the known fields holding any value, deep nesting, long
//    strings, odd keys): a valid request, or an HttpError 400 naming the field in one short line.
//  - The HTTP server (a stand-in ImageService, as serve-http.test.ts) over raw TCP: requests of any method,
//    target, headers, framing (Content-Length, chunked, none, wrong) and body (JSON of any shape, random
//    bytes, oversized), and the same bytes mutated: every complete request gets, within bounded time, one
//    well-formed HTTP answer whose error bodies are OpenAI's JSON shape; a broken one at most that; the
//    connection closes; nothing outside the page's folder is served.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidArgumentError } from '@fewstep/tensor';
import { HttpError, MAX_IMAGES_PER_REQUEST, parseImageRequest } from '../../packages/cli/src/serve/openai_request';
import { startServer, type ImageService, type RunningServer } from '../../packages/cli/src/serve/server';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';

const KNOWN = ['prompt', 'n', 'size', 'response_format', 'model', 'seed', 'steps', 'guidance_scale', 'negative_prompt', 'quality', 'style', 'user'];
const deep = (depth: number): unknown => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);

/** A value for a field: anything JSON, and the edges of each field's range. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom<unknown>(null, 0, -1, 1, 10, 11, 1.5, -0, 1e308, -1e308, 2 ** 53, Number.MAX_SAFE_INTEGER, '', ' ', 'a cat', '512x512', '0x0', '99999x1', '512X512', 'b64_json', 'url', 'org/tiny', [], {}, true),
  fc.string({ maxLength: 50 }),
  fc.integer({ min: 3990, max: 4010 }).map((n) => 'p'.repeat(n)),
  fc.constantFrom(1000, 50_000).map(deep),
);
const requestObject: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.dictionary(fc.constantFrom(...KNOWN), fieldValue, { maxKeys: 6 }).map((o) => ({ prompt: 'a cat', ...o })) },
  { weight: 2, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom(...KNOWN, '__proto__', 'constructor', 'toString', 'a\nb', 'x'.repeat(5000)), fc.string({ maxLength: 12 })), fieldValue, { maxKeys: 6 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, [], '', 0, 'prompt', [{ prompt: 'x' }]) },
);

function checkRequest(body: unknown): string {
  try {
    const r = parseImageRequest(body);
    expect(typeof r.prompt === 'string' && r.prompt.trim() !== '' && r.prompt.length <= 4000).toBe(true);
    expect(Number.isInteger(r.n) && r.n >= 1 && r.n <= MAX_IMAGES_PER_REQUEST).toBe(true);
    for (const v of [r.width, r.height]) expect(v === undefined || (Number.isInteger(v) && v >= 0 && v <= 99999)).toBe(true);
    expect(['b64_json', 'url']).toContain(r.responseFormat);
    for (const v of [r.model, r.negativePrompt]) expect(v === undefined || typeof v === 'string').toBe(true);
    for (const v of [r.seed, r.steps]) expect(v === undefined || Number.isSafeInteger(v)).toBe(true);
    expect(r.guidance === undefined || (Number.isFinite(r.guidance) && r.guidance >= 0 && r.guidance <= 100)).toBe(true);
    return 'ok';
  } catch (e) {
    if (!(e instanceof HttpError)) throw new Error(`parseImageRequest: not an HttpError: ${(e as Error)?.stack ?? String(e)}`);
    expect(e.status).toBe(400);
    expect(/[\n\r\u2028\u2029]/.test(e.message), `one line: ${JSON.stringify(e.message.slice(0, 200))}`).toBe(false);
    expect(e.message.length).toBeLessThan(600);
    if (e.code === 'invalid_json') expect(e.param).toBeNull();
    else {
      expect(typeof e.param).toBe('string');
      expect(e.message.startsWith(`${e.param}: `), `names the field: ${e.message.slice(0, 200)}`).toBe(true);
    }
    JSON.parse(e.body());
    return `400 ${e.code}${e.param !== null && KNOWN.includes(e.param) ? ` ${e.param}` : ''}`;
  }
}

// ------------------------------------------------------------------------------------------- HTTP

const work = mkdtempSync(join(tmpdir(), 'fewstep-fuzz-serve-'));
const page = join(work, 'page');
mkdirSync(page);
writeFileSync(join(page, 'index.html'), '<!doctype html><title>fewstep</title>');
writeFileSync(join(work, 'secret.txt'), 'TOP-SECRET-CONTENT');
const KEY = 's3cret';

/** A stand-in model: answers at once, or refuses a value as a model would. */
const service: ImageService = {
  modelId: 'org/tiny',
  async generate(req) {
    if (req.steps !== undefined && req.steps > 500) throw new InvalidArgumentError(`steps: ${req.steps} is too many for this model`, 'steps');
    return Array.from({ length: req.n }, (_, i) => ({ png: new Uint8Array([137, 80, 78, 71, i]), seed: String(req.seed ?? 7) }));
  },
};

let open: RunningServer, keyed: RunningServer;
beforeAll(async () => {
  open = await startServer(service, { host: '127.0.0.1', port: 0, staticDir: page, maxBodyBytes: 16 * 1024 });
  keyed = await startServer(service, { host: '127.0.0.1', port: 0, apiKey: KEY, maxBodyBytes: 16 * 1024 });
});
afterAll(async () => {
  await open?.close();
  await keyed?.close();
  rmSync(work, { recursive: true, force: true });
});

interface RawRequest {
  keyed: boolean;
  method: string;
  target: string;
  headers: [string, string][];
  body: Uint8Array;
  framing: 'length' | 'chunked' | 'none' | 'short' | 'long';
  chunkSize: number;
  mutation: { kind: 'none' } | { kind: 'flip'; at: number; byte: number } | { kind: 'truncate'; keep: number } | { kind: 'splice'; at: number; insert: Uint8Array };
}

const utf8 = new TextEncoder();
const token = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&*+.^`|~'), minLength: 1, maxLength: 12 });
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const header: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constant('Content-Type'), fc.constantFrom('application/json', 'text/plain', 'application/json; charset=latin1', '')) },
  { weight: 6, arbitrary: fc.tuple(fc.constant('Authorization'), fc.oneof({ weight: 3, arbitrary: fc.constant(`Bearer ${KEY}`) }, fc.constantFrom('Bearer', 'Bearer ', 'Basic abc', `Bearer ${KEY}x`, `bearer ${KEY}`), headerValue)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('Expect', 'Connection', 'Accept', 'Accept-Encoding', 'Content-Encoding', 'Upgrade', 'Origin'), fc.oneof(headerValue, fc.constantFrom('100-continue', 'close', 'keep-alive', 'gzip', 'websocket', 'upgrade'))) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('Content-Length', 'Transfer-Encoding'), fc.constantFrom('0', '-1', '1e3', ' 5', 'abc', '99999999999999999999', 'chunked', 'gzip, chunked', 'identity')) },
  { weight: 2, arbitrary: fc.tuple(token, headerValue) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('X-Big'), fc.integer({ min: 1, max: 70_000 }).map((n) => 'b'.repeat(n))) },
);
const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  {
    weight: 4,
    arbitrary: requestObject.map((v) => {
      try {
        return utf8.encode(JSON.stringify(v) ?? '');
      } catch {
        return utf8.encode(`{"prompt":"x","n":${'['.repeat(8000)}${']'.repeat(8000)}}`); // too deep for the test's own JSON.stringify
      }
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 100 }).map((s) => utf8.encode(s)) },
  { weight: 1, arbitrary: fc.constantFrom(16 * 1024, 16 * 1024 + 1, 200_000).map((n) => utf8.encode(JSON.stringify({ prompt: 'x'.repeat(Math.max(0, n - 14)) }))) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 8000 }).map((d) => utf8.encode(`{"prompt":"x","n":${'['.repeat(d)}${']'.repeat(d)}}`)) },
);
const rawRequest: fc.Arbitrary<RawRequest> = fc.record({
  keyed: fc.boolean(),
  method: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('POST', 'GET', 'HEAD') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE') }, { weight: 1, arbitrary: token }),
  target: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('/v1/images/generations', '/v1/images/generations?x=1', '/health', '/v1/models') },
    { weight: 2, arbitrary: fc.constantFrom('/', '/index.html', '/../secret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/%zz', '/%00', '/a%00b', '//x:y', '*', 'http://h/v1/models', '/v1/', '/v1/nope', '/%E0%A4%A') },
    { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 30 }).map((s) => `/${s}`) },
  ),
  headers: fc.array(header, { maxLength: 4 }),
  body,
  framing: fc.constantFrom('length' as const, 'length' as const, 'chunked' as const, 'none' as const, 'short' as const, 'long' as const),
  chunkSize: fc.integer({ min: 1, max: 5000 }),
  mutation: fc.oneof(
    { weight: 6, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.nat(255) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), insert: fc.uint8Array({ maxLength: 12 }) }) },
  ),
});

/** The request's bytes, and whether it is complete as HTTP/1.1 framing goes (then an answer is due). */
function encode(r: RawRequest): { bytes: Uint8Array; complete: boolean } {
  const lines = [`${r.method} ${r.target} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [k, v] of r.headers) lines.push(`${k}: ${v}`);
  let payload: Uint8Array;
  if (r.framing === 'chunked') {
    lines.push('Transfer-Encoding: chunked');
    const parts: Uint8Array[] = [];
    for (let o = 0; o < r.body.length; o += r.chunkSize) {
      const c = r.body.subarray(o, o + r.chunkSize);
      parts.push(utf8.encode(`${c.length.toString(16)}\r\n`), c, utf8.encode('\r\n'));
    }
    parts.push(utf8.encode('0\r\n\r\n'));
    payload = Buffer.concat(parts);
  } else {
    if (r.framing !== 'none') lines.push(`Content-Length: ${r.framing === 'short' ? Math.max(0, r.body.length - 1) : r.framing === 'long' ? r.body.length + 10 : r.body.length}`);
    payload = r.framing === 'none' ? new Uint8Array(0) : r.body;
  }
  let bytes: Uint8Array = Buffer.concat([utf8.encode(`${lines.join('\r\n')}\r\n\r\n`), payload]);
  const m = r.mutation;
  if (m.kind === 'flip') {
    bytes = bytes.slice();
    bytes[m.at % bytes.length] = m.byte;
  } else if (m.kind === 'truncate') bytes = bytes.subarray(0, m.keep % (bytes.length + 1));
  else if (m.kind === 'splice') {
    const at = m.at % (bytes.length + 1);
    bytes = Buffer.concat([bytes.subarray(0, at), m.insert, bytes.subarray(at)]);
  }
  // A framing header of the generator's may conflict with the framing (two lengths, chunked + length, a bad
  // value: Node answers 400) or leave the body short (chunked without chunks): then no answer is owed, only
  // a bounded close — as for a body cut short or mutated bytes.
  const framingHeader = r.headers.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k));
  const complete = m.kind === 'none' && r.framing !== 'long' && !framingHeader;
  return { bytes, complete };
}

interface Response {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * The first final HTTP response in `data` (1xx interim answers skipped): the response, 'partial' while its
 * head or body is still coming. A malformed status line fails the test.
 */
function firstResponse(data: Buffer, head: boolean): Response | 'partial' {
  let rest = data;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return 'partial';
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    expect(m, `a status line: ${JSON.stringify(lines[0])}`).not.toBeNull();
    const status = Number(m![1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    rest = rest.subarray(end + 4);
    if (status < 200) continue;
    expect(headers['transfer-encoding'], 'answers have a Content-Length').toBeUndefined();
    const len = head ? 0 : Number(headers['content-length'] ?? 0);
    if (rest.length < len) return 'partial';
    return { status, headers, body: rest.subarray(0, len) };
  }
}

/**
 * Sends `bytes` and reads until a whole answer came (or the server closed). A client that half-closes is
 * taken for gone by Node's server (its requests aborted), so the connection stays open while an answer is
 * due (`graceMs` = Infinity); a request cut short (it may wait for its missing bytes) half-closes after
 * `graceMs`, and the server must then close. Either way within `ms`.
 */
function exchange(url: string, bytes: Uint8Array, head: boolean, graceMs: number, ms: number): Promise<{ res: Response | undefined; data: Buffer; closed: boolean; ms: number }> {
  const u = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    s.setNoDelay(true);
    const parts: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(grace);
      clearTimeout(timer);
      s.destroy();
      const data = Buffer.concat(parts);
      try {
        const r = data.length ? firstResponse(data, head) : 'partial';
        resolve({ res: r === 'partial' ? undefined : r, data, closed, ms: performance.now() - t0 });
      } catch (e) {
        reject(e);
      }
    };
    const grace = Number.isFinite(graceMs) ? setTimeout(() => s.end(), graceMs) : undefined;
    const timer = setTimeout(() => finish(false), ms);
    s.on('data', (c: Buffer) => {
      parts.push(c);
      try {
        if (firstResponse(Buffer.concat(parts), head) !== 'partial') finish(true);
      } catch (e) {
        done = true;
        s.destroy();
        reject(e);
      }
    });
    s.on('error', () => {}); // a reset after the answer (the server closing while we still write) is fine
    s.on('close', () => finish(true));
    s.write(bytes);
  });
}

describe('fuzz: fewstep serve requests', () => {
  it(`parseImageRequest with any JSON value: a valid request or an HttpError 400 naming the field (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('serve parseImageRequest');
    const regressions: unknown[] = [
      { prompt: 'x', n: deep(50_000) },
      { prompt: 'x', size: deep(50_000) },
      { prompt: 'x', ['k\n'.repeat(30_000)]: 1 },
      { prompt: 'x', negative_prompt: 'n'.repeat(60_000) },
      { prompt: 'x', model: 'm\n'.repeat(30_000) },
    ];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(requestObject, async (b) => {
        const label = `input ${i++}`;
        await stats.one(label, async () => {
          const outcome = checkRequest(b);
          if (outcome !== 'ok') stats.count(outcome);
          return outcome === 'ok';
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());

  it(`the server over raw HTTP: one well-formed answer (errors in OpenAI's JSON shape) in bounded time (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('serve http');
    const base: RawRequest = { keyed: false, method: 'POST', target: '/v1/images/generations', headers: [], body: utf8.encode('{"prompt":"a cat"}'), framing: 'length', chunkSize: 4, mutation: { kind: 'none' } };
    const regressions: RawRequest[] = [
      // A chunked body past the limit: the request was destroyed, and its answer with it.
      { ...base, body: utf8.encode(JSON.stringify({ prompt: 'x'.repeat(40_000) })), framing: 'chunked', chunkSize: 4096 },
      // A malformed %-escape or target: 500 "generation failed" (URIError / TypeError).
      { ...base, method: 'GET', target: '/%zz', framing: 'none' },
      { ...base, method: 'GET', target: '//x:y', framing: 'none' },
      // Deep JSON in a field: JSON.stringify in the message overflowed the stack (500).
      { ...base, body: utf8.encode(`{"prompt":"x","n":${'['.repeat(8000)}${']'.repeat(8000)}}`) },
      // What Node's parser refuses (a bad method, headers too large, an unknown Expect) answered in JSON.
      { ...base, method: 'GE T', framing: 'none' },
      { ...base, headers: [['X-Big', 'b'.repeat(70_000)]] },
      { ...base, headers: [['Expect', 'teapot']] },
    ];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(rawRequest, async (r) => {
        const label = `input ${i++} (${r.method} ${r.target.slice(0, 40)} ${r.framing} ${r.body.length} B${r.mutation.kind !== 'none' ? ` +${r.mutation.kind}` : ''})`;
        const { bytes, complete } = encode(r);
        await stats.one(label, async () => {
          const x = await exchange((r.keyed ? keyed : open).url, bytes, r.method === 'HEAD', complete ? Infinity : 0, 5000);
          expect(x.closed, `${label}: an answer, or the connection closed, in bounded time`).toBe(true);
          const res = x.res;
          if (complete) expect(res, `${label}: an answer (got ${JSON.stringify(x.data.subarray(0, 200).toString('latin1'))})`).toBeDefined();
          if (!res) {
            stats.count('no answer (incomplete request)');
            return false;
          }
          let code = '';
          try {
            code = String((JSON.parse(res.body.toString('utf8')) as { error?: { code?: unknown } }).error?.code ?? '');
          } catch {
            // not JSON: checked below
          }
          stats.count(`HTTP ${res.status}${code ? ` ${code}` : ''}`);
          expect(x.data.toString('latin1')).not.toContain('TOP-SECRET-CONTENT');
          const isJson = (res.headers['content-type'] ?? '').startsWith('application/json');
          if (res.status >= 400) {
            expect(isJson, `${label}: a ${res.status} answer is JSON`).toBe(true);
            if (r.method !== 'HEAD' || res.body.length > 0) {
              const j = JSON.parse(res.body.toString('utf8')) as { error: { message: unknown; type: unknown; param: unknown; code: unknown } };
              expect(typeof j.error.message).toBe('string');
              expect(/[\n\r]/.test(j.error.message as string), `${label}: one line`).toBe(false);
              expect(typeof j.error.type).toBe('string');
              expect(j.error.param === null || typeof j.error.param === 'string').toBe(true);
              expect(j.error.code === null || typeof j.error.code === 'string').toBe(true);
            }
            expect(res.status, `${label}: no 500 for a request`).not.toBe(500);
          } else if (isJson && res.body.length > 0) JSON.parse(res.body.toString('utf8'));
          return res.status < 400;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
    expect(open.stats().running + open.stats().waiting).toBe(0);
  }, fuzzTimeout());
});
