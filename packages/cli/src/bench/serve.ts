/**
 * `fewstep bench serve`: throughput and latency of `fewstep serve` over HTTP — the model loaded once, the server
 * on 127.0.0.1, then for each concurrency C, `requests` requests sent by C clients at once (each client sends its
 * next request when its previous one is answered). Per C: requests/s, images/s, and p50/p95 latency (send →
 * answer, queueing included). The queue is as long as the largest C, so nothing is refused.
 */
import type { CliIO } from '../command.js';
import type { ModelOptions } from '../generation/flags.js';
import { loadModel, planModel } from '../generation/model.js';
import { createProgressUI } from '../generation/progress.js';
import { imageService } from '../serve/image_service.js';
import { startServer } from '../serve/server.js';

export interface ServeBenchRow {
  clients: number;
  requests: number;
  ok: number;
  failed: number;
  seconds: number;
  requests_per_s: number;
  images_per_s: number;
  p50_ms: number;
  p95_ms: number;
  max_ms: number;
}

export interface ServeBenchResult {
  model: string;
  adapter: string;
  size: string;
  images_per_request: number;
  warmup_s: number;
  rows: ServeBenchRow[];
}

const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;

export async function benchServe(
  options: ModelOptions,
  b: { clients: number[]; requests: number; size: string; n: number },
  io: CliIO,
  onRow: (r: ServeBenchRow) => void = () => {},
): Promise<ServeBenchResult> {
  const ui = createProgressUI(io, { quiet: true });
  const ctx = { ui, signal: io.signal };
  const loaded = await loadModel(await planModel(options, {}, ctx), ctx);
  const server = await startServer(imageService(loaded, options), { host: '127.0.0.1', port: 0, maxQueue: Math.max(...b.clients) });
  try {
    const send = async (i: number): Promise<{ ms: number; ok: boolean }> => {
      const t0 = performance.now();
      const res = await fetch(`${server.url}/v1/images/generations`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: `a photo of a lighthouse, variant ${i}`, size: b.size, n: b.n, seed: i }),
        ...(io.signal ? { signal: io.signal } : {}),
      });
      await res.arrayBuffer();
      return { ms: performance.now() - t0, ok: res.ok };
    };
    // Warm-up: pipelines compiled, pool filled.
    const tw = performance.now();
    await send(-1);
    const warmup_s = +((performance.now() - tw) / 1000).toFixed(3);
    const rows: ServeBenchRow[] = [];
    for (const C of b.clients) {
      const lat: number[] = [];
      let next = 0, failed = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: C }, async () => {
          while (next < b.requests) {
            const r = await send(next++);
            if (r.ok) lat.push(r.ms);
            else failed++;
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      lat.sort((x, y) => x - y);
      const row: ServeBenchRow = {
        clients: C,
        requests: b.requests,
        ok: lat.length,
        failed,
        seconds: +seconds.toFixed(3),
        requests_per_s: +(lat.length / seconds).toFixed(3),
        images_per_s: +((lat.length * b.n) / seconds).toFixed(3),
        p50_ms: Math.round(quantile(lat, 0.5)),
        p95_ms: Math.round(quantile(lat, 0.95)),
        max_ms: Math.round(lat[lat.length - 1] ?? NaN),
      };
      rows.push(row);
      onRow(row);
    }
    return { model: options.model, adapter: loaded.device.adapter.name, size: b.size, images_per_request: b.n, warmup_s, rows };
  } finally {
    await server.close();
    loaded.dispose();
  }
}
