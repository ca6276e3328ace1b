// The command table: one import per subcommand file.
import type { Command } from '../command';
import { generate } from './generate';
import { inspect } from './inspect';
import { tokenize } from './tokenize';
import { bench } from './bench';

export const commands: Command[] = [generate, inspect, tokenize, bench];
