// `fewstep bench kernels` end to end on a cheap case: JSON on stdout with the documented row fields,
// and a sampled error that really compares against the CPU (non-NaN, small).
import { describe, expect, it } from 'vitest';
import { main } from '../../packages/cli/src/main';

const capture = () => {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), isTTY: false } };
};

describe('fewstep bench kernels', () => {
  it('prints JSON rows with timing, rate, adapter and max error', async () => {
    const c = capture();
    expect(await main(['bench', 'kernels', '--json', '--filter', '^(noop_dispatch|silu_320x64x64|timestep_embedding_2x320)$', '--reps', '2', '--dtype', 'f32'], c.io)).toBe(0);
    const doc = JSON.parse(c.out.join(''));
    expect(doc.adapter).toBeTruthy();
    expect(doc.rows.map((r: { case: string }) => r.case)).toEqual(['noop_dispatch', 'silu_320x64x64', 'timestep_embedding_2x320']);
    for (const r of doc.rows) {
      expect(r.dtype).toBe('f32');
      // lavapipe's timestamps are coarse: a tiny kernel may read 0 ms, never negative or NaN.
      expect(r.median_ms).toBeGreaterThanOrEqual(0);
      expect(r.gflops === null && (r.gbps === null || r.gbps >= 0)).toBe(true);
      expect(r.max_err).toBeLessThan(1e-4);
      expect(r.error).toBeUndefined();
      // Memory-bound cases carry the adapter's bandwidth at their size and the ratio to it (not the dispatch-cost case).
      if (r.case !== 'noop_dispatch') {
        for (const f of ['bw_copy_gbps', 'bw_kernel_gbps', 'bw_gbps', 'bw_pct', 'kernel_pct']) expect(r[f], f).toBeGreaterThan(0);
        expect(r.bw_gbps).toBe(Math.max(r.bw_copy_gbps, r.bw_kernel_gbps));
        expect(r.bw_pct).toBeCloseTo((100 * r.gbps) / r.bw_gbps, 0);
      } else expect([r.bw_gbps, r.bw_pct, r.kernel_pct]).toEqual([null, null, null]);
      // Only cases that record buffer copies fall back to wall-clock time.
      if (doc.timing === 'gpu-timestamp') expect(r.timing).toBe('gpu-timestamp');
    }
  });

  it('--split-k sets the split-K tuning of the device (reported with the kernel settings in the JSON)', async () => {
    const c = capture();
    expect(await main(['bench', 'kernels', '--json', '--filter', '^noop_dispatch$', '--reps', '1', '--dtype', 'f32', '--split-k', '64,128,256'], c.io)).toBe(0);
    const doc = JSON.parse(c.out.join(''));
    expect(doc.kernels.gemm).toEqual({ tiling: null, sg: null, splitK: null, splitKTuning: { below: 64, target: 128, minK: 256 } });
    const bad = capture();
    expect(await main(['bench', 'kernels', '--split-k', '64,128'], bad.io)).toBe(2);
    expect(bad.err.join('')).toBe('fewstep bench: --split-k takes three positive integers below,target,minK, got "64,128"\n');
  });

  it('rejects a bad subcommand and a bad regex as usage errors', async () => {
    const a = capture();
    expect(await main(['bench', 'kernal'], a.io)).toBe(2);
    expect(a.err.join('')).toBe('fewstep bench: expected `bench kernels`, `models`, `pipeline`, `serve`, `write-model` or `soak`, got "kernal"\n');
    const p = capture();
    expect(await main(['bench', 'pipeline', '--config', 'sdxl'], p.io)).toBe(2);
    expect(p.err.join('')).toBe('fewstep bench: --config must be one of sdxs-512-0.9, sdxs-512-dreamshaper, sd15, got "sdxl"\n');
    const b = capture();
    expect(await main(['bench', 'kernels', '--filter', '('], b.io)).toBe(2);
    expect(b.err.join('')).toMatch(/^fewstep bench: --filter is not a valid regular expression/);
  });
});
