/**
 * `fewstep bench kernels --peer ort`: times the same ops with ONNX Runtime (shared/anchors/ort-ops/run.mjs)
 * on the same adapter, back to back with ours, and merges the numbers into our rows.
 *
 * onnxruntime-node is a benchmark-only tool: it is installed on demand into a cache folder
 * (`npm install --no-save --ignore-scripts`), never a dependency of any package.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ORT_PACKAGE = 'onnxruntime-node@1.30.0';
export type PeerEp = 'webgpu' | 'cpu';

export interface PeerRow {
  case: string;
  ep: string;
  median_ms: number;
  min_ms: number;
  gflops: number | null;
}

export interface PeerResult {
  engine: string;
  ep: string;
  rows: PeerRow[];
}

/** Fields `mergePeer` adds to a row whose case the peer also ran. */
export interface PeerFields {
  peer_ms?: number | undefined;
  peer_ep?: string | undefined;
  /** peer_ms / median_ms: above 1 means fewstep is faster. */
  speedup?: number | undefined;
}

/** `<repo>/../shared/anchors/ort-ops` (the shared folder sits next to the repository). */
export function defaultAnchorsDir(): string {
  const repo = fileURLToPath(new URL('../../../../', import.meta.url));
  return resolve(repo, '..', 'shared', 'anchors', 'ort-ops');
}

/** `$XDG_CACHE_HOME/fewstep/ort`, else `~/.cache/fewstep/ort`. */
export function defaultOrtCache(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_CACHE_HOME'] && env['XDG_CACHE_HOME'].trim() !== '' ? env['XDG_CACHE_HOME'] : join(homedir(), '.cache');
  return join(base, 'fewstep', 'ort');
}

export interface AnchorCase {
  name: string;
  file: string;
  inputs: Record<string, number[]>;
  gflop: number;
  what?: string | undefined;
}

/** Reads `<anchorsDir>/cases.json`; a clear error when the folder or its runner is missing. */
export function loadAnchorCases(anchorsDir: string): AnchorCase[] {
  const cases = join(anchorsDir, 'cases.json'), runner = join(anchorsDir, 'run.mjs');
  for (const f of [cases, runner])
    if (!existsSync(f)) throw new Error(`ORT anchors not found: ${f} is missing (pass --anchors <dir>, the folder holding shared/anchors/ort-ops/cases.json and run.mjs)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(cases, 'utf8'));
  } catch (e) {
    throw new Error(`${cases}: not valid JSON (${(e as Error).message})`);
  }
  const list = (parsed as { cases?: unknown | undefined }).cases;
  if (!Array.isArray(list) || list.some((c) => typeof (c as AnchorCase)?.name !== 'string')) throw new Error(`${cases}: expected {"cases": [{"name": ...}, ...]}`);
  return list as AnchorCase[];
}

/**
 * Makes sure `<cacheDir>/node_modules/onnxruntime-node` exists, installing it with npm when it does not.
 * Returns cacheDir (the folder run.mjs takes as its first argument).
 */
export async function ensureOrt(cacheDir: string, opts: { stderr?: ((s: string) => void) | undefined; npm?: string | undefined } = {}): Promise<string> {
  const dir = resolve(cacheDir);
  if (existsSync(join(dir, 'node_modules', 'onnxruntime-node', 'package.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const npm = opts.npm ?? (process.platform === 'win32' ? 'npm.cmd' : 'npm');
  const args = ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', '--prefix', dir, ORT_PACKAGE];
  const cmd = `${npm} ${args.join(' ')}`;
  opts.stderr?.(`installing ${ORT_PACKAGE} into ${dir} (benchmark-only, not a dependency): ${cmd}\n`);
  const r = await runChild(npm, args, dir);
  if (r.code !== 0 || !existsSync(join(dir, 'node_modules', 'onnxruntime-node', 'package.json'))) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n');
    throw new Error(`could not install ${ORT_PACKAGE}: \`${cmd}\` ${r.code === 0 ? 'did not create node_modules/onnxruntime-node' : `exited with ${r.spawnError ?? `code ${r.code}`}`}${tail ? `\n${tail}` : ''}`);
  }
  return dir;
}

