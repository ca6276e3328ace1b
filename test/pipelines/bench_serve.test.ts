// `fewstep bench serve` (throughput and latency over HTTP) runs on the tiny model, and `bench write-model`
// refuses what it cannot do (the full-size folder itself is gigabytes: not written in the suite).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { closeDevice } from '../helpers/gpu';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-bench-serve-'));
const model = buildTinyModel(join(work, 'model'));
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

async function cli(args: string[]) {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('fewstep bench serve / write-model', () => {
  it('bench serve: one JSON row per client count, every request answered', async () => {
    const r = await cli(['bench', 'serve', '--model', model, '--clients', '1,3', '--requests', '3', '--size', '64x64', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { rows: { clients: number; ok: number; failed: number; requests_per_s: number; p50_ms: number; p95_ms: number }[] };
    expect(res.rows.map((x) => [x.clients, x.ok, x.failed])).toEqual([[1, 3, 0], [3, 3, 0]]);
    for (const x of res.rows) {
      expect(x.requests_per_s).toBeGreaterThan(0);
      expect(x.p95_ms).toBeGreaterThanOrEqual(x.p50_ms);
    }
  });
  it('bad flags are one line, exit 2', async () => {
    expect((await cli(['bench', 'serve'])).stderr).toBe('fewstep bench: bench serve needs --model <dir|id> (e.g. a folder from `fewstep bench write-model`)\n');
    expect((await cli(['bench', 'serve', '--model', model, '--clients', '0'])).code).toBe(2);
    expect((await cli(['bench', 'write-model', join(work, 'x')])).stderr).toBe('fewstep bench: bench write-model needs --tokenizer <dir> (vocab.json and merges.txt of a CLIP tokenizer)\n');
    const noTok = await cli(['bench', 'write-model', join(work, 'x'), '--tokenizer', work]);
    expect([noTok.code, noTok.stderr]).toEqual([2, `fewstep bench: --tokenizer ${work}: no vocab.json (a CLIP tokenizer folder, e.g. a model's tokenizer/)\n`]);
  });
});
