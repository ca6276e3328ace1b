// tensor, kernels and models must run in a browser: no Node built-ins outside the Node entry point,
// and lower layers never import higher ones.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../packages/', import.meta.url).pathname;
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}
const imports = (p: string) => [...readFileSync(p, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!);

describe('package layering', () => {
  for (const pkg of ['tensor', 'kernels', 'models']) {
    it(`${pkg} imports no Node built-ins (browser-safe)`, () => {
      const bad = files(join(root, pkg, 'src'))
        .filter((p) => !p.endsWith('tensor/src/node.ts'))
        .flatMap((p) => imports(p).filter((i) => i.startsWith('node:') || ['fs', 'path', 'os', 'crypto', 'zlib', 'webgpu', 'http', 'https'].includes(i) || i === '@fewstep/tensor/node').map((i) => `${p}: ${i}`));
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
