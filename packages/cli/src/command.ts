import type { FlagSpec } from './args.js';

/**
 * One `fewstep <name>` subcommand; each lives in its own file under commands/ and is imported only when it
 * runs (or its --help is asked for): commands/index.ts holds the names and summaries.
 */
export interface Command {
  name: string;
  /** Ignored: `fewstep --help` shows the summary in commands/index.ts (so it loads no command). */
  summary?: string | undefined;
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
  /**
   * Returns the exit code. Throw UsageError for bad input (exit 2) or a FewstepError (@fewstep/tensor's
   * classes and their subclasses; exit 1). An abort through `io.signal` ends as "cancelled", exit 130.
   */
  run(args: { flags: Record<string, unknown>; positionals: string[] }, io: CliIO): Promise<number>;
}

/** A command as the table knows it: what `fewstep --help` prints, and how to load the rest. */
export interface CommandEntry {
  name: string;
  /** One line for `fewstep --help`. */
  summary: string;
  load(): Promise<Command>;
}

export interface CliIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** True when stderr is a terminal (status line and progress bars only then). */
  isTTY: boolean;
  /** Binary output on stdout (`generate -o -`); resolves once written. */
  stdoutBytes?: ((bytes: Uint8Array) => Promise<void>) | undefined;
  /** True when stdout is a terminal (`-o -` then refuses to print binary). */
  stdoutIsTTY?: boolean | undefined;
  /** Cancels the command: downloads, loading and generation stop, nothing partial is left, exit 130. */
  signal?: AbortSignal | undefined;
  /** Terminal width for the status line (default 80). */
  columns?: number | undefined;
}
