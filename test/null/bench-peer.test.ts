// `fewstep bench kernels --peer ort`: parsing the ORT runner's output, merging, the SVG plot, flag checks.
// No GPU, no network, no onnxruntime-node: canned JSON and a fake anchors folder only.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  caseNameFilter, defaultAnchorsDir, defaultOrtCache, ensureOrt, loadAnchorCases, mergePeer, parsePeerOutput, runOrtPeer,
} from '../../packages/cli/src/bench/peer_ort';
import { plottableRows, speedupSvg } from '../../packages/cli/src/bench/plot';
import type { KernelRow } from '../../packages/cli/src/bench/kernels';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';

const work = mkdtempSync(join(tmpdir(), 'fewstep-bench-peer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const canned = {
  engine: 'onnxruntime-node 1.30.0',
  ep: 'webgpu',
  rows: [
    { case: 'matmul_1024x640x640', ep: 'webgpu', median_ms: 137.2, min_ms: 130.1, gflops: 6.11 },
    { case: 'attn_cross_8x4096x77x40', ep: 'webgpu', median_ms: 314, min_ms: 300, gflops: 1.29 },
    { case: 'groupnorm32_silu_320x64x64', ep: 'webgpu', median_ms: 31.6, min_ms: 30, gflops: null },
  ],
};

function row(name: string, dtype: 'f32' | 'f16', ms: number, extra: Partial<KernelRow> = {}): KernelRow {
  return { case: name, family: 'x', dtype, adapter: 'llvmpipe', median_ms: ms, min_ms: ms, gflops: null, gbps: null, bw_copy_gbps: null, bw_kernel_gbps: null, bw_gbps: null, bw_pct: null, kernel_pct: null, max_err: 0, timing: 'gpu-timestamp', ...extra };
}

describe('parsePeerOutput', () => {
  it('reads run.mjs JSON, also after log lines', () => {
    const r = parsePeerOutput('2025-01-01 [W:onnxruntime] some warning\n' + JSON.stringify(canned, null, 1) + '\n');
    expect(r.engine).toBe('onnxruntime-node 1.30.0');
    expect(r.ep).toBe('webgpu');
    expect(r.rows).toHaveLength(3);
    expect(r.rows[2]).toEqual({ case: 'groupnorm32_silu_320x64x64', ep: 'webgpu', median_ms: 31.6, min_ms: 30, gflops: null });
  });
  it('rejects output without JSON or with malformed rows', () => {
    expect(() => parsePeerOutput('Error: cannot find module')).toThrow(/no JSON/);
    expect(() => parsePeerOutput('{"rows": [{"case": "a"}]}')).toThrow(/malformed/);
    expect(() => parsePeerOutput('{"ep": "cpu"}')).toThrow(/rows/);
  });
});

describe('mergePeer', () => {
  it('adds peer_ms, peer_ep and speedup to matching f32 rows only', () => {
    const rows = [
      row('matmul_1024x640x640', 'f32', 45.7),
      row('matmul_1024x640x640', 'f16', 40),
      row('attn_cross_8x4096x77x40', 'f32', 100),
      row('conv3x3_320_64x64', 'f32', 500),
      row('groupnorm32_silu_320x64x64', 'f32', NaN, { error: 'boom' }),
    ];
    const m = mergePeer(rows, parsePeerOutput(JSON.stringify(canned)).rows);
    expect(m[0]).toMatchObject({ peer_ms: 137.2, peer_ep: 'webgpu', speedup: 3 });
    expect(m[1]).not.toHaveProperty('peer_ms');
    expect(m[2]!.speedup).toBe(3.14);
    expect(m[3]).not.toHaveProperty('peer_ms');
    expect(m[4]).toMatchObject({ peer_ms: 31.6 });
    expect(m[4]).not.toHaveProperty('speedup');
    expect(rows[0]).not.toHaveProperty('peer_ms'); // inputs untouched
  });
});

describe('anchors and cache', () => {
  it('defaults: anchors next to the repo, cache under XDG_CACHE_HOME or ~/.cache', () => {
    expect(defaultAnchorsDir()).toMatch(/[/\\]shared[/\\]anchors[/\\]ort-ops$/);
    expect(defaultOrtCache({ XDG_CACHE_HOME: '/x/cache' })).toBe(join('/x/cache', 'fewstep', 'ort'));
    expect(defaultOrtCache({})).toBe(join(homedir(), '.cache', 'fewstep', 'ort'));
  });
  it('a missing anchors folder is one clear error', () => {
    expect(() => loadAnchorCases(join(work, 'nope'))).toThrow(/ORT anchors not found: .*cases\.json is missing \(pass --anchors/);
  });
  it('reads cases.json; caseNameFilter matches exactly those names', () => {
    const dir = join(work, 'anchors');
    mkdirSync(dir);
    writeFileSync(join(dir, 'cases.json'), JSON.stringify({ cases: [{ name: 'matmul_1024x640x640', file: 'a.onnx', inputs: {}, gflop: 1 }] }));
    writeFileSync(join(dir, 'run.mjs'), `console.log('log line'); console.log(JSON.stringify(${JSON.stringify(canned)}));`);
    expect(loadAnchorCases(dir).map((c) => c.name)).toEqual(['matmul_1024x640x640']);
    const f = caseNameFilter(['matmul_1024x640x640', 'conv3x3_320_64x64']);
    expect(f.test('matmul_1024x640x640')).toBe(true);
    expect(f.test('matmul_1024x640x6400')).toBe(false);
    expect(f.test('conv3x3_320_64x64')).toBe(true);
  });
  it('runOrtPeer spawns node run.mjs and parses its stdout (fake runner)', async () => {
    const r = await runOrtPeer({ anchorsDir: join(work, 'anchors'), ortDir: work, ep: 'webgpu', reps: 1 });
    expect(r.rows.map((x) => x.case)).toContain('attn_cross_8x4096x77x40');
  });
  it('runOrtPeer names the command when the runner fails', async () => {
    const dir = join(work, 'bad-anchors');
    mkdirSync(dir);
    writeFileSync(join(dir, 'run.mjs'), `console.error('Cannot find module onnxruntime-node'); process.exit(3);`);
    await expect(runOrtPeer({ anchorsDir: dir, ortDir: work, ep: 'cpu', reps: 1 })).rejects.toThrow(/ORT peer failed: `node .*run\.mjs .* cpu 1 ` exited with code 3\nCannot find module/);
  });
  it('ensureOrt skips npm when onnxruntime-node is present, and names the command when npm fails', async () => {
    const present = join(work, 'ort-present');
    mkdirSync(join(present, 'node_modules', 'onnxruntime-node'), { recursive: true });
    writeFileSync(join(present, 'node_modules', 'onnxruntime-node', 'package.json'), '{}');
    const err: string[] = [];
    expect(await ensureOrt(present, { npm: '/nonexistent/npm', stderr: (s) => void err.push(s) })).toBe(present);
    expect(err).toEqual([]);
    await expect(ensureOrt(join(work, 'ort-missing'), { npm: '/nonexistent/npm', stderr: (s) => void err.push(s) })).rejects.toThrow(
      /could not install onnxruntime-node@1\.30\.0: `\/nonexistent\/npm install --no-save --ignore-scripts .*--prefix .*ort-missing onnxruntime-node@1\.30\.0`/,
    );
    expect(err.join('')).toMatch(/installing onnxruntime-node@1\.30\.0 into .*ort-missing/);
  });
});

describe('speedupSvg', () => {
  const merged = mergePeer(
    [row('matmul_1024x640x640', 'f32', 45.7), row('attn_cross_8x4096x77x40', 'f32', 628.5), row('groupnorm32_silu_320x64x64', 'f16', 5), row('embedding_77_of_49408x1024', 'f32', 0.3)],
    canned.rows,
  );
  it('plots only f32 rows with both times', () => {
    expect(plottableRows(merged).map((r) => r.case)).toEqual(['matmul_1024x640x640', 'attn_cross_8x4096x77x40']);
  });
  it('is a self-contained SVG with a group per case, two bars each, a legend and the speedups', () => {
    const svg = speedupSvg(merged, { title: 'fewstep vs <ORT>', adapter: 'llvmpipe (LLVM 15.0.7, 256 bits)', date: '2025-01-02' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('fewstep vs &lt;ORT&gt;');
    expect(svg).toContain('llvmpipe (LLVM 15.0.7, 256 bits) · 2025-01-02');
    expect(svg.match(/<g>/g)).toHaveLength(2);
    expect(svg.match(/<rect x="230" y="[\d.]+" width="[\d.]+" height="14"/g)).toHaveLength(4);
    expect(svg).toContain('fewstep (f32)');
    expect(svg).toContain('ONNX Runtime webgpu EP');
    expect(svg).toContain('3.0× faster');
    expect(svg).toContain('0.50× slower');
    expect(svg).toContain('>10 ms<'); // log-scale decade labels
    expect(svg).toContain('>1000 ms<');
    // Log scale: 137.2 ms is 3.0× 45.7 ms; its bar is longer by log10(3) decades, not 3×.
    const widths = [...svg.matchAll(/<rect x="230" y="[\d.]+" width="([\d.]+)" height="14"/g)].map((m) => +m[1]!);
    expect(widths[1]! / widths[0]!).toBeLessThan(2);
    expect(widths[1]!).toBeGreaterThan(widths[0]!);
  });
  it('says so when nothing is plottable', () => {
    expect(speedupSvg([], { title: 't', adapter: 'a', date: 'd' })).toContain('no cases with both fewstep and peer times');
  });
});

describe('fewstep bench kernels --peer flags', () => {
  async function runCli(args: string[]) {
    const out: string[] = [], err: string[] = [];
    const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
    const code = await main(['bench', ...args], io);
    return { code, stdout: out.join(''), stderr: err.join('') };
  }
  it('rejects an unknown peer and --plot without --peer', async () => {
    expect((await runCli(['kernels', '--peer', 'tvm'])).stderr).toMatch(/--peer must be one of ort/);
    expect((await runCli(['kernels', '--plot', 'x.svg'])).stderr).toMatch(/--plot needs --peer ort/);
    expect((await runCli(['kernels', '--peer-ep', 'cuda'])).stderr).toMatch(/--peer-ep must be one of webgpu, cpu/);
  });
  it('a missing anchors folder fails before any GPU work', async () => {
    const r = await runCli(['kernels', '--peer', 'ort', '--anchors', join(work, 'missing')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ORT anchors not found/);
  });
  it('a filter matching no anchor case is a usage error', async () => {
    const r = await runCli(['kernels', '--peer', 'ort', '--anchors', join(work, 'anchors'), '--filter', 'embedding']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no anchor case \(matmul_1024x640x640\) matches --filter embedding/);
  });
});
