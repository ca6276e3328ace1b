// Builds the page into dist/: index.html + assets/app-<hash>.js + assets/app-<hash>.css (esbuild, one ESM
// bundle, minified, with a source map). `node build.mjs [--outdir D] [--source] [--no-minify]`; `--source`
// bundles @fewstep/* from their TypeScript sources (the `fewstep-source` condition) instead of their dist/,
// which the browser tests use so they need no prior build. Also importable: `buildPage({ outdir, source })`.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * @param {{ outdir?: string, source?: boolean, minify?: boolean, quiet?: boolean }} [opts]
 * @returns {Promise<{ outdir: string, files: string[], bytes: Record<string, number> }>}
 */
export async function buildPage(opts = {}) {
  const outdir = resolve(opts.outdir ?? join(here, 'dist'));
  const pkg = JSON.parse(await readFile(join(here, 'package.json'), 'utf8'));
  await rm(outdir, { recursive: true, force: true });
  await mkdir(join(outdir, 'assets'), { recursive: true });
  const result = await esbuild.build({
    entryPoints: { app: join(here, 'src', 'main.ts'), style: join(here, 'static', 'style.css') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome113'],
    outdir: join(outdir, 'assets'),
    entryNames: '[name]-[hash]',
    minify: opts.minify ?? true,
    sourcemap: 'linked',
    metafile: true,
    logLevel: opts.quiet ? 'silent' : 'warning',
    conditions: opts.source ? ['fewstep-source'] : [],
    define: { __FEWSTEP_VERSION__: JSON.stringify(pkg.version) },
    legalComments: 'none',
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => resolve(p));
  const pick = (name, ext) => {
    const f = outputs.find((p) => p.includes(`${join('assets', name)}-`) && p.endsWith(ext));
    if (!f) throw new Error(`build: no ${name}*${ext} output`);
    return f.slice(outdir.length + 1).split('\\').join('/');
  };
  const html = (await readFile(join(here, 'static', 'index.html'), 'utf8'))
    .replace('%APP_JS%', pick('app', '.js'))
    .replace('%APP_CSS%', pick('style', '.css'))
    .replace('%VERSION%', pkg.version);
  await writeFile(join(outdir, 'index.html'), html);
  const bytes = {};
  for (const [p, o] of Object.entries(result.metafile.outputs)) bytes[resolve(p).slice(outdir.length + 1)] = o.bytes;
  return { outdir, files: ['index.html', ...Object.keys(bytes)], bytes };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  const { outdir, bytes } = await buildPage({
    outdir: at >= 0 ? args[at + 1] : undefined,
    source: args.includes('--source'),
    minify: !args.includes('--no-minify'),
  });
  const js = Object.entries(bytes).filter(([f]) => f.endsWith('.js'));
  console.log(`web page → ${outdir} (${js.map(([f, n]) => `${f} ${(n / 1024).toFixed(0)} KiB`).join(', ')})`);
}
