/** `fewstep bench kernels`: warm up, time each case (GPU timestamps when available), check a sample. */
import type { DType, Device } from '@fewstep/tensor';
import { embeddingCases, kernelCases, type BenchCase } from './kernel_cases.js';
import { measureBandwidth } from './bandwidth.js';

export interface KernelRow {
  case: string;
  family: string;
  dtype: DType;
  adapter: string;
  median_ms: number;
  min_ms: number;
  gflops: number | null;
  /** Achieved rate of a memory-bound case: the bytes it must read + write (minimal) / median time. */
  gbps: number | null;
  /**
   * This adapter's bandwidth at the case's size, measured next to it (see bench/bandwidth.ts): a buffer
   * copy and a trivial copy kernel moving the same bytes, and the faster of the two; null for
   * compute-bound cases.
   */
  bw_copy_gbps: number | null;
  bw_kernel_gbps: number | null;
  bw_gbps: number | null;
  /** gbps as a percentage of bw_gbps, and of bw_kernel_gbps. */
  bw_pct: number | null;
  kernel_pct: number | null;
  /** Max |gpu − cpu| over sampled outputs; null when the case has no reference. */
  max_err: number | null;
  /** How median_ms was measured (copies cannot be timestamped inside a pass: those use wall clock). */
  timing: 'gpu-timestamp' | 'wall';
  error?: string | undefined;
}

export async function benchKernels(device: Device, opts: { dtypes: DType[]; filter?: RegExp | undefined; reps: number; onRow?: ((r: KernelRow) => void) | undefined}): Promise<KernelRow[]> {
  const rows: KernelRow[] = [];
  const cases: BenchCase[] = [...kernelCases(), ...embeddingCases()].filter((c) => !opts.filter || opts.filter.test(c.name) || opts.filter.test(c.family));
  for (const dtype of opts.dtypes) {
    for (const c of cases) {
      const row: KernelRow = { case: c.name, family: c.family, dtype, adapter: device.adapter.name, median_ms: NaN, min_ms: NaN, gflops: null, gbps: null, bw_copy_gbps: null, bw_kernel_gbps: null, bw_gbps: null, bw_pct: null, kernel_pct: null, max_err: NaN, timing: device.features.timestamp ? 'gpu-timestamp' : 'wall' };
      let prep;
      try {
        prep = c.setup(device, dtype);
        // Warm-up: compiles the pipeline, touches the memory; also the correctness sample.
        const first = prep.run();
        await device.sync();
        row.max_err = await prep.check(first);
        if (Number.isNaN(row.max_err)) row.max_err = null;
        first.dispose();
        const times: number[] = [];
        for (let i = 0; i < opts.reps; i++) {
          let out;
          const t0 = performance.now();
          const gpuMs = await device.timeDispatches(() => {
            out = prep!.run();
          });
          const wall = performance.now() - t0;
          (out as unknown as { dispose(): void } | undefined)?.dispose();
          if (gpuMs === null) row.timing = 'wall';
          times.push(gpuMs ?? wall);
        }
        times.sort((a, b) => a - b);
        row.median_ms = +times[Math.floor(times.length / 2)]!.toPrecision(4);
        row.min_ms = +times[0]!.toPrecision(4);
        const s = row.median_ms / 1000;
        if (c.flops) row.gflops = +(c.flops / s / 1e9).toPrecision(4);
        else {
          const bytes = c.bytesFor ? c.bytesFor(dtype) : c.bytes * (dtype === 'f16' ? 0.5 : 1);
          row.gbps = +(bytes / s / 1e9).toPrecision(4);
          if (c.family !== 'dispatch') {
            const bw = await measureBandwidth(device, bytes);
            row.bw_copy_gbps = bw.copy_gbps;
            row.bw_kernel_gbps = bw.kernel_gbps;
            row.bw_gbps = bw.gbps;
            row.bw_pct = +((100 * row.gbps) / bw.gbps).toPrecision(3);
            row.kernel_pct = +((100 * row.gbps) / bw.kernel_gbps).toPrecision(3);
          }
        }
      } catch (e) {
        row.error = (e as Error).message.split('\n')[0];
        await device.sync().catch(() => undefined);
      } finally {
        prep?.dispose();
      }
      rows.push(row);
      opts.onRow?.(row);
    }
  }
  return rows;
}
