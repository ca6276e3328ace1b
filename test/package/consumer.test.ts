// The packages as users install them: every published workspace is built and `npm pack`ed, installed from
// the tarballs into a fresh project (`npm ci --offline`, strict NodeNext TypeScript), the README's library
// example ("## Using the packages") and each package README's ```ts blocks type-check with the repo's
// TypeScript, the example runs with plain node on a tiny model folder and writes the same pixels as the
// installed `fewstep` CLI for the same prompt and seed, and @fewstep/tensor + @fewstep/models bundle for the
// browser (esbuild) with no Node built-in in the bundle. Everything happens in one temporary folder.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '@fewstep/models';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';
import {
  CONSUMER_TSCONFIG,
  blockUnder,
  cleanEnv,
  cliArgsFor,
  describeRun,
  exportedFiles,
  fencedBlocks,
  pack,
  publishedWorkspaces,
  repo,
  run,
  writeConsumerProject,
  type Packed,
  type Proc,
  type Workspace,
} from './project';

const work = mkdtempSync(join(tmpdir(), 'fewstep-package-'));
const tarballs = join(work, 'tarballs');
const app = join(work, 'app');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const npmEnv = cleanEnv();
// Child processes never reach a hub: local folders only, an empty HF cache, offline.
const runEnv = cleanEnv({ HF_HOME: join(work, 'hf-home'), HF_HUB_CACHE: join(work, 'hf-cache'), HF_HUB_OFFLINE: '1' });

const workspaces: Workspace[] = publishedWorkspaces();
let packed: Packed[] = [];
const timings: Record<string, number> = {};
const report: string[] = [];
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/** The README's library example, with a clear failure if the block is gone. */
const readmeExample = () => blockUnder(readFileSync(join(repo, 'README.md'), 'utf8'), '## Using the packages', 'ts', 'README.md');

beforeAll(async () => {
  // The tarballs hold dist/: build it from the current sources first (incremental; quick when up to date).
  const b = await run(process.execPath, [tsc, '-b', 'tsconfig.build.json'], { cwd: repo, timeoutMs: 600_000 });
  expect(b.code, describeRun('tsc -b tsconfig.build.json', b)).toBe(0);
  timings['build_ms'] = b.ms;

  mkdirSync(tarballs);
  mkdirSync(join(app, 'src'), { recursive: true });
  const t = performance.now();
  packed = await pack(workspaces, tarballs, npmEnv);
  timings['pack_ms'] = performance.now() - t;

  writeConsumerProject(app, tarballs, packed, workspaces);
  const i = await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: app, env: npmEnv, timeoutMs: 300_000 });
  expect(i.code, `${describeRun('npm ci --offline (consumer)', i)}\n(an ENOTCACHED error means the npm cache lacks a locked package: run \`npm ci\` in the repo first)`).toBe(0);
  timings['install_ms'] = i.ms;
}, 900_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  const ms = Object.entries(timings).map(([k, v]) => `${k.replace(/_ms$/, '')} ${(v / 1000).toFixed(1)} s`);
  console.log([...report, `times: ${ms.join(', ')}`].join('\n'));
});

