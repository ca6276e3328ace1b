#!/usr/bin/env node
// The compiled CLI (dist/, built by `npm run build`), run with plain node.
import { main } from '../dist/main.js';
process.exitCode = await main(process.argv.slice(2));
