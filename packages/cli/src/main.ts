import { UsageError, formatHelp, parseArgs } from './args.js';
import type { CliIO, Command } from './command.js';

const VERSION = '0.1.0';

// The command table loads every command's dependencies (models, kernels, ...): `--version` must not wait
// for that (scripts/bench-startup.mjs), so it is imported on first use.
const loadCommands = async (): Promise<Command[]> => (await import('./commands/index.js')).commands;

function topHelp(commands: Command[]): string {
  const w = Math.max(...commands.map((c) => c.name.length)) + 2;
  return (
    `fewstep ${VERSION} — one- and few-step diffusion on WebGPU, in TypeScript\n\n` +
    `Usage: fewstep <command> [flags]\n\nCommands:\n` +
    commands.map((c) => `  ${c.name.padEnd(w)}${c.summary}`).join('\n') +
    `\n\nRun \`fewstep <command> --help\` for a command's flags.\n`
  );
}

/** Entry point; returns the process exit code. Errors print as one line (FEWSTEP_DEBUG=1 shows stacks). */
export async function main(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    io.stdout(`${VERSION}\n`);
    return 0;
  }
  const commands = await loadCommands();
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(topHelp(commands));
    return 0;
  }
  const cmd: Command | undefined = commands.find((c) => c.name === name);
  if (!cmd) {
    io.stderr(`fewstep: unknown command "${name}" (commands: ${commands.map((c) => c.name).join(', ')})\n`);
    return 2;
  }
  if (rest.includes('--help') && !rest.slice(0, rest.indexOf('--help')).includes('--')) {
    io.stdout(formatHelp(cmd.usage, cmd.description, cmd.flags));
    return 0;
  }
  try {
    const parsed = parseArgs(cmd.name, rest, cmd.flags);
    return await cmd.run(parsed, io);
  } catch (e) {
    const err = e as Error;
    if (process.env['FEWSTEP_DEBUG']) io.stderr(`${err.stack}\n`);
    io.stderr(`fewstep ${cmd.name}: ${err.message.split('\n')[0]}\n`);
    for (const line of err.message.split('\n').slice(1)) io.stderr(`  ${line}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function defaultIO(): CliIO {
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    isTTY: Boolean(process.stderr.isTTY),
  };
}
