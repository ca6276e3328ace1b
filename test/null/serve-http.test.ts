// fewstep serve's HTTP side with a stand-in model (no GPU): the OpenAI request rules, errors in OpenAI's shape,
// auth, body limits, the bounded queue (429 + Retry-After), one job at a time, a disconnect cancelling its job,
// static files without path traversal, and a graceful close. The real model behind it: pipelines/serve.test.ts.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { AbortError, InvalidArgumentError } from '@fewstep/tensor';
import { parseImageRequest } from '../../packages/cli/src/serve/openai_request';
import { startServer, type ImageService, type RunningServer } from '../../packages/cli/src/serve/server';

const work = mkdtempSync(join(tmpdir(), 'fewstep-serve-'));
const page = join(work, 'page');
mkdirSync(join(page, 'assets'), { recursive: true });
writeFileSync(join(page, 'index.html'), '<!doctype html><title>fewstep</title>');
writeFileSync(join(page, 'assets', 'app.js'), 'console.log(1)');
writeFileSync(join(work, 'secret.txt'), 'TOP-SECRET-CONTENT');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A model that takes `ms` per request and records what it was asked and whether it was cancelled. */
function fakeService(ms = 50) {
  const log: { prompt: string; cancelled: boolean }[] = [];
  let active = 0, maxActive = 0;
  const service: ImageService = {
    modelId: 'org/tiny',
    async generate(req, signal) {
      if (req.steps === 999) throw new InvalidArgumentError('steps: 999 is too many for this model', 'steps');
      const entry = { prompt: req.prompt, cancelled: false };
      log.push(entry);
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        await new Promise<void>((ok, fail) => {
          const t = setTimeout(ok, ms);
          signal.addEventListener('abort', () => {
            clearTimeout(t);
            entry.cancelled = true;
            fail(new AbortError());
          });
        });
      } finally {
        active--;
      }
      return Array.from({ length: req.n }, (_, i) => ({ png: new Uint8Array([137, 80, 78, 71, i]), seed: String(req.seed ?? 7) }));
    },
  };
  return { service, log, maxActive: () => maxActive };
}

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function call(path: string, init: { method?: string; body?: unknown; key?: string; raw?: string } = {}) {
  const res = await fetch(server!.url + path, {
    method: init.method ?? (init.body !== undefined || init.raw !== undefined ? 'POST' : 'GET'),
    headers: { 'Content-Type': 'application/json', ...(init.key ? { Authorization: `Bearer ${init.key}` } : {}) },
    ...(init.raw !== undefined ? { body: init.raw } : init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

describe('OpenAI image request parsing', () => {
  it('takes the OpenAI fields and the extensions; rejects bad values naming the field', () => {
    expect(parseImageRequest({ prompt: 'a cat', n: 2, size: '512x384', response_format: 'b64_json', seed: 3, steps: 2, guidance_scale: 1.5, negative_prompt: 'blur' })).toEqual({
      prompt: 'a cat', n: 2, width: 512, height: 384, responseFormat: 'b64_json', model: undefined, seed: 3, steps: 2, guidance: 1.5, negativePrompt: 'blur',
    });
    const bad: [unknown, string, RegExp][] = [
      [[], '', /must be a JSON object/],
      [{}, 'prompt', /non-empty string is required/],
      [{ prompt: 'x', n: 0 }, 'n', /integer from 1 to 10/],
      [{ prompt: 'x', size: '512' }, 'size', /WIDTHxHEIGHT/],
      [{ prompt: 'x', response_format: 'png' }, 'response_format', /b64_json/],
      [{ prompt: 'x', seed: 1.5 }, 'seed', /integer/],
      [{ prompt: 'x', guidance_scale: 'high' }, 'guidance_scale', /number/],
      [{ prompt: 'x', bogus: 1 }, 'bogus', /unknown field/],
    ];
    for (const [body, param, re] of bad) {
      let err: any;
      try {
        parseImageRequest(body);
      } catch (e) {
        err = e;
      }
      expect(err?.status, param).toBe(400);
      expect(err.param ?? '', param).toBe(param);
      expect(err.message).toMatch(re);
    }
  });
});

describe('fewstep serve over HTTP (stand-in model)', () => {
  it('health, models, a generation, errors in the OpenAI shape', async () => {
    const f = fakeService(10);
    server = await startServer(f.service, { host: '127.0.0.1', port: 0, staticDir: page });
    expect((await call('/health')).json).toMatchObject({ status: 'ok', model: 'org/tiny', running: 0, waiting: 0 });
    expect((await call('/v1/models')).json).toMatchObject({ object: 'list', data: [{ id: 'org/tiny', object: 'model', owned_by: 'fewstep' }] });
    const ok = await call('/v1/images/generations', { body: { prompt: 'a cat', n: 2, seed: 5 } });
    expect(ok.status).toBe(200);
    expect(ok.json.data).toHaveLength(2);
    expect(Buffer.from(ok.json.data[1].b64_json, 'base64')).toEqual(Buffer.from([137, 80, 78, 71, 1]));
    expect(ok.json.data[0].seed).toBe('5');
    const url = await call('/v1/images/generations', { body: { prompt: 'a cat', response_format: 'url' } });
    expect(url.json.data[0].url).toMatch(/^data:image\/png;base64,/);
    // the served model by name, another name → 404 model_not_found
    expect((await call('/v1/images/generations', { body: { prompt: 'x', model: 'org/tiny' } })).status).toBe(200);
    const nf = await call('/v1/images/generations', { body: { prompt: 'x', model: 'dall-e-3' } });
    expect([nf.status, nf.json.error.code, nf.json.error.param, nf.json.error.type]).toEqual([404, 'model_not_found', 'model', 'invalid_request_error']);
    const badJson = await call('/v1/images/generations', { raw: '{"prompt": ' });
    expect([badJson.status, badJson.json.error.code]).toEqual([400, 'invalid_json']);
    expect(badJson.json.error.message).toMatch(/not valid JSON/);
    const badField = await call('/v1/images/generations', { body: { prompt: 'x', n: 'two' } });
    expect([badField.status, badField.json.error.param]).toEqual([400, 'n']);
    const modelRule = await call('/v1/images/generations', { body: { prompt: 'x', steps: 999 } });
    expect([modelRule.status, modelRule.json.error.param, modelRule.json.error.message]).toEqual([400, 'steps', 'steps: 999 is too many for this model']);
    const big = await call('/v1/images/generations', { body: { prompt: 'x'.repeat(70_000) } });
    expect([big.status, big.json.error.code]).toEqual([413, 'body_too_large']);
    expect((await call('/v1/images/generations')).status).toBe(405);
    expect((await call('/v1/nope')).status).toBe(404);
  });

  it('serves the page, and nothing outside its folder', async () => {
    server = await startServer(fakeService().service, { host: '127.0.0.1', port: 0, staticDir: page });
    const index = await call('/');
    expect([index.status, index.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    expect((await call('/assets/app.js')).headers.get('content-type')).toMatch(/javascript/);
    for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/../../secret.txt']) {
      const r = await new Promise<{ status: number; body: string }>((ok) => {
        // fetch normalises "..": send the raw path.
        const u = new URL(server!.url);
        request({ host: u.hostname, port: u.port, path: p }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => ok({ status: res.statusCode!, body: b }));
        }).end();
      });
      expect(r.status, p).toBe(404);
      expect(r.body).not.toContain('TOP-SECRET-CONTENT');
    }
  });

  it('--api-key: every API request needs the bearer token', async () => {
    server = await startServer(fakeService().service, { host: '127.0.0.1', port: 0, apiKey: 's3cret', staticDir: page });
    expect((await call('/health')).status).toBe(401);
    const bad = await call('/v1/images/generations', { body: { prompt: 'x' }, key: 'wrong' });
    expect([bad.status, bad.json.error.type, bad.json.error.code]).toEqual([401, 'authentication_error', 'invalid_api_key']);
    expect((await call('/v1/images/generations', { body: { prompt: 'x' }, key: 's3cret' })).status).toBe(200);
    expect((await call('/health', { key: 's3cret' })).status).toBe(200);
    expect((await call('/')).status).toBe(200);
  });

  it('20 concurrent requests: one job at a time, the rest queued or 429 with Retry-After', async () => {
    const f = fakeService(40);
    server = await startServer(f.service, { host: '127.0.0.1', port: 0, maxQueue: 4 });
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => call('/v1/images/generations', { body: { prompt: `p${i}`, seed: i } })));
    const ok = rs.filter((r) => r.status === 200), busy = rs.filter((r) => r.status === 429);
    expect(ok.length + busy.length).toBe(20);
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(busy.length).toBeGreaterThan(0);
    for (const r of busy) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.json.error.type).toBe('rate_limit_error');
    }
    for (const r of ok) expect(r.json.data[0].seed).toMatch(/^\d+$/);
    expect(f.maxActive()).toBe(1);
  });

  it('a client that disconnects cancels its job (running or queued); the next request still runs', async () => {
    const f = fakeService(2000);
    server = await startServer(f.service, { host: '127.0.0.1', port: 0 });
    const gone = new AbortController();
    const p = fetch(server.url + '/v1/images/generations', { method: 'POST', body: JSON.stringify({ prompt: 'leaving' }), signal: gone.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    expect(server.stats().running).toBe(1);
    gone.abort();
    await p;
    await new Promise((r) => setTimeout(r, 200));
    expect(f.log[0]).toEqual({ prompt: 'leaving', cancelled: true });
    expect(server.stats().running).toBe(0);
  });

  it('close(): queued requests get 503, the running one finishes within the grace time', async () => {
    const f = fakeService(300);
    server = await startServer(f.service, { host: '127.0.0.1', port: 0, graceMs: 5000 });
    const first = call('/v1/images/generations', { body: { prompt: 'first' } });
    await new Promise((r) => setTimeout(r, 50));
    const second = call('/v1/images/generations', { body: { prompt: 'second' } });
    await new Promise((r) => setTimeout(r, 50));
    const closing = server.close();
    server = undefined;
    const [a, b] = await Promise.all([first, second]);
    await closing;
    expect(a.status).toBe(200);
    expect([b.status, b.json.error.code]).toEqual([503, 'shutting_down']);
  });
});
