// tensor, kernels and models must run in a browser: no Node built-ins outside the Node entry point,
// and lower layers never import higher ones.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../packages/', import.meta.url).pathname;
function files(dir: string, ext = /\.ts$/): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p, ext) : ext.test(p) ? [p] : [];
  });
}
const imports = (p: string) => [...readFileSync(p, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!);
const nodeOnly = (i: string) => i.startsWith('node:') || ['fs', 'path', 'os', 'crypto', 'zlib', 'webgpu', 'http', 'https'].includes(i) || i === '@fewstep/tensor/node';

describe('package layering', () => {
  for (const pkg of ['tensor', 'kernels', 'models']) {
    it(`${pkg} imports no Node built-ins (browser-safe)`, () => {
      const bad = files(join(root, pkg, 'src'))
        .filter((p) => !p.endsWith('tensor/src/node.ts'))
        .flatMap((p) => imports(p).filter(nodeOnly).map((i) => `${p}: ${i}`));
      expect(bad).toEqual([]);
    });
    // What users install is the compiled dist/ (`npm run build`, which `npm test` runs first): the same
    // rule on the emitted .js and .d.ts files, so a build step can't bring a Node import back.
    it(`${pkg} dist/ imports no Node built-ins`, () => {
      const dist = join(root, pkg, 'dist');
      const built = existsSync(dist) ? files(dist, /\.(js|d\.ts)$/) : [];
      expect(built.filter((p) => p.endsWith('.js')), `${dist}: no .js files; run \`npm run build\` first`).not.toEqual([]);
      const bad = built
        .filter((p) => !/tensor\/dist\/node\.(js|d\.ts)$/.test(p))
        .flatMap((p) => [...imports(p).filter(nodeOnly), ...(/<reference\s+types=["']node["']/.test(readFileSync(p, 'utf8')) ? ['/// <reference types="node" />'] : [])].map((i) => `${p}: ${i}`));
      expect(bad).toEqual([]);
    });
  }
  const order = ['tensor', 'kernels', 'models', 'cli'];
  for (const [i, pkg] of order.entries()) {
    it(`${pkg} does not import higher layers`, () => {
      const higher = order.slice(i + 1).map((h) => `@fewstep/${h}`).concat(i < 3 ? ['@fewstep/weights-tools'] : []);
      const bad = files(join(root, pkg, 'src')).flatMap((p) => imports(p).filter((x) => higher.some((h) => x === h || x.startsWith(h + '/'))).map((x) => `${p}: ${x}`));
      expect(bad).toEqual([]);
    });
  }
});
