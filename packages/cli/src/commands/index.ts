// The command table: one import per subcommand file.
import type { Command } from '../command.js';
import { generate } from './generate.js';
import { batch } from './batch.js';
import { inspect } from './inspect.js';
import { convert } from './convert.js';
import { tokenize } from './tokenize.js';
import { bench } from './bench.js';
import { download } from './download.js';
import { run } from './run.js';

export const commands: Command[] = [generate, batch, inspect, convert, tokenize, bench, run, download];
