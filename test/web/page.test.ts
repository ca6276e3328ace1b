// The web page in a real browser: Debian's chromium, headless, WebGPU on the CPU (SwiftShader by default; see
// browser.ts), the page built from source and served on 127.0.0.1, tiny models on a fake hub (another origin,
// with CORS, LFS files redirected to a third). Checks that (a) text-to-image gives the Node pipeline's image
// for the same seed (uint8 within ±1) and the CLI's PNG metadata, (b) the sketch mode gives the Node ControlNet
// pipeline's image for the same drawn strokes and seed, with latest-wins queueing, (c) a reload loads from the
// browser's cache with the network blocked, (d) a 404 model is a message, not a blank page, and the page
// recovers without a reload (also from a lost device). Screenshots of each mode go to test/web/artifacts/.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { nodeFiles } from '@fewstep/tensor/node';
import { StableDiffusionPipeline, decodePng, invertControlImage, parametersText, type DecodedPng, type RGBImage } from '@fewstep/models';
import { startFakeHub, type FakeFile, type FakeHub } from '../helpers/fake_hub';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { buildTinyModel, tinyModelHubFiles } from '../helpers/tiny_sdxs_model';
import { buildTinySketchModel, tinyControlNetHubFiles } from '../helpers/tiny_sketch_model';
import { chromiumPath, launchChromium, serveStatic } from './browser';
import { buildPage } from '../../packages/web/build.mjs';

const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const SIZE = 64;
const work = mkdtempSync(join(tmpdir(), 'fewstep-web-'));
const haveChromium = chromiumPath() !== null;

let browser: Browser;
let context: BrowserContext;
let hub: FakeHub;
let site: Awaited<ReturnType<typeof serveStatic>>;
const consoleLines: string[] = [];

/** The files of a built folder (symlinks followed) as fake-hub files; weights as LFS. */
function folderFiles(dir: string, skip: (p: string) => boolean = () => false): FakeFile[] {
  const out: FakeFile[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const rel = relative(dir, p);
      if (skip(rel)) continue;
      if (statSync(p).isDirectory()) walk(p);
      else out.push({ path: rel, content: readFileSync(p), lfs: /\.(safetensors|bin)$/.test(rel) });
    }
  };
  walk(dir);
  return out;
}

const sdxsDir = buildTinyModel(join(work, 'tiny-sdxs'));
const sketchDir = buildTinySketchModel(join(work, 'tiny-sketch'));

beforeAll(async () => {
  if (!haveChromium) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const built = await buildPage({ outdir: join(work, 'site'), source: true, minify: false, quiet: true });
  site = await serveStatic(built.outdir);
  hub = await startFakeHub([
    { id: 'org/tiny-sdxs', commit: '1'.repeat(40), files: tinyModelHubFiles() },
    { id: 'org/tiny-dreamshaper', commit: '2'.repeat(40), files: folderFiles(sketchDir, (p) => p === 'controlnet') },
    { id: 'org/tiny-dreamshaper-sketch', commit: '3'.repeat(40), files: tinyControlNetHubFiles() },
  ]);
  hub.cors = true;
  const launched = await launchChromium(site.url);
  browser = launched.browser;
  console.log(`web: chromium with ${launched.adapter}; flags ${launched.flags.join(' ')}`);
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await hub?.close();
  await site?.close();
  await closeDevice();
  rmSync(work, { recursive: true, force: true });
});

async function newPage(): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  return page;
}

const url = (q: Record<string, string | number>) => `${site.url}/?${new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)])).toString()}`;

/** Waits until the gallery has `n` images (or a message appears, which fails with its text). */
async function waitForImages(page: Page, n: number, timeout = 120_000): Promise<void> {
  await page
    .waitForFunction((n) => document.querySelectorAll('#gallery li').length >= n || !!document.querySelector('#message.error:not([hidden])'), n, { timeout, polling: 200 })
    .catch(async (e: Error) => {
      throw new Error(`${e.message}\nstatus: ${await page.locator('#status').innerText()}\nprogress: ${await page.locator('#progress').innerText()}\n${consoleLines.slice(-20).join('\n')}`);
    });
  const msg = await page.locator('#message.error:not([hidden])').count();
  if (msg) throw new Error(`page error: ${await page.locator('#message').innerText()}\n${consoleLines.slice(-20).join('\n')}`);
}

/** The PNG bytes behind a gallery <img>, decoded (pixels + text chunks). */
async function galleryPng(page: Page, selector: string): Promise<DecodedPng> {
  const bytes = await page.evaluate(async (sel) => {
    const img = document.querySelector<HTMLImageElement>(sel)!;
    const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    return Array.from(buf);
  }, selector);
  return decodePng(new Uint8Array(bytes), selector);
}

function expectPixelsClose(got: RGBImage, want: RGBImage, what: string): void {
  expect([got.width, got.height], what).toEqual([want.width, want.height]);
  let off = 0, maxDiff = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(got.data[i]! - want.data[i]!);
    maxDiff = Math.max(maxDiff, d);
    if (d > 1) off++;
  }
  expect(off, `${what}: ${off} values differ by more than 1 (max diff ${maxDiff})`).toBe(0);
}

