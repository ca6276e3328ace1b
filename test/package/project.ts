// Helpers of the package test: the published workspaces, `npm pack`, a consumer project whose lockfile pins
// the repo's own dependency versions (so `npm ci --offline` installs from the npm cache `npm ci` filled),
// child processes, and the README's code blocks.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = fileURLToPath(new URL('../../', import.meta.url));

export interface Proc {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to its end (killed after `timeoutMs`); never throws for a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Proc> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8') + (signal ? `\n[killed by ${signal}]` : '');
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr, ms: performance.now() - t0 });
    });
  });
}

/** `cmd args` with its output, for assertion messages. */
export const describeRun = (what: string, r: Proc) => `${what} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** The environment minus what an enclosing `npm test` / `npm run -w` sets for its own package. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package_|lifecycle_|config_workspaces?$|config_include_workspace_root$)/i.test(k)) continue;
    if (/^HF_/.test(k)) continue; // no user token, endpoint or cache: the test never talks to a hub
    env[k] = v;
  }
  return { ...env, ...extra };
}

interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  license?: string;
  workspaces?: string[];
  exports?: unknown;
  bin?: Record<string, string>;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, unknown>;
}
const readJson = <T>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;

export interface Workspace {
  dir: string;
  pkg: PackageJson;
}

/** The root's workspaces that are published (not `private`), in the root's order. */
export function publishedWorkspaces(): Workspace[] {
  const root = readJson<PackageJson>(join(repo, 'package.json'));
  return (root.workspaces ?? []).map((dir) => ({ dir, pkg: readJson<PackageJson>(join(repo, dir, 'package.json')) })).filter((w) => !w.pkg.private);
}

/** One entry of `npm pack --json`. */
export interface Packed {
  name: string;
  version: string;
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}

/** `npm pack` of the given workspaces into `dest` (their prepack/postpack scripts run as on publish). */
export async function pack(workspaces: Workspace[], dest: string, env: NodeJS.ProcessEnv): Promise<Packed[]> {
  const args = ['pack', ...workspaces.flatMap((w) => ['-w', w.dir]), '--pack-destination', dest, '--json'];
  const r = await run('npm', args, { cwd: repo, env });
  if (r.code !== 0) throw new Error(describeRun(`npm ${args.join(' ')}`, r));
  return JSON.parse(r.stdout) as Packed[];
}

/** Every file path named by an `exports` map (all conditions) and `bin`. */
export function exportedFiles(pkg: PackageJson): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(pkg.exports);
  walk(pkg.bin);
  return [...new Set(out.map((p) => p.replace(/^\.\//, '')))];
}

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
  dev?: boolean;
  devOptional?: boolean;
  dependencies?: Record<string, string>;
  [k: string]: unknown;
}

/**
 * A consumer project in `app` depending on the tarballs (and @types/node), with a package-lock.json: the
 * tarballs by path and integrity, every registry package at the version and integrity the repo's own
 * package-lock.json has (what `npm ci` put in the npm cache), so `npm ci --offline` needs no registry.
 */
export function writeConsumerProject(app: string, tarballDir: string, packed: Packed[], workspaces: Workspace[]): void {
  const rootLock = readJson<{ packages: Record<string, LockEntry> }>(join(repo, 'package-lock.json')).packages;
  const typesNode = rootLock['node_modules/@types/node'];
  if (!typesNode?.version) throw new Error('package-lock.json has no node_modules/@types/node');
  const top = { name: 'fewstep-consumer', version: '1.0.0', dependencies: {} as Record<string, string>, devDependencies: { '@types/node': typesNode.version } };
  const packages: Record<string, LockEntry> = {};
  const queue: { name: string; from: string; dev: boolean; optional?: boolean }[] = [];

  for (const p of packed) {
    const ws = workspaces.find((w) => w.pkg.name === p.name);
    if (!ws) throw new Error(`npm pack returned ${p.name}, which is not a published workspace`);
    const tgz = join(tarballDir, p.filename);
    const spec = `file:${relative(app, tgz)}`;
    top.dependencies[p.name] = spec;
    const { name: _n, private: _p, workspaces: _w, exports: _e, ...meta } = ws.pkg;
    const entry: LockEntry = { version: ws.pkg.version, resolved: spec, integrity: `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}` };
    for (const k of ['license', 'dependencies', 'peerDependencies', 'peerDependenciesMeta', 'bin', 'engines'] as const) if (meta[k]) (entry as Record<string, unknown>)[k] = meta[k];
    packages[`node_modules/${p.name}`] = entry;
    for (const d of Object.keys(ws.pkg.dependencies ?? {})) if (!packed.some((q) => q.name === d)) queue.push({ name: d, from: ws.dir, dev: false });
  }
  queue.push({ name: '@types/node', from: '', dev: true });

  // Registry packages, flattened into the consumer's node_modules: each resolved from where the repo's
  // lock has it for the package that needs it (nested first, then hoisted), as Node resolves.
  const chosen = new Map<string, string>();
  for (let q = queue.shift(); q; q = queue.shift()) {
    let key: string | undefined;
    for (let at = q.from; ; ) {
      const k = `${at ? `${at}/` : ''}node_modules/${q.name}`;
      if (rootLock[k]) {
        key = k;
        break;
      }
      if (!at) break;
      const i = at.lastIndexOf('/node_modules/');
      at = i >= 0 ? at.slice(0, i) : '';
    }
    if (!key && q.optional) continue; // an optional dependency the repo's lock does not hold (another platform's)
    if (!key) throw new Error(`${q.name} (needed by ${q.from || 'the consumer'}) is not in package-lock.json; run npm install`);
    const dest = `node_modules/${q.name}`;
    const prev = chosen.get(q.name);
    if (prev !== undefined) {
      if (prev !== key) throw new Error(`package-lock.json has two versions of ${q.name} (${prev}, ${key}) for the packed packages`);
      if (!q.dev) delete packages[dest]!.dev;
      continue;
    }
    const { dev: _d, devOptional: _o, ...entry } = rootLock[key]!;
    if (entry.link) throw new Error(`${q.name} is a workspace link in package-lock.json but was not packed`);
    entry.resolved ??= `https://registry.npmjs.org/${q.name}/-/${q.name.split('/').pop()}-${entry.version}.tgz`;
    packages[dest] = q.dev ? { ...entry, dev: true } : entry;
    chosen.set(q.name, key);
    for (const d of Object.keys(entry.dependencies ?? {})) queue.push({ name: d, from: key, dev: q.dev });
    // Optional ones too (sharp's prebuilt binaries: each platform's entry is in the lock; npm installs the matching one).
    for (const d of Object.keys((entry['optionalDependencies'] as Record<string, string> | undefined) ?? {})) queue.push({ name: d, from: key, dev: q.dev, optional: true });
  }

  writeFileSync(join(app, 'package.json'), JSON.stringify({ ...top, private: true, type: 'module' }, null, 2) + '\n');
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: top.name, version: top.version, lockfileVersion: 3, requires: true, packages: { '': top, ...packages } }, null, 2) + '\n');
}

