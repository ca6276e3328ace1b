// `fewstep bench soak`: the command runs (a few images of the tiny SDXS model, in-process and through serve) and
// reports samples and a verdict; the verdict's rule on made-up samples. No timing or memory threshold is asserted
// on the real run (a soak is a measurement, not a test).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { soakVerdict, type SoakResult, type SoakSample } from '../../packages/cli/src/bench/soak';
import { main } from '../../packages/cli/src/main';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-soak-'));
const model = buildTinyModel(join(work, 'model'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const sample = (images: number, rss: number, heap: number, pool: number): SoakSample => ({
  images,
  seconds: images,
  rss_mb: rss,
  heap_used_mb: heap,
  external_mb: 1,
  array_buffers_mb: 0,
  gpu_in_use_mb: 0,
  gpu_pooled_mb: pool,
  gpu_peak_mb: pool,
  gpu_allocations: 10,
  gpu_reuses: images,
});

describe('bench soak', () => {
  it('the rule: a flat run is "no"; a growing GPU pool, RSS or heap is "yes"', () => {
    const flat = Array.from({ length: 20 }, (_, i) => sample(10 * i, 300 + (i % 3), 20, 32));
    expect(soakVerdict(flat).grows_after_warmup).toBe('no');
    const pool = flat.map((s, i) => ({ ...s, gpu_pooled_mb: 32 + (i > 15 ? 0.25 : 0) }));
    expect(soakVerdict(pool)).toMatchObject({ grows_after_warmup: 'yes', gpu_pool: { grows: true } });
    const rss = flat.map((s, i) => ({ ...s, rss_mb: 300 + 3 * i }));
    expect(soakVerdict(rss)).toMatchObject({ grows_after_warmup: 'yes', rss: { grows: true } });
    const heap = flat.map((s, i) => ({ ...s, heap_used_mb: 20 + i }));
    expect(soakVerdict(heap)).toMatchObject({ grows_after_warmup: 'yes', heap: { grows: true } });
    expect(soakVerdict([]).grows_after_warmup).toBe('no');
  });

  it('needs --model', async () => {
    const r = await cli(['bench', 'soak']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fewstep bench: bench soak needs --model <dir\|id>/);
  });

  for (const serve of [false, true]) {
    it(`runs ${serve ? 'through serve' : 'in-process'}: samples of RSS, heap and the GPU pool, and a verdict`, async () => {
      const r = await cli(['bench', 'soak', '--model', model, '--images', '5', '--every', '2', '--size', '64x64', '--json', ...(serve ? ['--serve'] : [])]);
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as SoakResult;
      expect(res).toMatchObject({ mode: serve ? 'serve' : 'in-process', images: 5, size: '64x64', sample_every: 2, warmup_images: 2 });
      expect(res.samples.map((s) => s.images)).toEqual([0, 1, 2, 4, 5]);
      for (const s of res.samples) expect(s.rss_mb).toBeGreaterThan(0);
      // The same shapes every time: after the first image the pool reuses all but what the prompt-embedding cache keeps
      // of each new prompt (one tensor; the cache holds 16 before it evicts, which the default warm-up covers).
      const after = res.samples.slice(1);
      for (const s of after) expect(s.gpu_allocations - after[0]!.gpu_allocations).toBeLessThanOrEqual(s.images - after[0]!.images);
      expect(after.at(-1)!.gpu_reuses).toBeGreaterThan(after[0]!.gpu_reuses);
      expect(['yes', 'no']).toContain(res.grows_after_warmup);
      expect(res.rule).toContain('GPU pool');
    });
  }
});
