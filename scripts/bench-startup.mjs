#!/usr/bin/env node
// Startup time of the installed-style CLI (`node packages/cli/bin/fewstep.mjs`, compiled dist/, so run
// `npm run build` first), hyperfine-style: warm-up runs, then N timed runs of each command line, wall
// clock from spawn to exit. Prints one JSON object; target for `--version`: median ≤ 400 ms.
//
//   node scripts/bench-startup.mjs [--runs N] [--warmup N] [-- <args>...]
//
// Without `-- args`, times `--version` and `--help`; a bare `node -e 0` run is the floor for reference.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = 'packages/cli/bin/fewstep.mjs';
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} needs a positive integer`);
  return n;
};
const runs = opt('--runs', 20);
const warmup = opt('--warmup', 3);
const dash = argv.indexOf('--');
const cases = dash >= 0 ? [argv.slice(dash + 1)] : [['--version'], ['--help']];

if (!existsSync(new URL('../packages/cli/dist/main.js', import.meta.url))) {
  console.error('bench-startup: packages/cli/dist/main.js is missing; run `npm run build` first');
  process.exit(1);
}

function once(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

function bench(args) {
  for (let i = 0; i < warmup; i++) once(args);
  const t = Array.from({ length: runs }, () => once(args)).sort((a, b) => a - b);
  const q = (p) => t[Math.min(t.length - 1, Math.ceil(p * t.length) - 1)];
  const r1 = (x) => Math.round(x * 10) / 10;
  const mean = t.reduce((s, x) => s + x, 0) / t.length;
  return { command: `node ${args.join(' ')}`, runs, median_ms: r1(q(0.5)), min_ms: r1(t[0]), p90_ms: r1(q(0.9)), max_ms: r1(t[t.length - 1]), mean_ms: r1(mean) };
}

const results = [bench(['-e', '0']), ...cases.map((c) => bench([bin, ...c]))];
console.log(JSON.stringify({ node: process.version, platform: `${process.platform}-${process.arch}`, warmup, results }, null, 2));
