/**
 * Per-dispatch GPU timing for a whole model call. While on, every dispatch runs in a compute pass of
 * its own with begin/end timestamps; the queries are resolved into a readback buffer at each submit
 * and summed per label when the device syncs. Profiling changes what it measures (a pass per
 * dispatch, no overlap between dispatches), so use it to find where time goes, not to time a run.
 */
export interface ProfileEntry {
  /** The dispatch's label (kernel + shapes where the dispatcher gives them). */
  label: string;
  ms: number;
  count: number;
}

interface Pending {
  resolved: GPUBuffer;
  buffer: GPUBuffer;
  labels: string[];
}

export class DispatchProfiler {
  static readonly CAPACITY = 2048; // dispatches per submit before a forced flush
  private readonly querySet: GPUQuerySet;
  private labels: string[] = [];
  private pending: Pending[] = [];
  private totals = new Map<string, { ms: number; count: number }>();

  constructor(private readonly gpu: GPUDevice) {
    this.querySet = gpu.createQuerySet({ type: 'timestamp', count: 2 * DispatchProfiler.CAPACITY, label: 'profiler' });
  }

  get full(): boolean {
    return this.labels.length >= DispatchProfiler.CAPACITY;
  }

  /** Timestamp writes for the next dispatch's own pass. */
  next(label: string): GPUComputePassTimestampWrites {
    const i = this.labels.length;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Records the resolve of this submit's queries (call with the encoder about to be finished). */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.labels.length;
    if (!n) return;
    const bytes = 16 * n;
    const resolved = this.gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'profiler resolve' });
    const readback = this.gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'profiler readback' });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    this.pending.push({ resolved, buffer: readback, labels: this.labels });
    this.labels = [];
  }

  /** Forgets the timestamp slots of dispatches that were dropped before their submit. */
  discard(): void {
    this.labels = [];
  }

  /** Reads every resolved submit (after the queue has run them) into the totals. */
  async collect(): Promise<void> {
    const pending = this.pending.splice(0);
    for (const p of pending) {
      await p.buffer.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(p.buffer.getMappedRange());
      p.labels.forEach((label, i) => {
        const ms = Number(t[2 * i + 1]! - t[2 * i]!) / 1e6;
        const e = this.totals.get(label);
        if (e) {
          e.ms += ms;
          e.count++;
        } else this.totals.set(label, { ms, count: 1 });
      });
      p.buffer.unmap();
      p.buffer.destroy();
      p.resolved.destroy();
    }
  }

  /** Totals so far, most expensive first; `reset` clears them. */
  report(reset = false): ProfileEntry[] {
    const out = [...this.totals].map(([label, e]) => ({ label, ms: +e.ms.toFixed(4), count: e.count })).sort((a, b) => b.ms - a.ms);
    if (reset) this.totals.clear();
    return out;
  }

  destroy(): void {
    for (const p of this.pending) {
      p.buffer.destroy();
      p.resolved.destroy();
    }
    this.querySet.destroy();
  }
}
