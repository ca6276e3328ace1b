// The command table: one import per subcommand file.
import type { Command } from '../command';
import { generate } from './generate';
import { batch } from './batch';
import { inspect } from './inspect';
import { convert } from './convert';
import { tokenize } from './tokenize';
import { bench } from './bench';
import { download } from './download';
import { run } from './run';

export const commands: Command[] = [generate, batch, inspect, convert, tokenize, bench, run, download];
