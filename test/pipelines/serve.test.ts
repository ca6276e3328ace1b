// `fewstep serve` end to end on the tiny SDXS-style model: the command loads it once and answers HTTP; the
// image equals the CLI's for the same seed; the official `openai` client works against it; 20 concurrent
// requests are answered or get 429; a disconnect cancels; malformed requests get 400s; Ctrl-C (the command's
// signal) shuts it down with exit 0.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { closeDevice } from '../helpers/gpu';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-serve-'));
const model = buildTinyModel(join(work, 'model'));
const stop = new AbortController();
let url = '';
let exit: Promise<number>;
const err: string[] = [];

beforeAll(async () => {
  let ready: (u: string) => void;
  const started = new Promise<string>((r) => (ready = r));
  const io: CliIO = {
    stdout: (s) => {
      const m = /serving .* on (http:\/\/\S+)/.exec(s);
      if (m) ready(m[1]!);
    },
    stderr: (s) => void err.push(s),
    isTTY: false,
    signal: stop.signal,
  };
  exit = main(['serve', '--model', model, '--port', '0', '--max-queue', '3', '--api-key', 'test-key-123', '--quiet'], io);
  url = await Promise.race([started, exit.then((c) => Promise.reject(new Error(`serve exited ${c}: ${err.join('')}`)))]);
}, 120_000);

afterAll(async () => {
  stop.abort();
  await exit;
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

const post = (body: unknown, init: { key?: string; signal?: AbortSignal } = {}) =>
  fetch(`${url}/v1/images/generations`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${init.key ?? 'test-key-123'}` },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(init.signal ? { signal: init.signal } : {}),
  });

async function cliPixels(seed: number, extra: string[] = []): Promise<Uint8Array> {
  const out = join(work, `cli-${seed}.png`);
  const io: CliIO = { stdout: () => {}, stderr: () => {}, isTTY: false };
  expect(await main(['generate', 'a lighthouse', '--model', model, '--seed', String(seed), '-W', '64', '-H', '64', '-o', out, '--quiet', ...extra], io)).toBe(0);
  return (await decodePng(new Uint8Array(readFileSync(out)), out)).data;
}

describe('fewstep serve (tiny model)', () => {
  it('an image equals the CLI image for the same seed; the official openai client works', async () => {
    const r = await post({ prompt: 'a lighthouse', size: '64x64', seed: 5 });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { created: number; data: { b64_json: string; seed: string }[] };
    expect(body.data).toHaveLength(1);
    expect(body.data[0]!.seed).toBe('5');
    const png = await decodePng(new Uint8Array(Buffer.from(body.data[0]!.b64_json, 'base64')), 'served.png');
    expect(JSON.parse(png.text['fewstep']!)).toMatchObject({ prompt: 'a lighthouse', seed: 5, width: 64, height: 64 });
    expect(Buffer.from(png.data).equals(Buffer.from(await cliPixels(5)))).toBe(true);

    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'test-key-123' });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([model]);
    const img = await client.images.generate({ prompt: 'a lighthouse', size: '64x64' as never, n: 2, seed: 5 } as never);
    expect(img.data).toHaveLength(2);
    const first = await decodePng(new Uint8Array(Buffer.from(img.data![0]!.b64_json!, 'base64')), 'client.png');
    const cli2 = join(work, 'cli-batch');
    expect(await main(['generate', 'a lighthouse', '--model', model, '--seed', '5', '-W', '64', '-H', '64', '--batch', '2', '--out-dir', cli2, '--quiet'], { stdout: () => {}, stderr: () => {}, isTTY: false })).toBe(0);
    const cliFirst = await decodePng(new Uint8Array(readFileSync(join(cli2, '0000-a-lighthouse.png'))), 'cli');
    expect(Buffer.from(first.data).equals(Buffer.from(cliFirst.data))).toBe(true);
    await expect(client.images.generate({ prompt: 'x', model: 'dall-e-3' })).rejects.toMatchObject({ status: 404 });
  });

  it('malformed requests get 400 naming the field; no key gets 401', async () => {
    const bad: [unknown, number, string | null][] = [
      ['{"prompt": "x"', 400, null],
      [{ prompt: '' }, 400, 'prompt'],
      [{ prompt: 'x', size: '60x64' }, 400, 'size'],
      [{ prompt: 'x', n: 100 }, 400, 'n'],
      [{ prompt: 'x', steps: 0 }, 400, 'steps'],
      [{ prompt: 'x', guidance_scale: -1 }, 400, 'guidance_scale'],
    ];
    for (const [body, status, param] of bad) {
      const r = await post(body);
      const j = (await r.json()) as { error: { param: string | null; message: string } };
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(j.error.param, JSON.stringify(body)).toBe(param);
    }
    expect((await post({ prompt: 'x' }, { key: 'wrong-key-000' })).status).toBe(401);
  });

  it('20 concurrent requests: each answered with an image or 429', async () => {
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => post({ prompt: `a cat ${i}`, size: '64x64', seed: i })));
    const codes = rs.map((r) => r.status);
    expect(codes.every((c) => c === 200 || c === 429), codes.join(',')).toBe(true);
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(4);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThan(0);
    for (const r of rs.filter((x) => x.status === 429)) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    for (const r of rs.filter((x) => x.status === 200)) expect(((await r.json()) as { data: unknown[] }).data).toHaveLength(1);
  });

  it('a client that disconnects cancels its generation; the server keeps serving', async () => {
    const gone = new AbortController();
    // 512×512 takes seconds on lavapipe: long enough to leave mid-generation.
    const p = post({ prompt: 'a slow one', size: '512x512', seed: 1 }, { signal: gone.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 100; i++) {
      const h = (await (await fetch(`${url}/health`, { headers: { Authorization: 'Bearer test-key-123' } })).json()) as { running: number };
      if (h.running) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const t0 = performance.now();
    gone.abort();
    await p;
    for (;;) {
      const h = (await (await fetch(`${url}/health`, { headers: { Authorization: 'Bearer test-key-123' } })).json()) as { running: number };
      if (!h.running) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const cancelMs = performance.now() - t0;
    console.log(`disconnect → job stopped in ${cancelMs.toFixed(0)} ms`);
    expect(cancelMs).toBeLessThan(20_000);
    expect((await post({ prompt: 'after', size: '64x64', seed: 2 })).status).toBe(200);
  });

  it('Ctrl-C: the command shuts down and exits 0', async () => {
    stop.abort();
    expect(await exit).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