describe('published packages', () => {
  it('every published workspace packs with README.md, LICENSE and the files its exports and bin name', () => {
    expect(packed.map((p) => p.name).sort()).toEqual(workspaces.map((w) => w.pkg.name).sort());
    const license = readFileSync(join(repo, 'LICENSE'));
    const rows: string[] = [];
    for (const w of workspaces) {
      const p = packed.find((x) => x.name === w.pkg.name)!;
      const paths = new Set(p.files.map((f) => f.path));
      const missing = ['package.json', 'README.md', 'LICENSE', ...exportedFiles(w.pkg)].filter((f) => !paths.has(f));
      expect(missing, `${p.name}: files missing from the tarball`).toEqual([]);
      expect([...paths].filter((f) => /tsbuildinfo|\.test\.[cm]?[jt]s$|(^|\/)(test|fixtures)\//.test(f)), `${p.name}: files that should not ship`).toEqual([]);
      // The LICENSE copied in by prepack is the repo's, and postpack took it away again.
      expect(readFileSync(join(app, 'node_modules', p.name, 'LICENSE')).equals(license), `${p.name}: LICENSE differs from the repo's`).toBe(true);
      expect(existsSync(join(repo, w.dir, 'LICENSE')), `${w.dir}/LICENSE left behind by npm pack`).toBe(false);
      rows.push(`  ${p.name.padEnd(24)} ${kib(p.size).padStart(10)} packed ${kib(p.unpackedSize).padStart(11)} unpacked ${String(p.entryCount).padStart(4)} files`);
    }
    report.push('tarballs:', ...rows);
  });

  // Type-checks src/ of the consumer (the README example and the package READMEs' ```ts blocks) and emits
  // dist/ for the run below; shared by the two tests.
  let compiled: Promise<Proc> | undefined;
  const compile = () =>
    (compiled ??= (async () => {
      writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(CONSUMER_TSCONFIG, null, 2) + '\n');
      writeFileSync(join(app, 'src', 'example.ts'), readmeExample());
      for (const w of workspaces) {
        const readme = readFileSync(join(repo, w.dir, 'README.md'), 'utf8');
        fencedBlocks(readme, 'ts').forEach((code, k) => writeFileSync(join(app, 'src', `readme_${w.dir.replace(/\W+/g, '_')}_${k}.ts`), code));
      }
      const r = await run(process.execPath, [tsc, '-p', app], { cwd: app, timeoutMs: 300_000 });
      timings['typecheck_ms'] = r.ms;
      return r;
    })());

  it('the README example and the package READMEs type-check in a strict NodeNext project (skipLibCheck off)', async () => {
    const r = await compile();
    expect(r.stdout + r.stderr, 'tsc errors in the consumer project (src/example.ts is README.md\'s "Using the packages" block)').toBe('');
    expect(r.code).toBe(0);
  });

  it('the README example runs with node and writes the pixels the installed CLI writes', async () => {
    const example = readmeExample();
    expect(example, 'the README example must take the model and output path from process.argv (the test passes a tiny local model)').toContain('process.argv');
    const c = await compile();
    expect(c.code, `the example did not compile:\n${c.stdout}${c.stderr}`).toBe(0);

    const model = buildTinyModel(join(work, 'model'));
    const exampleOut = join(work, 'example.png');
    const cliOut = join(work, 'cli.png');
    const cliArgs = cliArgsFor(example, model, cliOut);
    const [ex, cli] = await Promise.all([
      run(process.execPath, [join(app, 'dist', 'example.js'), model, exampleOut], { cwd: app, env: runEnv }),
      run(join(app, 'node_modules', '.bin', 'fewstep'), cliArgs, { cwd: app, env: runEnv }),
    ]);
    timings['example_ms'] = ex.ms;
    timings['cli_ms'] = cli.ms;
    expect(ex.code, describeRun('node dist/example.js', ex)).toBe(0);
    expect(cli.code, describeRun(`fewstep ${cliArgs.join(' ')}`, cli)).toBe(0);

    const a = await decodePng(new Uint8Array(readFileSync(exampleOut)), exampleOut);
    const b = await decodePng(new Uint8Array(readFileSync(cliOut)), cliOut);
    expect([a.width, a.height], 'example vs CLI image size').toEqual([b.width, b.height]);
    expect(new Set(a.data).size, 'the example wrote a flat image').toBeGreaterThan(10);
    const differing = a.data.reduce((n, v, k) => n + (v === b.data[k] ? 0 : 1), 0);
    expect(differing, `bytes differing between the example's and the CLI's image (fewstep ${cliArgs.slice(1).join(' ')})`).toBe(0);
  });

  it('@fewstep/tensor and @fewstep/models bundle for the browser with no Node built-in', async () => {
    // Namespace imports keep every export, so the bundle is everything a browser app could pull in.
    const entry = join(app, 'browser.js');
    writeFileSync(entry, "import * as tensor from '@fewstep/tensor';\nimport * as models from '@fewstep/models';\nexport { tensor, models };\n");
    const bundle = (minify: boolean) =>
      build({ entryPoints: [entry], absWorkingDir: app, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent', minify });
    const t = performance.now();
    const plain = await bundle(false);
    const min = await bundle(true);
    timings['bundle_ms'] = performance.now() - t;

    const inputs = Object.keys(plain.metafile.inputs);
    expect(inputs.filter((p) => /node_modules\/webgpu\/|@fewstep\/tensor\/dist\/node\.js$|weights-tools|@fewstep\/cli/.test(p)), 'Node-only modules in the browser bundle').toEqual([]);
    const nodeBuiltin = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    for (const out of [plain, min]) {
      const js = out.outputFiles[0]!.text;
      const specifiers = [...js.matchAll(/\b(?:from|import)\s*\(?\s*["']([^"']+)["']|\brequire\s*\(\s*["']([^"']+)["']/g)].map((m) => (m[1] ?? m[2])!);
      expect(specifiers.filter((s) => s.startsWith('node:') || nodeBuiltin.has(s)), 'Node built-in imports in the bundle').toEqual([]);
      expect(js.match(/["'`]node:[\w/]+["'`]/g) ?? [], '"node:" specifiers in the bundle').toEqual([]);
    }
    const size = (o: typeof plain) => o.outputFiles[0]!.contents;
    report.push(
      `browser bundle (@fewstep/tensor + @fewstep/models, every export): ${kib(size(plain).length)} (gzip ${kib(gzipSync(size(plain)).length)}), ` +
        `minified ${kib(size(min).length)} (gzip ${kib(gzipSync(size(min)).length)}), ${inputs.length} modules`,
    );
  });
});

