import { UsageError, formatHelp, parseArgs } from './args.js';
import { bindProcessSignals, isCancellation } from './cancel.js';
import type { CliIO, Command } from './command.js';
import { commands } from './commands/index.js';
import { VERSION } from './version.js';

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
 * or Ctrl-C / SIGTERM with the default IO). Errors print as one line (FEWSTEP_DEBUG=1 shows stacks).
 */
export async function main(argv: string[], io?: CliIO): Promise<number> {
  if (io) return run(argv, io);
  const signals = bindProcessSignals();
  try {
    return await run(argv, defaultIO(signals.signal));
  } finally {
    signals.release();
  }
}

async function run(argv: string[], io: CliIO): Promise<number> {
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
    io.stderr(`fewstep: unknown command "${name}" (commands: ${commands.map((c) => c.name).join(', ')})\n`);
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
    const err = e instanceof Error ? e : new Error(String(e));
    if (process.env['FEWSTEP_DEBUG']) io.stderr(`${err.stack}\n`);
    if (await isCancellation(e, io.signal)) {
      io.stderr(`fewstep ${cmd.name}: cancelled\n`);
      return 130;
    }
    io.stderr(`fewstep ${cmd.name}: ${err.message.split('\n')[0]}\n`);
    for (const line of err.message.split('\n').slice(1)) io.stderr(`  ${line}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function defaultIO(signal: AbortSignal): CliIO {
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    stdoutBytes: (bytes) => new Promise<void>((resolve, reject) => void process.stdout.write(bytes, (e) => (e ? reject(e) : resolve()))),
    isTTY: Boolean(process.stderr.isTTY),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    columns: process.stderr.columns,
    signal,
  };
}
