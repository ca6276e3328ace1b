// Helpers for the web page's browser tests: Debian's chromium (never a downloaded browser) driven headless by
// playwright-core, a static server for the built page, and the flag sets that give WebGPU on a machine
// without a GPU.
import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** The flags every run uses (the list). */
export const BASE_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * WebGPU without a GPU: 'angle' (Mesa's lavapipe through ANGLE's OpenGL ES backend: a compatibility-mode
 * adapter, which the page asks for when no core adapter exists; ~2.5 s per tiny image) or 'swiftshader'
 * (Chromium's bundled CPU Vulkan: a core adapter, no shader-f16; ~6.5 s per tiny image, its 3×3 convolutions are
 * slow). FEWSTEP_WEB_ADAPTER picks one; by default ('auto') angle when it yields an adapter, else swiftshader.
 */
export const ADAPTER_FLAGS: Record<string, string[]> = {
  angle: ['--use-webgpu-adapter=opengles', '--use-angle=vulkan'],
  swiftshader: ['--enable-unsafe-webgpu'],
};

export function chromiumPath(): string | null {
  for (const p of [process.env['CHROMIUM_PATH'], '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean) as string[]) {
    if (existsSync(p)) return p;
  }
  return null;
}

/** Whether this browser gives the page a WebGPU adapter (core, else compatibility mode), on a secure origin. */
export async function probeAdapter(browser: Browser, origin: string): Promise<string | null> {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/__probe__`).catch(() => {});
    return await page.evaluate(async () => {
      const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
      if (!gpu) return null;
      const a = (await gpu.requestAdapter()) ?? (await gpu.requestAdapter({ featureLevel: 'compatibility' }));
      return a ? `${a.info.architecture || a.info.description || 'adapter'} (${a.info.vendor || 'unknown vendor'})` : null;
    });
  } finally {
    await page.close();
  }
}

/**
 * Launches Debian's chromium with the flags of `adapter` ('auto': angle, else swiftshader when angle yields no
 * adapter here). `origin` is any http://127.0.0.1 server (WebGPU needs a secure context for the probe).
 */
export async function launchChromium(origin: string, adapter = process.env['FEWSTEP_WEB_ADAPTER'] ?? 'auto'): Promise<{ browser: Browser; adapter: string; flags: string[] }> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('chromium not found: apt-get install -y chromium (.ci/run does this), or set CHROMIUM_PATH');
  const names = adapter === 'auto' ? Object.keys(ADAPTER_FLAGS) : [adapter];
  const tried: string[] = [];
  for (const name of names) {
    const flags = ADAPTER_FLAGS[name];
    if (!flags) throw new Error(`FEWSTEP_WEB_ADAPTER=${adapter}: expected auto or one of ${Object.keys(ADAPTER_FLAGS).join(', ')}`);
    const args = [...BASE_FLAGS, ...flags];
    const browser = await chromium.launch({ executablePath, headless: true, args, timeout: 60_000 });
    const found = await probeAdapter(browser, origin);
    if (found) return { browser, adapter: `${name}: ${found}`, flags: args };
    tried.push(`${name} (${flags.join(' ')}): no adapter`);
    await browser.close();
  }
  throw new Error(`no WebGPU adapter in chromium: ${tried.join('; ')}`);
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
  '.json': 'application/json',
};

/** Any static server will do; this one serves `root` on 127.0.0.1 (index.html for '/'). */
export async function serveStatic(root: string): Promise<{ url: string; close(): Promise<void>; requests: string[] }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