/**
 * The strict consumer settings the packages promise to compile under. No `types`: as in a fresh project,
 * @types/node is picked up by itself, and WebGPU's global types must come from the packages' declarations.
 */
export const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noPropertyAccessFromIndexSignature: true,
    skipLibCheck: false,
    rootDir: 'src',
    outDir: 'dist',
    noEmitOnError: true,
  },
  include: ['src'],
};

/** The ```lang fenced blocks of a markdown text, in order. */
export function fencedBlocks(md: string, lang: string): string[] {
  return [...md.matchAll(/^```(\S*)[^\n]*\n([\s\S]*?)^```\s*$/gm)].filter((m) => m[1] === lang).map((m) => m[2]!);
}

/** The first ```lang block after the line `heading` and before the next heading of the same or a higher level. */
export function blockUnder(md: string, heading: string, lang: string, file: string): string {
  const lines = md.split('\n');
  const at = lines.findIndex((l) => l.trim() === heading);
  if (at < 0) throw new Error(`${file}: no heading "${heading}" (the package test runs the \`\`\`${lang} block under it)`);
  const level = /^#+/.exec(heading)?.[0].length ?? 2;
  const end = lines.findIndex((l, i) => i > at && /^#+\s/.test(l) && /^#+/.exec(l)![0].length <= level);
  const section = lines.slice(at + 1, end < 0 ? undefined : end).join('\n');
  const block = fencedBlocks(section, lang)[0];
  if (block === undefined) throw new Error(`${file}: no \`\`\`${lang} block under "${heading}" (the package test runs it as the library example)`);
  return block;
}

/** The value of `key: <literal>` or `const key = <literal>` in TypeScript source (comments ignored). */
export function literalOf(src: string, key: string): string | undefined {
  const code = src.replace(/(^|\s)\/\/.*$/gm, '$1');
  const lit = String.raw`('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d+)?(?:e-?\d+)?)`;
  const m = new RegExp(String.raw`(?:[{,\s]${key}\s*:|\bconst\s+${key}\s*=)\s*${lit}`).exec(code);
  if (!m) return undefined;
  const v = m[1]!;
  return /^['"]/.test(v) ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
}

/** Generation settings the README example writes as literals, as `fewstep generate` flags. */
const GENERATE_FLAGS: Record<string, string> = {
  seed: '--seed',
  steps: '--steps',
  guidance: '--guidance',
  width: '--width',
  height: '--height',
  dtype: '--dtype',
  vae: '--vae',
  negativePrompt: '--negative-prompt',
  scheduler: '--scheduler',
};

/** `fewstep generate` arguments for the image the example makes (its prompt, seed and literal settings). */
export function cliArgsFor(example: string, model: string, out: string): string[] {
  const prompt = literalOf(example, 'prompt');
  const seed = literalOf(example, 'seed');
  if (prompt === undefined || seed === undefined) {
    throw new Error(
      'README example: no literal `prompt` (`const prompt = \'…\'` or `prompt: \'…\'`) or `seed: N` found; the package test needs both to run the CLI on the same image',
    );
  }
  const flags = Object.entries(GENERATE_FLAGS).flatMap(([k, flag]) => {
    const v = literalOf(example, k);
    return v === undefined ? [] : [flag, v];
  });
  return ['generate', prompt, '--model', model, '--out', out, ...flags];
}
