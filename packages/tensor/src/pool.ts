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

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.stats.inUse -= size;
    if (!this.enabled) {
      buf.destroy();
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.stats.pooled += size;
  }

  /** Destroys every pooled (unused) buffer. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooled = 0;
  }
}
