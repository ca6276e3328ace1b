import { UsageError, formatHelp, parseArgs } from './args.js';
import { bindProcessSignals, isCancellation } from './cancel.js';
import type { CliIO, Command } from './command.js';
import { commands } from './commands/index.js';
import { terminalSafe } from './terminal.js';
import { VERSION } from './version.js';

/**
 * Thrown by the default IO's stdout once the reader of a pipe has gone (`fewstep inspect x | head -1`): it
 * stops the command at its next print, and `main` then exits 0 without a word — the reader asked for no more,
 * that is not an error.
 */
class StdoutClosed extends Error {
  constructor() {
    super('stdout closed');
  }
}

/** Watches a standard stream for a closed pipe (EPIPE): no unhandled 'error' event, no stack trace. */
function pipeWatch(stream: NodeJS.WriteStream): { closed: () => boolean } {
  let closed = false;
  // EPIPE (the reader is gone) — or any other error of a standard stream, as final: nothing more can be shown there.
  stream.on('error', () => {
    closed = true;
  });
  return { closed: () => closed || stream.destroyed };
}

function topHelp(): string {
  const w = Math.max(...commands.map((c) => c.name.length)) + 2;
  return (
    `fewstep ${VERSION} — one- and few-step diffusion on WebGPU, in TypeScript\n\n` +
    `Usage: fewstep <command> [flags]\n\nCommands:\n` +
    commands.map((c) => `  ${c.name.padEnd(w)}${c.summary}`).join('\n') +
    `\n\nRun \`fewstep <command> --help\` for a command's flags.\n`
  );
}

/**
 * Entry point; returns the process exit code: 0 success, 1 error, 2 usage error, 130 cancelled (io.signal,
 * or Ctrl-C / SIGTERM with the default IO). Errors print as one line (FEWSTEP_DEBUG=1 shows stacks), their
 * control characters escaped (a message may quote a file). With the default IO, a stdout pipe closed by its
 * reader ends the command quietly with exit 0.
 */
export async function main(argv: string[], io?: CliIO): Promise<number> {
  if (io) return run(argv, io);
  const signals = bindProcessSignals();
  const out = pipeWatch(process.stdout);
  pipeWatch(process.stderr);
  try {
    return await run(argv, defaultIO(signals.signal, out.closed), out.closed);
  } finally {
    signals.release();
  }
}

const isClosedPipe = (e: unknown) => e instanceof StdoutClosed || ['EPIPE', 'ERR_STREAM_DESTROYED'].includes((e as NodeJS.ErrnoException | undefined)?.code ?? '');

async function run(argv: string[], io: CliIO, stdoutClosed?: () => boolean): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    io.stdout(`${VERSION}\n`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(topHelp());
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    io.stderr(`fewstep: unknown command "${terminalSafe(name)}" (commands: ${commands.map((c) => c.name).join(', ')})\n`);
    return 2;
  }
  const cmd: Command = await entry.load();
  if (rest.includes('--help') && !rest.slice(0, rest.indexOf('--help')).includes('--')) {
    io.stdout(formatHelp(cmd.usage, cmd.description, cmd.flags));
    return 0;
  }
  try {
    const parsed = parseArgs(cmd.name, rest, cmd.flags);
    return await cmd.run(parsed, io);
  } catch (e) {
    if (stdoutClosed?.() && isClosedPipe(e)) return 0;
    const err = e instanceof Error ? e : new Error(String(e));
    if (process.env['FEWSTEP_DEBUG']) io.stderr(`${terminalSafe(err.stack ?? '', { keepNewlines: true })}\n`);
    if (await isCancellation(e, io.signal)) {
      io.stderr(`fewstep ${cmd.name}: cancelled\n`);
      return 130;
    }
    // A message may quote a tensor name, a pickle global, a hub reply: control characters are shown escaped.
    const lines = err.message.split('\n');
    io.stderr(`fewstep ${cmd.name}: ${terminalSafe(lines[0] ?? '')}\n`);
    for (const line of lines.slice(1)) io.stderr(`  ${terminalSafe(line)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function defaultIO(signal: AbortSignal, stdoutClosed: () => boolean): CliIO {
  return {
    stdout: (s) => {
      if (stdoutClosed()) throw new StdoutClosed();
      process.stdout.write(s);
    },
    stderr: (s) => {
      if (!process.stderr.destroyed) process.stderr.write(s);
    },
    stdoutBytes: (bytes) =>
      new Promise<void>((resolve, reject) => {
        if (stdoutClosed()) return reject(new StdoutClosed());
        process.stdout.write(bytes, (e) => (e ? reject(e) : resolve()));
      }),
    isTTY: Boolean(process.stderr.isTTY),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    columns: process.stderr.columns,
    signal,
  };
}
