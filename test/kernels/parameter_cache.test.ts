// ParameterCache's rules on fake streamed parameters (bytes made up, no file): a parameter is filled on its
// first use and again after eviction; the least recently used go first, never one of the `protect` most
// recent; the budget holds unless the protected ones alone exceed it; a kernel reading two streamed weights sees
// both (no eviction in between hands one's buffer to the other); a failed fill leaves nothing behind and the
// next use tries again; disposing a tensor (and its views) forgets it and calls `release` once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParameterCache, Tensor, type Device, type StreamedParameter } from '@fewstep/tensor';
import { add } from '@fewstep/kernels';
import { closeDevice, gpuDevice } from '../helpers/gpu';

let d: Device;
beforeAll(async () => {
  d = await gpuDevice();
});
afterAll(closeDevice);

/** A parameter of `n` f32 values all equal to `value`, counting its fills and releases. */
function fake(name: string, n: number, value: number, fail?: () => boolean): StreamedParameter & { fills: number; releases: number } {
  const p = {
    label: name,
    byteLength: n * 4,
    fills: 0,
    releases: 0,
    fill(buffer: GPUBuffer) {
      if (fail?.()) throw new Error(`cannot read ${name}`);
      p.fills++;
      d.write(buffer, 0, new Float32Array(n).fill(value));
    },
    release() {
      p.releases++;
    },
  };
  return p;
}

describe('ParameterCache', () => {
  it('fills on first use, evicts the least recently used past the budget, never the protected', async () => {
    const KB = 1024;
    const cache = new ParameterCache(d, 12 * KB, 2);
    const ps = [0, 1, 2, 3].map((i) => fake(`w${i}`, KB, i)); // 4 KB each: 3 fit the budget
    const ts = ps.map((p) => Tensor.streamed(cache, [KB], 'f32', p));
    expect(ps.map((p) => p.fills)).toEqual([0, 0, 0, 0]);
    for (const t of ts.slice(0, 3)) void t.buffer;
    expect(cache.residentBytes).toBe(12 * KB);
    void ts[0]!.buffer; // a hit: w0 becomes the most recent
    expect(cache.stats.hits).toBe(1);
    void ts[3]!.buffer; // room for w3: w1, the least recently used, goes
    expect(cache.stats.evictions).toBe(1);
    expect(cache.residentBytes).toBe(12 * KB);
    void ts[1]!.buffer; // filled again
    expect(ps.map((p) => p.fills)).toEqual([1, 2, 1, 1]);
    // Values survive eviction and refill.
    for (const [i, t] of ts.entries()) expect([...(await t.readF32())].every((v) => v === i)).toBe(true);
    // Larger than the budget: it loads, with only the protected ones beside it.
    const big = fake('big', 8 * KB, 9);
    const tb = Tensor.streamed(cache, [8 * KB], 'f32', big);
    void tb.buffer;
    expect(cache.residentBytes).toBeLessThanOrEqual(8 * KB * 4 + 2 * 4 * KB);
    expect(cache.stats.peakBytes).toBeLessThanOrEqual(12 * KB + 32 * KB);
    for (const t of [...ts, tb]) t.dispose();
    expect(cache.residentBytes).toBe(0);
    expect([...ps, big].map((p) => p.releases)).toEqual([1, 1, 1, 1, 1]);
  });

  it('a kernel binding two streamed weights sees both, though the budget holds one', async () => {
    const n = 1000;
    // Room for one, and the two most recent protected: b's fill must not evict a, whose buffer the kernel already holds
    // (with protect 0 it would: "buffer used in submit while destroyed").
    const cache = new ParameterCache(d, 4 * n, 2);
    const a = Tensor.streamed(cache, [n], 'f32', fake('a', n, 1.5));
    const b = Tensor.streamed(cache, [n], 'f32', fake('b', n, 2.25));
    for (let i = 0; i < 3; i++) {
      const y = add(a, b);
      expect([...(await y.readF32())].every((v) => v === 3.75)).toBe(true);
      y.dispose();
    }
    a.dispose();
    b.dispose();
  });

  it('a failed fill leaves nothing resident and throws; the next use fills', async () => {
    let failing = true;
    const p = fake('flaky', 64, 7, () => failing);
    const cache = new ParameterCache(d);
    const t = Tensor.streamed(cache, [64], 'f32', p);
    const inUse = d.pool.stats.inUse;
    expect(() => t.buffer).toThrow('cannot read flaky');
    expect(cache.residentBytes).toBe(0);
    expect(d.pool.stats.inUse).toBe(inUse);
    failing = false;
    expect([...(await t.readF32())].every((v) => v === 7)).toBe(true);
    const view = t.reshape([8, 8]);
    t.dispose();
    expect(p.releases).toBe(0); // the view still uses it
    expect([...(await view.readF32())].every((v) => v === 7)).toBe(true);
    view.dispose();
    expect(p.releases).toBe(1);
    expect(cache.residentBytes).toBe(0);
  });

  it('refuses a parameter whose byte length does not fit its shape, and a cache protecting fewer than 2', () => {
    expect(() => new ParameterCache(d, 1024, 1)).toThrow('ParameterCache: protect must be an integer ≥ 2 (a kernel binds several weights), got 1');
    expect(() => new ParameterCache(d, Number.NaN)).toThrow('ParameterCache: budgetBytes must be a number ≥ 0, got NaN');
    const cache = new ParameterCache(d);
    expect(() => Tensor.streamed(cache, [10], 'f16', fake('w', 10, 0))).toThrow('streamed parameter w: 40 bytes for [10] f16 (20)');
  });
});