async function nodeImage(dir: string, opts: { prompt: string; seed: number; controlnet?: string; control?: RGBImage }): Promise<RGBImage> {
  const device = await gpuDevice();
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device, io: nodeFiles, dtype: 'f32', controlnet: opts.controlnet });
  try {
    const res = await pipe.generate({ prompt: opts.prompt, seed: opts.seed, width: SIZE, height: SIZE, control: opts.control ? { image: opts.control } : undefined });
    return res.images[0]!;
  } finally {
    pipe.dispose();
  }
}

const textQuery = { model: 'org/tiny-sdxs', endpoint: '', prompt: 'a photo of a cat', seed: 42, width: SIZE, height: SIZE, dtype: 'f32', run: 1 };

describe.skipIf(!haveChromium)('web page in chromium', () => {
  it('(a) text to image: the Node pipeline\'s image for the same seed (±1), the CLI\'s PNG metadata', async () => {
    const page = await newPage();
    const t0 = performance.now();
    await page.goto(url({ ...textQuery, endpoint: hub.url }));
    await waitForImages(page, 1);
    const ms = performance.now() - t0;
    const png = await galleryPng(page, '#gallery li img.result');
    const ref = await nodeImage(sdxsDir, { prompt: 'a photo of a cat', seed: 42 });
    expectPixelsClose(png, ref, 'browser vs node');
    const info = JSON.parse(png.text['fewstep']!);
    expect(info).toMatchObject({ prompt: 'a photo of a cat', seed: 42, steps: 1, guidance: 0, width: SIZE, height: SIZE, model: 'org/tiny-sdxs', dtype: 'f32', sampler: 'EulerDiscreteScheduler', batchSize: 1 });
    expect(png.text['parameters']).toBe(parametersText(info));
    expect(png.text['parameters']).toContain('Steps: 1, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 42, Size: 64x64, Model: org/tiny-sdxs');
    // Only the files the pipeline reads were fetched (no .bin next to the safetensors, no README, no vae_large).
    const fetched = new Set(hub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.split('/resolve/')[1]!.split('/').slice(1).join('/')));
    expect([...fetched].sort()).toEqual([
      'model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json', 'text_encoder/model.safetensors',
      'tokenizer/merges.txt', 'tokenizer/special_tokens_map.json', 'tokenizer/tokenizer_config.json', 'tokenizer/vocab.json',
      'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors',
    ]);
    // The adapter panel, the timings line, the share link.
    expect(await page.locator('#adapter-panel').getAttribute('data-ready')).toBe('true');
    expect(await page.locator('#timings').innerText()).toMatch(/denoise .* total/);
    expect(await page.locator('#gallery li a', { hasText: 'Link' }).getAttribute('href')).toContain('seed=42');
    const first = await page.locator('#timings').innerText();
    // A second image (a new random seed from the dice): warm, no kernel compiles.
    await page.click('#seed-dice');
    await page.click('#generate');
    await waitForImages(page, 2);
    const warm = await page.locator('#gallery li:first-child').getAttribute('data-ms');
    await page.screenshot({ path: join(ARTIFACTS, 'text-to-image.png'), fullPage: true });
    console.log(`web (a) on ${await page.locator('#adapter dd').first().textContent()}: page open to first image ${(ms / 1000).toFixed(1)} s (${first}); second image ${warm} ms (${await page.locator('#timings').innerText()})`);
    await page.close();
  });

  it('(c) a reload loads from the browser cache with the network blocked', async () => {
    const page = await newPage();
    // The first visit (or (a)'s) fills the cache; then everything but the page's own origin is cut off.
    await page.goto(url({ ...textQuery, endpoint: hub.url }));
    await waitForImages(page, 1);
    const blocked: string[] = [];
    await page.route('**/*', (route) => {
      const u = route.request().url();
      if (u.startsWith(site.url)) return route.continue();
      blocked.push(u);
      return route.abort('internetdisconnected');
    });
    const before = hub.requests.length;
    await page.reload();
    await waitForImages(page, 1);
    expect(hub.requests.length - before, 'requests that reached the hub').toBe(0);
    expect(blocked.length, 'the page tried the hub first (its listing), then used the cache').toBeGreaterThan(0);
    const png = await galleryPng(page, '#gallery li img.result');
    const ref = await nodeImage(sdxsDir, { prompt: 'a photo of a cat', seed: 42 });
    expectPixelsClose(png, ref, 'offline reload vs node');
    const rows = await page.locator('#progress .item[data-cached=true]').count();
    expect(rows).toBeGreaterThan(0);
    await page.close();
  });

  it('(b) sketch to image: the Node ControlNet pipeline\'s image for the same strokes and seed; latest wins', async () => {
    const page = await newPage();
    await page.goto(url({ mode: 'sketch', model: 'org/tiny-dreamshaper', controlnet: 'org/tiny-dreamshaper-sketch', endpoint: hub.url, prompt: 'a cat', seed: 7, width: SIZE, height: SIZE, dtype: 'f32' }));
    await page.waitForSelector('#adapter-panel[data-ready=true]');
    const canvas = page.locator('#sketch');
    const box = (await canvas.boundingBox())!;
    const at = (x: number, y: number) => [box.x + x * box.width, box.y + y * box.height] as const;
    const stroke = async (pts: [number, number][]) => {
      await page.mouse.move(...at(...pts[0]!));
      await page.mouse.down();
      for (const p of pts.slice(1)) await page.mouse.move(...at(...p), { steps: 4 });
      await page.mouse.up();
    };
    // Three strokes in quick succession: the first starts a run (loading the model), the next two queue and the
    // third replaces the second (never more than one waiting).
    await stroke([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]);
    await stroke([[0.2, 0.8], [0.5, 0.5]]);
    await stroke([[0.3, 0.6], [0.6, 0.3], [0.7, 0.7]]);
    await page.waitForFunction(() => {
      const f = (window as unknown as { fewstep?: { state(): { running: boolean; queued: boolean } } }).fewstep;
      return !!f && !f.state().running && !f.state().queued;
    }, undefined, { timeout: 180_000, polling: 250 });
    await waitForImages(page, 1);
    const state = await page.evaluate(() => (window as unknown as { fewstep: { state(): Record<string, number> } }).fewstep.state());
    expect(state).toMatchObject({ submitted: 3, started: 2, dropped: 1 });
    expect(await page.locator('#gallery li').count()).toBe(2);
    // The newest image is of the final drawing: its sketch PNG is the canvas now.
    const sketch = await galleryPng(page, '#gallery li:first-child img.control');
    const canvasNow = await page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>('#sketch')!;
      return Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data);
    });
    const rgb = new Uint8Array(SIZE * SIZE * 3);
    for (let p = 0; p < SIZE * SIZE; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = canvasNow[p * 4 + c]!;
    expect(Buffer.from(sketch.data).equals(Buffer.from(rgb)), 'the gallery\'s sketch is the final drawing').toBe(true);
    expect(sketch.data.some((v) => v < 128), 'the strokes are in the sketch').toBe(true);
    const png = await galleryPng(page, '#gallery li:first-child img.result');
    const ref = await nodeImage(sketchDir, { prompt: 'a cat', seed: 7, controlnet: join(sketchDir, 'controlnet'), control: invertControlImage(sketch) });
    expectPixelsClose(png, ref, 'sketch: browser vs node');
    const info = JSON.parse(png.text['fewstep']!);
    expect(info).toMatchObject({ seed: 7, model: 'org/tiny-dreamshaper', controlnet: 'org/tiny-dreamshaper-sketch', controlImage: 'sketch.png', controlScale: 1, invertControl: true, sampler: 'DEISMultistepScheduler' });
    expect(png.text['parameters']).toContain('ControlNet: org/tiny-dreamshaper-sketch, Control scale: 1, Control image: sketch.png, Control inverted: true');
    expect(await page.locator('#sketch-stats').innerText()).toMatch(/\d+ ms/);
    await page.screenshot({ path: join(ARTIFACTS, 'sketch-to-image.png'), fullPage: true });
    console.log(`web (b): ${await page.locator('#sketch-stats').innerText()}`);
    await page.close();
  });

  it('(d) a 404 model shows a message, not a blank page; the page recovers without a reload', async () => {
    const page = await newPage();
    await page.goto(url({ ...textQuery, model: 'org/does-not-exist', endpoint: hub.url }));
    const msg = page.locator('#message.error');
    await msg.waitFor({ state: 'visible', timeout: 60_000 });
    expect(await msg.innerText()).toMatch(/Model not found[\s\S]*org\/does-not-exist[\s\S]*404/);
    expect(await page.locator('#controls').isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'error-404.png'), fullPage: true });
    // Fix the repo id and generate: no reload.
    await page.fill('#model', 'org/tiny-sdxs');
    await page.locator('#model').dispatchEvent('change');
    await page.click('#generate');
    await waitForImages(page, 1);
    expect(await msg.isVisible()).toBe(false);
    // A lost device: the message says so, the next generation opens a new device and reloads from the cache.
    expect(await page.evaluate(() => (window as unknown as { fewstep: { simulateDeviceLoss(): boolean } }).fewstep.simulateDeviceLoss())).toBe(true);
    await msg.waitFor({ state: 'visible', timeout: 30_000 });
    expect(await msg.innerText()).toContain('GPU device was lost');
    await page.click('#generate');
    await waitForImages(page, 2);
    const png = await galleryPng(page, '#gallery li:first-child img.result');
    const ref = await nodeImage(sdxsDir, { prompt: 'a photo of a cat', seed: 42 });
    expectPixelsClose(png, ref, 'after device loss vs node');
    await page.close();
  });
});
