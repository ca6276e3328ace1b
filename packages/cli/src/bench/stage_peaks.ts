/**
 * Peak RSS and peak GPU pool memory per named stage of a benchmark. RSS: on Linux the kernel's high-water mark
 * (VmHWM in /proc/self/status), reset at each stage's start by writing 5 to /proc/self/clear_refs, so a spike
 * between two samples still counts; elsewhere (or where /proc cannot be written) RSS sampled every 10 ms.
 * GPU: the buffer pool's peak (bytes in use + pooled), reset to what it holds at the stage's start.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Device } from '@fewstep/tensor';

export interface StagePeak {
  /** Highest resident set size of the process during the stage, MiB. */
  rss_mb: number;
  /** Highest GPU buffer-pool total (in use + pooled) during the stage, MiB. */
  gpu_mb: number;
}

const MB = 2 ** 20;

function highWaterMark(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function resetHighWaterMark(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

export class StagePeaks {
  readonly stages: Record<string, StagePeak> = {};
  private sampled = 0;
  private current: string | null = null;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly kernel: boolean;
  /** Highest RSS seen over all stages (bytes). */
  private overall = 0;

  constructor(private readonly device: Device) {
    this.kernel = highWaterMark() !== null && resetHighWaterMark();
    this.timer = setInterval(() => {
      if (this.current !== null) this.sampled = Math.max(this.sampled, process.memoryUsage.rss());
    }, 10);
    this.timer.unref();
  }

  /** Runs `fn` as stage `name`; a stage measured again (warm runs) keeps the higher peaks. */
  async measure<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const pool = this.device.pool.stats;
    pool.peak = pool.inUse + pool.pooled;
    if (this.kernel) resetHighWaterMark();
    this.sampled = process.memoryUsage.rss();
    this.current = name;
    try {
      return await fn();
    } finally {
      this.current = null;
      const rss = Math.max(this.sampled, process.memoryUsage.rss(), (this.kernel ? highWaterMark() : null) ?? 0);
      this.overall = Math.max(this.overall, rss);
      const prev = this.stages[name];
      this.stages[name] = {
        rss_mb: Math.max(prev?.rss_mb ?? 0, Math.round(rss / MB)),
        gpu_mb: Math.max(prev?.gpu_mb ?? 0, Math.round(pool.peak / MB)),
      };
    }
  }

  /** The highest RSS over every stage measured, MiB. */
  get peakRssMb(): number {
    return Math.round(this.overall / MB);
  }

  /** The highest GPU pool total over every stage measured, MiB. */
  get peakGpuMb(): number {
    return Math.max(0, ...Object.values(this.stages).map((s) => s.gpu_mb));
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** "text encoder 812/655, unet 1480/1320, …" (RSS/GPU MiB) for the human output. */
export function formatStagePeaks(stages: Record<string, StagePeak>): string {
  return Object.entries(stages).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v.rss_mb}/${v.gpu_mb}`).join(', ');
}
