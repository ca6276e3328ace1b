/**
 * Streamed parameters: weights whose bytes stay in their file and are uploaded when a kernel binds them,
 * for models larger than the memory one wants to give them (low-memory mode). A streamed tensor asks the cache
 * for its buffer each time its `buffer` is read; the cache keeps the most recently used ones up to a byte
 * budget and refills the others from their source, synchronously (the bytes are written before the kernel
 * that binds them is recorded).
 *
 * Why it is safe: an evicted parameter's buffer is destroyed only after the kernels recorded so far are
 * submitted (BufferPool.acquireExact), and a fill goes through `Device.write`, which submits what was recorded
 * before it, so kernels read the bytes of their own time. One kernel binds all its weights before it is
 * recorded, so the last few parameters touched are never evicted for another's room (`protect`).
 */
import type { Device } from './device.js';
import { InvalidArgumentError } from './errors.js';

/** Where a streamed parameter's bytes come from. */
export interface StreamedParameter {
  /** Bytes the tensor occupies on the device. */
  readonly byteLength: number;
  /** Names it in errors and buffer labels (the checkpoint key). */
  readonly label: string;
  /** Writes the parameter's bytes into `buffer` (through `Device.write`), synchronously. */
  fill(buffer: GPUBuffer): void;
  /** Called once, when the last tensor viewing it is disposed (e.g. to let its file close). */
  release?(): void;
}

export interface ParameterCacheStats {
  /** Fills: parameters uploaded from their source. */
  loads: number;
  /** Bytes uploaded by fills. */
  loadedBytes: number;
  /** Buffer requests answered by a resident parameter. */
  hits: number;
  evictions: number;
  /** Highest bytes held by resident parameters. */
  peakBytes: number;
}

export class ParameterCache {
  readonly stats: ParameterCacheStats = { loads: 0, loadedBytes: 0, hits: 0, evictions: 0, peakBytes: 0 };
  /** Resident parameters in least- to most-recently-used order (a Map keeps insertion order). */
  private readonly resident = new Map<StreamedParameter, GPUBuffer>();
  private bytes = 0;
  /** The GPU work submitted at the last `pace`. */
  private inFlight: Promise<void> | null = null;
  private loadsPaced = 0;

  /**
   * `budgetBytes`: what resident parameters may hold; one larger than the budget still loads, alone with the
   * protected ones. `protect`: how many of the most recently used are never evicted (more than any kernel binds).
   */
  constructor(readonly device: Device, readonly budgetBytes = 32 * 2 ** 20, readonly protect = 8) {
    if (!(budgetBytes >= 0)) throw new InvalidArgumentError(`ParameterCache: budgetBytes must be a number ≥ 0, got ${budgetBytes}`, 'budgetBytes');
    // With none protected, a kernel's second weight could evict its first after the first's buffer was bound.
    if (!Number.isInteger(protect) || protect < 2) throw new InvalidArgumentError(`ParameterCache: protect must be an integer ≥ 2 (a kernel binds several weights), got ${protect}`, 'protect');
  }

  /**
   * Between segments of a streamed forward (a UNet's resnets and attentions, a text encoder's layers): submits
   * what is recorded and waits until the GPU has finished what was submitted before the previous call, so
   * recording — and the uploads it makes — runs at most about two segments ahead of the GPU. A forward recorded
   * in one go would upload every weight before the GPU reaches the first, and hold all that upload memory at once.
   */
  async pace(): Promise<void> {
    // Nothing uploaded since the last call (every weight resident): nothing to pace, and no wait for the GPU.
    if (this.stats.loads === this.loadsPaced) return;
    this.loadsPaced = this.stats.loads;
    const prev = this.inFlight;
    const now = this.device.workDone();
    now.catch(() => {}); // awaited by the next call; an abort rejects it there, or nowhere if none comes
    this.inFlight = now;
    if (prev) await prev;
  }

  /** Bytes held by resident parameters now. */
  get residentBytes(): number {
    return this.bytes;
  }

  /** The buffer holding `p`'s bytes: resident, or filled now (evicting the least recently used to make room). */
  buffer(p: StreamedParameter): GPUBuffer {
    const hit = this.resident.get(p);
    if (hit) {
      this.stats.hits++;
      this.resident.delete(p);
      this.resident.set(p, hit);
      return hit;
    }
    this.makeRoom(p.byteLength);
    // A buffer of the weight's exact size, destroyed when evicted: weights come in dozens of sizes, and pooled by
    // size class they would stay allocated class by class (+250 MB measured on SDXS-512's UNet in f16), while a
    // destroyed buffer's memory goes back once the GPU is past it, which `pace` keeps close.
    const buf = this.device.pool.acquireExact(p.byteLength, p.label);
    try {
      p.fill(buf);
    } catch (e) {
      this.device.pool.release(buf);
      throw e;
    }
    this.resident.set(p, buf);
    this.bytes += buf.size;
    this.stats.loads++;
    this.stats.loadedBytes += p.byteLength;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.bytes);
    return buf;
  }

  /** Drops `p` (evicted, or its tensor disposed): its buffer is destroyed once the work recorded so far is submitted. */
  forget(p: StreamedParameter): void {
    const buf = this.resident.get(p);
    if (!buf) return;
    this.resident.delete(p);
    this.bytes -= buf.size;
    this.device.pool.release(buf);
  }

  private makeRoom(size: number): void {
    while (this.bytes + size > this.budgetBytes && this.resident.size > this.protect) {
      const oldest = this.resident.keys().next().value as StreamedParameter;
      this.forget(oldest);
      this.stats.evictions++;
    }
  }
}
