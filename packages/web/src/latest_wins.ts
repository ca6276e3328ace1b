/**
 * A queue of at most one waiting job, where a newer job replaces the waiting one ("latest wins"): the sketch
 * mode submits a generation at every stroke end; the running one finishes, then only the newest drawing runs.
 * Pure (no DOM).
 */
export interface LatestWinsState {
  running: boolean;
  /** A job is waiting (at most one). */
  queued: boolean;
  /** Jobs submitted, started, and replaced before they started. */
  submitted: number;
  started: number;
  dropped: number;
}

export class LatestWins<T> {
  private current: Promise<void> | null = null;
  private pending: { job: T } | null = null;
  private controller: AbortController | null = null;
  private readonly stats = { submitted: 0, started: 0, dropped: 0 };
  private idleWaiters: (() => void)[] = [];

  /**
   * @param run runs one job; a rejection is passed to `onError` and does not stop the queue.
   * @param onChange called whenever the state changes (for a status line).
   */
  constructor(
    private readonly run: (job: T, signal: AbortSignal) => Promise<void>,
    private readonly onError: (e: unknown, job: T) => void = () => {},
    private readonly onChange: (s: LatestWinsState) => void = () => {},
  ) {}

  get state(): LatestWinsState {
    return { running: this.current !== null, queued: this.pending !== null, ...this.stats };
  }

  /** Runs `job` now when idle; otherwise it waits, replacing any job already waiting. */
  submit(job: T): void {
    this.stats.submitted++;
    if (this.pending) this.stats.dropped++;
    this.pending = { job };
    if (!this.current) this.next();
    else this.onChange(this.state);
  }

  /** Drops the waiting job and aborts the running one (its `signal`). */
  cancel(): void {
    if (this.pending) this.stats.dropped++;
    this.pending = null;
    this.controller?.abort();
    this.onChange(this.state);
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (!this.current && !this.pending) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  private next(): void {
    const p = this.pending;
    this.pending = null;
    if (!p) {
      this.current = null;
      this.controller = null;
      this.onChange(this.state);
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    this.stats.started++;
    const controller = new AbortController();
    this.controller = controller;
    this.current = (async () => {
      try {
        await this.run(p.job, controller.signal);
      } catch (e) {
        this.onError(e, p.job);
      }
    })().then(() => this.next());
    this.onChange(this.state);
  }
}
