// What the serve fuzzer (fuzz-serve.test.ts) found, one test each: requests that got a 500, no answer, an
// answer outside OpenAI's JSON error shape, or kept close() waiting. Raw TCP, so nothing is normalised.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseImageRequest } from '../../packages/cli/src/serve/openai_request';
import { startServer, type ImageService, type RunningServer } from '../../packages/cli/src/serve/server';

const work = mkdtempSync(join(tmpdir(), 'fewstep-hostile-serve-'));
writeFileSync(join(work, 'index.html'), '<!doctype html>');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const service: ImageService = {
  modelId: 'org/tiny',
  async generate(req) {
    await new Promise((r) => setTimeout(r, 30));
    return [{ png: new Uint8Array([137, 80, 78, 71]), seed: String(req.seed ?? 1) }];
  },
};

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Sends raw bytes; collects what comes back until the server closes or `ms` pass (then the socket is left open if `keepOpen`). */
function raw(url: string, text: string, ms = 2000, keepOpen = false): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    let out = '';
    const t = setTimeout(() => {
      if (!keepOpen) s.destroy();
      resolve(out);
    }, ms);
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.write(text);
  });
}

/** The answers in `out`: status and parsed JSON body of each. */
function answers(out: string): { status: number; json: any }[] {
  const res: { status: number; json: any }[] = [];
  let rest = out;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end);
    const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    const body = rest.slice(end + 4, end + 4 + len);
    res.push({ status: Number(head.slice(9, 12)), json: body ? JSON.parse(body) : undefined });
    rest = rest.slice(end + 4 + len);
  }
  return res;
}

const post = (body: string, headers = '') => `POST /v1/images/generations HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

describe('fewstep serve: hostile requests found by the fuzzer', () => {
  it('a chunked body past the limit gets its 413 (the request was destroyed with its answer)', async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0, maxBodyBytes: 1024 });
    const body = JSON.stringify({ prompt: 'x'.repeat(5000) });
    const out = await raw(server.url, `POST /v1/images/generations HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
    expect(answers(out)).toEqual([{ status: 413, json: { error: { message: 'the request body is larger than 1024 bytes', type: 'invalid_request_error', param: null, code: 'body_too_large' } } }]);
    // …and through fetch, streamed.
    const stream = new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode('y'.repeat(300_000))), c.close()) });
    const r = await fetch(`${server.url}/v1/images/generations`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect([r.status, ((await r.json()) as any).error.code]).toEqual([413, 'body_too_large']);
  });

  it('a malformed %-escape or request target is a 400, not a 500', async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0, staticDir: work });
    expect(answers(await raw(server.url, 'GET /%zz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'))[0]).toMatchObject({ status: 400, json: { error: { code: 'invalid_path' } } });
    expect(answers(await raw(server.url, 'GET //x:y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'))[0]).toMatchObject({ status: 400, json: { error: { message: '//x:y: not a valid request target' } } });
    expect(answers(await raw(server.url, 'GET /a%00b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'))[0]?.status).toBe(404);
  });

  it('a deeply nested value is a 400 naming its field (JSON.stringify in the message overflowed the stack: 500)', async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0 });
    const deep = `${'['.repeat(8000)}${']'.repeat(8000)}`;
    const [a] = answers(await raw(server.url, post(`{"prompt":"x","n":${deep}}`)));
    expect(a).toEqual({ status: 400, json: { error: { message: 'n: must be an integer from 1 to 10, got an array of 1 item', type: 'invalid_request_error', param: 'n', code: 'invalid_value' } } });
  });

  it('field names and values in messages are one short line; negative_prompt and model have length limits', () => {
    const err = (body: unknown) => {
      try {
        parseImageRequest(body);
      } catch (e) {
        return e as { message: string; param: string | null };
      }
      throw new Error('accepted');
    };
    const k = err({ prompt: 'x', ['a\nb'.repeat(1000)]: 1 });
    expect(k.message.startsWith('a\\u000ab')).toBe(true);
    expect(k.message.length).toBeLessThan(600);
    expect(k.param).toBe(k.message.slice(0, k.message.indexOf(": unknown field")));
    expect(k.param!.length).toBeLessThan(700);
    expect(err({ prompt: 'x', size: 's\n'.repeat(100) }).message).toBe(`size: must be "WIDTHxHEIGHT" (e.g. "512x512"), got "${'s\\u000a'.repeat(20)}…"`);
    expect(err({ prompt: 'x', negative_prompt: 'n'.repeat(4001) }).message).toBe('negative_prompt: at most 4000 characters');
    expect(err({ prompt: 'x', model: 'm'.repeat(257) }).message).toBe('model: at most 256 characters');
  });

  it("what Node's parser or handlers answer on their own is in the JSON shape: bad request line, huge headers, no Host, Expect, CONNECT", async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0 });
    const cases: [string, number, string][] = [
      ['GARBAGE\r\n\r\n', 400, 'bad_request'],
      [`GET /health HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(70_000)}\r\n\r\n`, 431, 'headers_too_large'],
      ['GET /health HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'bad_request'],
      ['GET /health HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n', 417, 'expectation_failed'],
      ['CONNECT /health HTTP/1.1\r\nHost: a\r\n\r\n', 405, 'method_not_allowed'],
    ];
    for (const [req, status, code] of cases) {
      const [a] = answers(await raw(server.url, req));
      expect([a?.status, a?.json?.error?.code], req.slice(0, 30)).toEqual([status, code]);
      expect(a!.json.error.type).toBe('invalid_request_error');
    }
    // HTTP/1.0 needs no Host.
    expect(answers(await raw(server.url, 'GET /health HTTP/1.0\r\n\r\n'))[0]?.status).toBe(200);
  });

  it('bytes that do not parse after a complete request: that request is answered first, then a 400', async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0 });
    const body = '{"prompt":"a cat"}';
    const out = await raw(server.url, `POST /v1/images/generations HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length - 1}\r\n\r\n${body}`);
    expect(answers(out).map((a) => a.status)).toEqual([400, 400]); // the JSON is cut short by its length: invalid_json; then "}" is no request
    const ok = await raw(server.url, `${post(body).replace('Connection: close\r\n', '')}GARBAGE\r\n\r\n`);
    expect(answers(ok).map((a) => a.status)).toEqual([200, 400]);
  });

  it('close() does not wait for sockets the HTTP layer let go of (a CONNECT client that stays connected)', async () => {
    server = await startServer(service, { host: '127.0.0.1', port: 0 });
    void raw(server.url, 'CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n', 30_000, true);
    void raw(server.url, 'GARBAGE\r\n\r\n', 30_000, true);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await server.close();
    server = undefined;
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
