// The command table: one import per subcommand file.
import type { Command } from '../command';
import { generate } from './generate';
import { inspect } from './inspect';
import { tokenize } from './tokenize';
import { bench } from './bench';
import { download } from './download';
import { run } from './run';

export const commands: Command[] = [generate, inspect, tokenize, bench, run, download];