/** Runs `node <anchorsDir>/run.mjs <ortDir> <ep> <reps> <filter>` and parses its JSON. */
export async function runOrtPeer(opts: { anchorsDir: string; ortDir: string; ep: PeerEp; reps: number; filter?: string | undefined; stderr?: ((s: string) => void) | undefined}): Promise<PeerResult> {
  const runner = join(opts.anchorsDir, 'run.mjs');
  if (!existsSync(runner)) throw new Error(`ORT anchors not found: ${runner} is missing (pass --anchors <dir>)`);
  const args = [runner, opts.ortDir, opts.ep, String(opts.reps), opts.filter ?? ''];
  const r = await runChild(process.execPath, args, opts.anchorsDir, opts.stderr);
  if (r.code !== 0) {
    const tail = r.stderr.trim().split('\n').slice(-5).join('\n');
    throw new Error(`ORT peer failed: \`node ${args.join(' ')}\` exited with ${r.spawnError ?? `code ${r.code}`}${tail ? `\n${tail}` : ''}`);
  }
  return parsePeerOutput(r.stdout);
}

/** Parses run.mjs's stdout (one JSON document, possibly preceded by log lines from ORT). */
export function parsePeerOutput(stdout: string): PeerResult {
  const start = stdout.search(/^\{/m);
  if (start < 0) throw new Error(`ORT peer printed no JSON: ${stdout.trim().slice(0, 200) || '(nothing)'}`);
  let doc: unknown;
  try {
    doc = JSON.parse(stdout.slice(start));
  } catch (e) {
    throw new Error(`ORT peer printed invalid JSON: ${(e as Error).message}`);
  }
  const d = doc as Partial<PeerResult>;
  if (!Array.isArray(d.rows)) throw new Error('ORT peer JSON has no "rows" array');
  const rows: PeerRow[] = [];
  for (const r of d.rows as Partial<PeerRow>[]) {
    if (typeof r?.case !== 'string' || typeof r.median_ms !== 'number' || !Number.isFinite(r.median_ms)) throw new Error(`ORT peer row is malformed: ${JSON.stringify(r)}`);
    rows.push({ case: r.case, ep: String(r.ep ?? d.ep ?? ''), median_ms: r.median_ms, min_ms: typeof r.min_ms === 'number' ? r.min_ms : r.median_ms, gflops: typeof r.gflops === 'number' ? r.gflops : null });
  }
  return { engine: String(d.engine ?? 'onnxruntime-node'), ep: String(d.ep ?? rows[0]?.ep ?? ''), rows };
}

/**
 * Adds peer_ms, peer_ep and speedup (= peer_ms / median_ms) to the f32 rows whose case the peer ran
 * (the ORT graphs are float32). Returns new row objects; other rows are returned unchanged.
 */
export function mergePeer<R extends { case: string; dtype: string; median_ms: number; error?: string | undefined }>(rows: R[], peerRows: PeerRow[]): (R & PeerFields)[] {
  const byCase = new Map(peerRows.map((p) => [p.case, p]));
  return rows.map((r) => {
    const p = byCase.get(r.case);
    if (!p || r.dtype !== 'f32') return r;
    const speedup = !r.error && Number.isFinite(r.median_ms) && r.median_ms > 0 ? +(p.median_ms / r.median_ms).toPrecision(3) : undefined;
    return { ...r, peer_ms: p.median_ms, peer_ep: p.ep, ...(speedup !== undefined ? { speedup } : {}) };
  });
}

/** A regex matching exactly the given case names (for `--peer`: run only the anchor cases). */
export function caseNameFilter(names: string[]): RegExp {
  return new RegExp(`^(?:${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
}

interface ChildResult {
  code: number;
  stdout: string;
  stderr: string;
  spawnError?: string | undefined;
}

function runChild(cmd: string, args: string[], cwd: string, onStderr?: (s: string) => void): Promise<ChildResult> {
  return new Promise((res) => {
    const out: Buffer[] = [], err: Buffer[] = [];
    let child;
    try {
      child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      res({ code: -1, stdout: '', stderr: '', spawnError: (e as Error).message });
      return;
    }
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err.push(b);
      onStderr?.(b.toString());
    });
    child.on('error', (e) => res({ code: -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), spawnError: e.message }));
    child.on('close', (code, signal) =>
      res({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ...(signal ? { spawnError: `signal ${signal}` } : {}) }),
    );
  });
}
