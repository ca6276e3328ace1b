// The budget and bookkeeping of every fuzz target (test/null/fuzz-*.test.ts: the weight-file readers, the PNG
// decoder, the CLIP tokenizer, the parquet prompts reader, the HTTP side of fewstep serve).
//
// Budget, from the environment:
//   FEWSTEP_FUZZ_SECONDS  seconds of generated inputs per target (default 3: `npm test` stays quick)
//   FEWSTEP_FUZZ_RUNS     most inputs per target (default: as many as the seconds allow)
//   FEWSTEP_FUZZ_SEED     fast-check seed, to replay a reported failure (default: a fresh one each run, printed on failure)
// A longer run, with a summary line per target (inputs, worst time, worst memory):
//   FEWSTEP_FUZZ_SECONDS=300 npx vitest run --config test/vitest.config.ts null/fuzz-safetensors null/fuzz-checkpoint
//   FEWSTEP_FUZZ_SECONDS=300 npx vitest run --config test/vitest.config.ts null/fuzz-png null/fuzz-tokenizer null/fuzz-parquet null/fuzz-serve
import { expect } from 'vitest';
import fc from 'fast-check';
import { FewstepError } from '@fewstep/tensor';

const num = (name: string): number | undefined => {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: expected a positive number`);
  return n;
};

export const FUZZ = {
  seconds: num('FEWSTEP_FUZZ_SECONDS') ?? 3,
  runs: num('FEWSTEP_FUZZ_RUNS'),
  seed: num('FEWSTEP_FUZZ_SEED'),
  /** Print a summary line per target (set when a budget is given). */
  report: process.env['FEWSTEP_FUZZ_SECONDS'] !== undefined || process.env['FEWSTEP_FUZZ_RUNS'] !== undefined,
};

/** Bounds every input must keep, generous for a shared 2-core machine (the hostile files took minutes or GBs). */
export const FUZZ_BOUNDS = { msPerInput: 10_000, heapMiBPerInput: 512, rssGrowthMiB: 1536 };

/** The vitest timeout for a fuzz target: its budget plus room for the slowest input and shrinking. */
export const fuzzTimeout = (): number => FUZZ.seconds * 1000 + 120_000;

/** fast-check parameters for one target: the budget, and `examples` run first (the regression inputs). */
export function fuzzParams<T>(examples: T[] = []): fc.Parameters<[T]> {
  return {
    numRuns: FUZZ.runs ?? 1_000_000_000,
    plugins: [fc.interruptAfterTimeLimit(FUZZ.seconds * 1000)],
    ...(FUZZ.seed !== undefined ? { seed: FUZZ.seed } : {}),
    examples: examples.map((e) => [e] as [T]),
  };
}

/** Counts inputs and keeps the worst time and memory seen by one target. */
export class FuzzStats {
  inputs = 0;
  opened = 0;
  worstMs = 0;
  worstMsInput = '';
  worstHeapMiB = 0;
  private readonly rss0 = process.memoryUsage().rss;
  maxRssGrowthMiB = 0;
  /** The process's peak resident set (getrusage's high-water mark, so a spike inside one input counts too). */
  peakRssMiB = 0;
  private readonly peakRss0MiB = process.resourceUsage().maxRSS / 1024;
  readonly errors = new Map<string, number>();

  constructor(readonly target: string) {}

  /**
   * Runs one input (everything `fn` does with one generated file), within FUZZ_BOUNDS of time and memory.
   * `fn` says whether the file was read (true) or refused (false).
   */
  async one(label: string, fn: () => Promise<boolean>): Promise<void> {
    // Let the event loop run between inputs: a target whose reads resolve synchronously would otherwise starve
    // vitest's worker messages for the whole budget (its RPC times out after a minute).
    await new Promise((resolve) => setImmediate(resolve));
    const m0 = process.memoryUsage();
    const t0 = performance.now();
    const opened = await fn();
    const ms = performance.now() - t0;
    const m1 = process.memoryUsage();
    const heapMiB = (m1.heapUsed + m1.arrayBuffers - m0.heapUsed - m0.arrayBuffers) / 2 ** 20;
    this.inputs++;
    if (opened) this.opened++;
    if (ms > this.worstMs) {
      this.worstMs = ms;
      this.worstMsInput = label;
    }
    this.worstHeapMiB = Math.max(this.worstHeapMiB, heapMiB);
    this.peakRssMiB = process.resourceUsage().maxRSS / 1024;
    // The high-water mark since this target began (its start value may be below rss0's page count: take rss0).
    this.maxRssGrowthMiB = Math.max(this.maxRssGrowthMiB, (m1.rss - this.rss0) / 2 ** 20, this.peakRssMiB - Math.max(this.rss0 / 2 ** 20, this.peakRss0MiB));
    expect(ms, `${label}: took ${ms.toFixed(0)} ms`).toBeLessThan(FUZZ_BOUNDS.msPerInput);
    expect(heapMiB, `${label}: heap grew ${heapMiB.toFixed(0)} MiB`).toBeLessThan(FUZZ_BOUNDS.heapMiBPerInput);
    expect(this.maxRssGrowthMiB, `${label}: rss grew ${this.maxRssGrowthMiB.toFixed(0)} MiB`).toBeLessThan(FUZZ_BOUNDS.rssGrowthMiB);
  }

  /**
   * One call on a generated file: it resolves, or rejects with a FewstepError whose one-line message starts
   * with the file's name (anything else — a RangeError, a TypeError, a stack overflow — fails the target).
   * Returns the result, or undefined when it was refused.
   */
  async settle<T>(file: string, label: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof FewstepError)) throw new Error(`${this.target}: ${label}: not a FewstepError: ${(error as Error)?.stack ?? String(error)}`);
      expect(error.message.startsWith(`${file}: `), `${label}: the message must start with the file: ${error.message.slice(0, 300)}`).toBe(true);
      expect(/[\n\r\u2028\u2029]/.test(error.message), `${label}: one line: ${JSON.stringify(error.message.slice(0, 300))}`).toBe(false);
      this.count(`${error.constructor.name}(${error.code})`);
      return undefined;
    }
  }

  /** Records one refusal of kind `kind` (for targets whose errors are not FewstepErrors, e.g. HTTP statuses). */
  count(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  summary(): string {
    const errs = [...this.errors].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ×${n}`).join(', ');
    return (
      `fuzz ${this.target}: ${this.inputs} inputs (${this.opened} read, ${this.inputs - this.opened} refused; errors: ${errs || 'none'}); ` +
      `worst time ${this.worstMs.toFixed(1)} ms (${this.worstMsInput}), worst heap growth in one input ${this.worstHeapMiB.toFixed(1)} MiB, rss growth ${this.maxRssGrowthMiB.toFixed(0)} MiB (peak rss ${this.peakRssMiB.toFixed(0)} MiB)`
    );
  }
}
