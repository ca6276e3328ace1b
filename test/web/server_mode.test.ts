// "Generate on the server": the page's ServerBackend against a real `fewstep serve` (the tiny SDXS model),
// first from Node (the same fetch API the page uses: the image, its metadata, the API key, a 400 naming the
// field), then the built page served by `fewstep serve --page` in chromium with backend=server&run=1 — the
// image is the server's, which is the Node pipeline's.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeFiles } from '@fewstep/tensor/node';
import { StableDiffusionPipeline, decodePng, type RGBImage } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { ServerBackend } from '../../packages/web/src/backend/server_backend';
import { buildPage } from '../../packages/web/build.mjs';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';
import { chromiumPath, launchChromium } from './browser';

const work = mkdtempSync(join(tmpdir(), 'fewstep-web-serve-'));
const model = buildTinyModel(join(work, 'model'));
const KEY = 'web-test-key-1';
const stop = new AbortController();
let url = '';
let exit: Promise<number>;
const err: string[] = [];
const spec = { source: { kind: 'hub' as const, repo: 'x/y', revision: 'main', endpoint: 'https://huggingface.co' }, dtype: 'f32' as const };

beforeAll(async () => {
  mkdirSync(new URL('./artifacts/', import.meta.url).pathname, { recursive: true });
  const site = await buildPage({ outdir: join(work, 'site'), source: true, minify: false, quiet: true });
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
  exit = main(['serve', '--model', model, '--port', '0', '--api-key', KEY, '--page', site.outdir, '--quiet'], io);
  url = await Promise.race([started, exit.then((c) => Promise.reject(new Error(`serve exited ${c}: ${err.join('')}`)))]);
}, 120_000);

afterAll(async () => {
  stop.abort();
  await exit;
  await closeDevice();
  rmSync(work, { recursive: true, force: true });
});

async function nodeImage(prompt: string, seed: number): Promise<RGBImage> {
  const pipe = await StableDiffusionPipeline.fromPretrained(model, { device: await gpuDevice(), io: nodeFiles, dtype: 'f32' });
  try {
    return (await pipe.generate({ prompt, seed, width: 64, height: 64 })).images[0]!;
  } finally {
    pipe.dispose();
  }
}

describe('ServerBackend against fewstep serve', () => {
  it('detects the server, needs its key, returns its PNG with the CLI metadata, names a bad field', async () => {
    expect(await ServerBackend.detect(url)).toBe('needs_key');
    await expect(new ServerBackend({ baseUrl: url }).info()).rejects.toMatchObject({ code: 'auth_required', server: true });
    const be = new ServerBackend({ baseUrl: url, apiKey: KEY });
    expect((await be.load(spec)).label).toBe(model);
    const out = await be.generate(spec, { prompt: 'a lighthouse', negativePrompt: '', seed: 5, width: 64, height: 64 });
    expect(out.info).toMatchObject({ prompt: 'a lighthouse', seed: 5, width: 64, height: 64, model });
    expect(Buffer.from(out.image.data).equals(Buffer.from((await nodeImage('a lighthouse', 5)).data))).toBe(true);
    expect((await decodePng(out.png)).text['parameters']).toContain('Seed: 5, Size: 64x64');
    await expect(be.generate(spec, { prompt: 'x', negativePrompt: '', seed: 1, width: 60, height: 64 })).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(be.generate(spec, { prompt: 'x', negativePrompt: '', seed: 1, control: { image: { width: 8, height: 8, data: new Uint8Array(192) }, scale: 1, invert: true, name: 's' } })).rejects.toMatchObject({ code: 'unsupported' });
  });
});

describe.skipIf(!chromiumPath())('the page served by fewstep serve', () => {
  it('backend=server&run=1: the server makes the image (the Node pipeline\'s), the page shows it with its metadata', async () => {
    const { browser } = await launchChromium(url);
    try {
      const context = await browser.newContext();
      await context.addInitScript((key) => sessionStorage.setItem('fewstep-server-api-key', key), KEY);
      const page = await context.newPage();
      await page.goto(`${url}/?backend=server&prompt=a%20lighthouse&seed=11&width=64&height=64&run=1`);
      await page.waitForFunction(() => document.querySelectorAll('#gallery li').length >= 1 || !!document.querySelector('#message.error:not([hidden])'), undefined, { timeout: 60_000 });
      expect(await page.locator('#message.error:not([hidden])').count(), await page.locator('#message').innerText()).toBe(0);
      expect(await page.locator('#backend-row').isVisible()).toBe(true);
      expect(await page.locator('#server-model').innerText()).toBe(model);
      const bytes = await page.evaluate(async () => Array.from(new Uint8Array(await (await fetch(document.querySelector<HTMLImageElement>('#gallery li img.result')!.src)).arrayBuffer())));
      const png = await decodePng(new Uint8Array(bytes));
      expect(Buffer.from(png.data).equals(Buffer.from((await nodeImage('a lighthouse', 11)).data))).toBe(true);
      expect(JSON.parse(png.text['fewstep']!)).toMatchObject({ seed: 11, model });
      expect(await page.locator('#status').innerText()).toContain('on the server');
      await page.screenshot({ path: new URL('./artifacts/server-mode.png', import.meta.url).pathname, fullPage: true });
    } finally {
      await browser.close();
    }
  });
});
