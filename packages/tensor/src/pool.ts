/**
 * Reuses GPU buffers by size class, so repeated shapes (every UNet step, every batch) allocate nothing.
 * Sizes are rounded up to 1/8-octave classes: at most ~12% slack, and near sizes share buffers.
 */
import { ResourceLimitError } from './errors.js';

export const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 4) * 4);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const octave = 2 ** Math.floor(Math.log2(b));
  const step = octave / 8;
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** Bytes held by live tensors. */
  inUse: number;
  /** Bytes sitting free in the pool. */
  pooled: number;
  /** Highest inUse + pooled seen (GPU memory this process asked for). */
  peak: number;
  allocations: number;
  reuses: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  /** Buffers from `acquireExact`, destroyed after release. */
  private exact = new Set<GPUBuffer>();
  /** Released exact buffers: destroyed by `collect()` once the commands recorded so far are submitted. */
  private doomed: GPUBuffer[] = [];
  readonly stats: PoolStats = { inUse: 0, pooled: 0, peak: 0, allocations: 0, reuses: 0 };
  /** When false, released buffers are destroyed at once (for measuring the pool's worth). */
  enabled = true;

  constructor(private readonly device: GPUDevice, private readonly maxBufferSize: number) {}

  acquire(bytes: number, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new ResourceLimitError(`buffer of ${bytes} bytes exceeds this adapter's maxBufferSize (${this.maxBufferSize})${label ? ` for ${label}` : ''}`);
    }
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.stats.reuses++;
      this.stats.pooled -= size;
    } else {
      buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label: label ?? `pool ${size}` });
      this.stats.allocations++;
    }
    this.stats.inUse += size;
    this.stats.peak = Math.max(this.stats.peak, this.stats.inUse + this.stats.pooled);
    return buf;
  }

  /**
   * A buffer of exactly `bytes` (rounded up to 4), never pooled: `release` destroys it. For weights, which live
   * as long as their model — a size class would add up to 12% to each (~38 MiB on SDXS-512's 1.28 GB of f16
   * weights), and once freed, a model's odd sizes are of no use to activations.
   */
  acquireExact(bytes: number, label?: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (size > this.maxBufferSize) {
      throw new ResourceLimitError(`buffer of ${bytes} bytes exceeds this adapter's maxBufferSize (${this.maxBufferSize})${label ? ` for ${label}` : ''}`);
    }
    const buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label: label ?? `exact ${size}` });
    this.exact.add(buf);
    this.stats.allocations++;
    this.stats.inUse += size;
    this.stats.peak = Math.max(this.stats.peak, this.stats.inUse + this.stats.pooled);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.stats.inUse -= size;
    if (this.exact.delete(buf)) {
      // Not at once: a dispatch recorded but not yet submitted may still bind it (Device.flush collects).
      this.doomed.push(buf);
      return;
    }
    if (!this.enabled) {
      buf.destroy();
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.stats.pooled += size;
  }

  /** Destroys the released exact buffers; the device calls this after each submit. */
  collect(): void {
    for (const b of this.doomed) b.destroy();
    this.doomed = [];
  }

  /** Destroys every pooled (unused) buffer (call it with nothing recorded and unsubmitted: after `Device.flush`). */
  trim(): void {
    this.collect();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooled = 0;
  }
}
