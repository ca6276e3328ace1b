import type { FlagSpec } from './args.js';

/** One `fewstep <name>` subcommand; each lives in its own file under commands/. */
export interface Command {
  name: string;
  /** One line for `fewstep --help`. */
  summary: string;
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
  /** Returns the exit code. Throw UsageError for bad input (exit 2) or Error (exit 1). */
  run(args: { flags: Record<string, unknown>; positionals: string[] }, io: CliIO): Promise<number>;
}

export interface CliIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** True when stderr is a terminal (progress bars only then). */
  isTTY: boolean;
}
