// Hub downloads into the huggingface_hub cache layout, against a fake hub on 127.0.0.1.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthRequiredError,
  EntryNotFoundError,
  HubConnectionError,
  IntegrityError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
  compileGlob,
  createProgressPrinter,
  fileFilter,
  hfHubDownload,
  resolveConfig,
  resolveRepo,
  snapshotDownload,
  type ProgressEvent,
  type SnapshotOptions,
} from '@fewstep/weights-tools';
import { main } from '../../packages/cli/src/main';
import { FakeHub, gitSha1, isolateHfEnv, sha256, startFakeHub, type FakeFile, type FakeRepo } from '../helpers/fake_hub';

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const C1 = 'a'.repeat(39) + '1';
const C2 = 'b'.repeat(39) + '2';
const files = {
  index: Buffer.from('{"_class_name": "StableDiffusionPipeline"}\n'),
  unetConfig: Buffer.from('{"sample_size": 64}\n'),
  unet: bytes(300_000, 1),
  vae: bytes(120_000, 2),
  readme: Buffer.from('# tiny\n'),
  te16: bytes(50_000, 3),
  secret: bytes(40_000, 4),
};
const tiny: FakeRepo & { files: FakeFile[] } = {
  id: 'acme/tiny-sd',
  commit: C1,
  branches: { main: C1, v2: C2 },
  files: [
    { path: 'model_index.json', content: files.index },
    { path: 'README.md', content: files.readme },
    { path: 'unet/config.json', content: files.unetConfig },
    { path: 'unet/diffusion_pytorch_model.safetensors', content: files.unet, lfs: true },
    { path: 'vae/diffusion_pytorch_model.safetensors', content: files.vae, lfs: true },
    { path: 'text_encoder/model.fp16.safetensors', content: files.te16, lfs: true },
  ],
};

let hub: FakeHub;
let cacheDir: string;
const tmpRoots: string[] = [];
let restoreEnv: (() => void) | undefined;

beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  const home = mkdtempSync(join(tmpdir(), 'fewstep-hfhome-'));
  tmpRoots.push(home);
  process.env['HF_HOME'] = home; // no real token file leaks in
  hub = await startFakeHub([
    tiny,
    { id: 'acme/private', commit: C2, token: 'hf_secret', files: [{ path: 'config.json', content: Buffer.from('{}') }, { path: 'w.safetensors', content: files.secret, lfs: true }] },
    { id: 'acme/gated', commit: C2, token: 'hf_right', gated: true, files: [{ path: 'config.json', content: Buffer.from('{}') }] },
  ]);
});
afterAll(async () => {
  await hub.close();
  restoreEnv?.();
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});
beforeEach(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'fewstep-hub-'));
  tmpRoots.push(cacheDir);
  hub.reset();
});
afterEach(() => {
  rmSync(cacheDir, { recursive: true, force: true });
});

const dl = (opts: SnapshotOptions = {}, repo = 'acme/tiny-sd') => snapshotDownload(repo, { endpoint: hub.url, cacheDir, retryDelayMs: 5, ...opts });
const repoRoot = () => join(cacheDir, 'models--acme--tiny-sd');
const snap = (commit = C1) => join(repoRoot(), 'snapshots', commit);
const blobs = () => readdirSync(join(repoRoot(), 'blobs')).sort();
const filesUnder = (dir: string, prefix = ''): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name), `${prefix}${d.name}/`) : [`${prefix}${d.name}`])).sort()
    : [];

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('glob matcher', () => {
  const m = (p: string, path: string) => compileGlob(p)(path);
  it('* and ? stay in a folder, ** crosses, names match at any depth, folders select contents', () => {
    expect(m('*.json', 'model_index.json')).toBe(true);
    expect(m('*.json', 'unet/config.json')).toBe(true);
    expect(m('unet/*.json', 'unet/config.json')).toBe(true);
    expect(m('unet/*.json', 'unet/sub/config.json')).toBe(false);
    expect(m('unet/**/*.json', 'unet/sub/deep/config.json')).toBe(true);
    expect(m('unet/**/*.json', 'unet/config.json')).toBe(true);
    expect(m('**/config.json', 'config.json')).toBe(true);
    expect(m('**/config.json', 'a/b/config.json')).toBe(true);
    expect(m('unet/*', 'unet/sub/x.bin')).toBe(true); // like huggingface_hub's "unet/*"
    expect(m('unet', 'unet/config.json')).toBe(true);
    expect(m('unet/', 'unet/config.json')).toBe(true);
    expect(m('unet/', 'unet')).toBe(false);
    expect(m('unet', 'vae/unet.json')).toBe(false);
    expect(m('model.?p16.*', 'text_encoder/model.fp16.safetensors')).toBe(true);
    expect(m('*fp16*', 'text_encoder/model.fp16.safetensors')).toBe(true);
    expect(m('a.b', 'aXb')).toBe(false);
    expect(m('**', 'x/y/z')).toBe(true);
  });
  it('include, exclude and filter combine', () => {
    const f = fileFilter({ allowPatterns: ['*.json', 'unet/*'], ignorePatterns: ['*.fp16.*'], filter: (p) => !p.startsWith('README') });
    expect(['model_index.json', 'README.md', 'unet/config.json', 'unet/w.fp16.safetensors', 'unet/w.safetensors', 'vae/config.json'].filter(f)).toEqual([
      'model_index.json',
      'unet/config.json',
      'unet/w.safetensors',
      'vae/config.json',
    ]);
  });
});

describe('config from env', () => {
  it('HF_HOME, HF_HUB_CACHE, HF_TOKEN / token file, HF_ENDPOINT, HF_HUB_OFFLINE; options win', async () => {
    const home = mkdtempSync(join(tmpdir(), 'fewstep-home-'));
    tmpRoots.push(home);
    writeFileSync(join(home, 'token'), 'hf_from_file\n');
    let c = await resolveConfig({}, { HF_HOME: home });
    expect(c).toMatchObject({ cacheDir: join(home, 'hub'), token: 'hf_from_file', endpoint: 'https://huggingface.co', offline: false });
    c = await resolveConfig({}, { HF_HOME: home, HF_HUB_CACHE: '/x/cache', HF_TOKEN: 'hf_env', HF_ENDPOINT: 'http://mirror/', HF_HUB_OFFLINE: '1' });
    expect(c).toMatchObject({ cacheDir: '/x/cache', token: 'hf_env', endpoint: 'http://mirror', offline: true });
    c = await resolveConfig({ cacheDir: '/y', token: 'hf_opt', endpoint: 'http://e', offline: false }, { HF_HOME: home, HF_HUB_CACHE: '/x', HF_TOKEN: 'hf_env', HF_HUB_OFFLINE: '1' });
    expect(c).toMatchObject({ cacheDir: '/y', token: 'hf_opt', endpoint: 'http://e', offline: false });
    c = await resolveConfig({ token: false }, { HF_HOME: home, HF_TOKEN: 'hf_env' });
    expect(c.token).toBeUndefined();
  });
});

describe('snapshotDownload', () => {
  it('downloads a full snapshot into the exact huggingface_hub layout', async () => {
    const events: ProgressEvent[] = [];
    const dir = await dl({ onProgress: (e) => events.push(e) });
    expect(dir).toBe(snap());
    expect(readFileSync(join(repoRoot(), 'refs', 'main'), 'utf8')).toBe(C1); // no newline, like Python
    // Blobs are named by ETag: git sha1 for regular files, sha256 (X-Linked-Etag) for LFS files.
    expect(blobs()).toEqual(
      [gitSha1(files.index), gitSha1(files.readme), gitSha1(files.unetConfig), sha256(files.unet), sha256(files.vae), sha256(files.te16)].sort(),
    );
    expect(filesUnder(dir)).toEqual(tiny.files.map((f) => f.path).sort());
    for (const f of tiny.files) {
      const p = join(dir, f.path);
      expect(lstatSync(p).isSymbolicLink()).toBe(true);
      const hash = f.lfs ? sha256(f.content) : gitSha1(f.content);
      const depth = f.path.split('/').length; // snapshots/<commit>/a/b → ../../../blobs
      expect(readlinkSync(p)).toBe(`${'../'.repeat(depth + 1)}blobs/${hash}`);
      expect(readFileSync(p).equals(f.content)).toBe(true);
    }
    expect(readlinkSync(join(dir, 'unet/config.json'))).toBe(`../../../blobs/${gitSha1(files.unetConfig)}`);
    expect(readlinkSync(join(dir, 'model_index.json'))).toBe(`../../blobs/${gitSha1(files.index)}`);
    // Protocol: one API call, one HEAD per file, LFS bytes from the CDN; nothing left over.
    expect(hub.count('hub', 'GET')).toBe(1 + 3);
    expect(hub.count('hub', 'HEAD')).toBe(6);
    expect(hub.count('cdn', 'GET')).toBe(3);
    expect(hub.requests[0]!.path).toBe('/api/models/acme/tiny-sd/revision/main');
    expect(hub.requests.filter((r) => r.method === 'HEAD').every((r) => r.path.startsWith(`/acme/tiny-sd/resolve/${C1}/`))).toBe(true);
    expect(blobs().some((b) => b.endsWith('.incomplete'))).toBe(false);
    // Progress: every file ends 'done' with its size; byte counts only grow.
    const done = events.filter((e) => e.status === 'done');
    expect(done.map((e) => e.file).sort()).toEqual(tiny.files.map((f) => f.path).sort());
    expect(done.find((e) => e.file === 'unet/diffusion_pytorch_model.safetensors')).toMatchObject({ loaded: 300_000, total: 300_000, count: 6 });
    const unetLoads = events.filter((e) => e.file.startsWith('unet/diff')).map((e) => e.loaded);
    expect(unetLoads).toEqual([...unetLoads].sort((a, b) => a - b));
  });

  it('a second call uses the cache with zero requests', async () => {
    await dl();
    hub.reset();
    const events: ProgressEvent[] = [];
    expect(await dl({ onProgress: (e) => events.push(e) })).toBe(snap());
    expect(hub.requests).toEqual([]);
    expect(events.every((e) => e.status === 'cached')).toBe(true);
    expect(events).toHaveLength(6);
    // A subset with filters: also no requests.
    expect(await dl({ allowPatterns: ['unet/*'] })).toBe(snap());
    expect(hub.requests).toEqual([]);
    // refresh asks the hub again but downloads nothing.
    await dl({ refresh: true });
    expect(hub.count('hub', 'GET')).toBe(1);
    expect(hub.count('cdn')).toBe(0);
  });

  it('include / exclude patterns and a filter choose the files; later calls add the rest', async () => {
    const dir = await dl({ allowPatterns: ['*.json', 'unet/*'], ignorePatterns: ['*.fp16.*'], filter: (p) => p !== 'README.md' });
    expect(filesUnder(dir)).toEqual(['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors']);
    hub.reset();
    await dl();
    expect(filesUnder(dir)).toHaveLength(6);
    expect(hub.count('hub', 'HEAD')).toBe(3); // only the missing ones
  });

  it('reuses files put in the cache by Python (no manifest): one API call, no file requests', async () => {
    // Build the cache by hand the way huggingface_hub leaves it.
    const root = repoRoot();
    mkdirSync(join(root, 'blobs'), { recursive: true });
    mkdirSync(join(root, 'refs'), { recursive: true });
    writeFileSync(join(root, 'refs', 'main'), C1);
    for (const f of tiny.files) {
      const h = f.lfs ? sha256(f.content) : gitSha1(f.content);
      writeFileSync(join(root, 'blobs', h), f.content);
      const p = join(snap(), f.path);
      mkdirSync(join(p, '..'), { recursive: true });
      symlinkSync(`${'../'.repeat(f.path.split('/').length + 1)}blobs/${h}`, p);
    }
    expect(await dl()).toBe(snap());
    expect(hub.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/models/acme/tiny-sd/revision/main']);
    hub.reset();
    expect(await dl()).toBe(snap()); // now with our manifest: zero requests
    expect(hub.requests).toEqual([]);
  });

  it('offline (HF_HUB_OFFLINE=1) works from the cache and names missing files', async () => {
    await dl({ allowPatterns: ['*.json', 'unet/*'] });
    hub.reset();
    process.env['HF_HUB_OFFLINE'] = '1';
    try {
      expect(await dl({ allowPatterns: ['unet/*'] })).toBe(snap());
      expect(await hfHubDownload('acme/tiny-sd', 'unet/config.json', { endpoint: hub.url, cacheDir })).toBe(join(snap(), 'unet/config.json'));
      let e = await rejection(dl({ allowPatterns: ['*.safetensors'] }));
      expect(e).toBeInstanceOf(OfflineMissingError);
      expect(e.message).toBe(
        'Offline mode (HF_HUB_OFFLINE=1): 2 files of acme/tiny-sd@main not in the cache: text_encoder/model.fp16.safetensors, vae/diffusion_pytorch_model.safetensors (run once online to download)',
      );
      e = await rejection(hfHubDownload('acme/tiny-sd', 'vae/diffusion_pytorch_model.safetensors', { endpoint: hub.url, cacheDir }));
      expect(e).toBeInstanceOf(OfflineMissingError);
      expect(e.message).toContain('vae/diffusion_pytorch_model.safetensors');
      e = await rejection(dl({ revision: 'v2' }));
      expect(e.message).toMatch(/^Offline mode \(HF_HUB_OFFLINE=1\): acme\/tiny-sd@v2 is not in the cache/);
      // Without our manifest (a Python cache) literal patterns and `required` still name what is missing.
      rmSync(join(repoRoot(), '.fewstep'), { recursive: true });
      e = await rejection(dl({ allowPatterns: ['model_index.json', 'vae'], required: ['text_encoder/model.fp16.safetensors'] }));
      expect(e.message).toContain('files of acme/tiny-sd@main not in the cache: vae, text_encoder/model.fp16.safetensors');
      expect(hub.requests).toEqual([]);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }
  });

  it('a revision other than main writes refs/<rev> and its own snapshot', async () => {
    // The fake serves the same files for both commits; what matters is the layout.
    const dir = await dl({ revision: 'v2', allowPatterns: ['model_index.json'] });
    expect(dir).toBe(snap(C2));
    expect(readFileSync(join(repoRoot(), 'refs', 'v2'), 'utf8')).toBe(C2);
    expect(existsSync(join(repoRoot(), 'refs', 'main'))).toBe(false);
    // A commit hash needs no ref.
    await dl({ revision: C1, allowPatterns: ['model_index.json'] });
    expect(readdirSync(join(repoRoot(), 'refs'))).toEqual(['v2']);
  });
});

describe('hfHubDownload', () => {
  it('downloads one nested file, then answers from the cache with no request', async () => {
    const p = await hfHubDownload('acme/tiny-sd', 'unet/config.json', { endpoint: hub.url, cacheDir });
    expect(p).toBe(join(snap(), 'unet', 'config.json'));
    expect(readlinkSync(p)).toBe(`../../../blobs/${gitSha1(files.unetConfig)}`);
    expect(readFileSync(join(repoRoot(), 'refs', 'main'), 'utf8')).toBe(C1);
    expect(hub.requests.map((r) => r.method)).toEqual(['HEAD', 'GET']);
    hub.reset();
    expect(await hfHubDownload('acme/tiny-sd', 'unet/config.json', { endpoint: hub.url, cacheDir })).toBe(p);
    expect(hub.requests).toEqual([]);
  });

  it('same-origin CDN redirect: metadata from the first response, token kept on the same host', async () => {
    hub.cdnMode = 'same';
    const p = await hfHubDownload('acme/private', 'w.safetensors', { endpoint: hub.url, cacheDir, token: 'hf_secret' });
    expect(readFileSync(p).equals(files.secret)).toBe(true);
    expect(readlinkSync(p)).toBe(`../../blobs/${sha256(files.secret)}`);
    const cdnGet = hub.requests.find((r) => r.path.startsWith('/cdn-lfs/'))!;
    expect(cdnGet.headers.authorization).toBe('Bearer hf_secret');
  });
});

describe('errors', () => {
  it('404 repo, 404 revision and 404 file are one clear line', async () => {
    let e = await rejection(dl({}, 'acme/nope'));
    expect(e).toBeInstanceOf(RepoNotFoundError);
    expect(e.message).toBe(`Repository acme/nope not found on ${hub.url}`);
    e = await rejection(hfHubDownload('acme/nope', 'config.json', { endpoint: hub.url, cacheDir }));
    expect(e).toBeInstanceOf(RepoNotFoundError);
    e = await rejection(dl({ revision: 'nobranch' }));
    expect(e).toBeInstanceOf(RevisionNotFoundError);
    e = await rejection(hfHubDownload('acme/tiny-sd', 'unet/missing.bin', { endpoint: hub.url, cacheDir }));
    expect(e).toBeInstanceOf(EntryNotFoundError);
    expect(e.message).toBe('File unet/missing.bin not found in acme/tiny-sd@main');
    e = await rejection(dl({ required: ['vae/config.json'] }));
    expect(e).toBeInstanceOf(EntryNotFoundError);
    expect(e.message).toBe('File vae/config.json not found in acme/tiny-sd@main');
    e = await rejection(dl({}, 'bad//id'));
    expect(e.message).toContain('not a valid Hugging Face repo id');
  });

  it('401 / 403 say how to authenticate; the right token works', async () => {
    let e = await rejection(dl({}, 'acme/private'));
    expect(e).toBeInstanceOf(AuthRequiredError);
    expect(e.message).toBe('Repository acme/private requires authentication: set HF_TOKEN (or run `huggingface-cli login`)');
    e = await rejection(dl({ token: 'hf_wrong' }, 'acme/private'));
    expect(e).toBeInstanceOf(AuthRequiredError);
    expect(e.message).toContain('refused the token (HTTP 403)');
    expect(e.message).toContain('HF_TOKEN');
    e = await rejection(dl({ token: 'hf_wrong' }, 'acme/gated'));
    expect(e.message).toContain(`gated, accept its conditions at ${hub.url}/acme/gated`);
    process.env['HF_TOKEN'] = 'hf_right';
    try {
      const dir = await dl({}, 'acme/gated');
      expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe('{}');
    } finally {
      delete process.env['HF_TOKEN'];
    }
  });

  it('sends the token as Bearer to the hub and never to the CDN on another host', async () => {
    const dir = await dl({ token: 'hf_secret' }, 'acme/private');
    expect(readFileSync(join(dir, 'w.safetensors')).equals(files.secret)).toBe(true);
    const hubReqs = hub.requests.filter((r) => r.server === 'hub');
    expect(hubReqs.length).toBe(4); // api + 2 HEAD + 1 GET (config.json)
    expect(hubReqs.every((r) => r.headers.authorization === 'Bearer hf_secret')).toBe(true);
    const cdnReqs = hub.requests.filter((r) => r.server === 'cdn');
    expect(cdnReqs.length).toBe(1);
    expect(cdnReqs[0]!.headers.authorization).toBeUndefined();
  });

  it('connection refused: bounded retries, then one line naming the target', async () => {
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const e = await rejection(snapshotDownload('acme/tiny-sd', { endpoint: `http://127.0.0.1:${port}`, cacheDir, retries: 2, retryDelayMs: 1 }));
    expect(e).toBeInstanceOf(HubConnectionError);
    expect(e.message).toBe('Could not download the file list of acme/tiny-sd: ECONNREFUSED after 3 attempts (check the network or HF_ENDPOINT; run again to resume)');
  });

  it('a hub that cannot be reached falls back to a cached snapshot', async () => {
    await dl({ allowPatterns: ['*.json'] });
    const dir = await dl({ endpoint: 'http://127.0.0.1:9', refresh: true, retries: 0, allowPatterns: ['*.json'] });
    expect(dir).toBe(snap());
  });
});

describe('interrupted and corrupt downloads', () => {
  const unet = 'unet/diffusion_pytorch_model.safetensors';

  it('a connection cut mid-file resumes with Range in the same call', async () => {
    hub.cutAfter.set(unet, { bytes: 100_000, times: 1 });
    const dir = await dl({ allowPatterns: [unet] });
    expect(readFileSync(join(dir, unet)).equals(files.unet)).toBe(true);
    const gets = hub.requests.filter((r) => r.server === 'cdn');
    expect(gets.map((r) => r.headers.range)).toEqual([undefined, 'bytes=100000-']);
    expect(blobs()).toEqual([sha256(files.unet)]);
  });

  it('a killed download leaves only blobs/<hash>.incomplete (nothing in snapshots/); the next call resumes', async () => {
    hub.cutAfter.set(unet, { bytes: 70_000, times: 5 });
    const e = await rejection(dl({ allowPatterns: [unet], retries: 1 }));
    expect(e).toBeInstanceOf(HubConnectionError);
    expect(e.message).toContain(`Could not download ${unet} from acme/tiny-sd: ECONNRESET after 2 attempts`);
    expect(hub.count('cdn', 'GET')).toBe(2); // bounded
    expect(filesUnder(snap())).toEqual([]);
    expect(blobs()).toEqual([`${sha256(files.unet)}.incomplete`]);
    expect(lstatSync(join(repoRoot(), 'blobs', `${sha256(files.unet)}.incomplete`)).size).toBe(140_000);
    hub.reset();
    const dir = await dl({ allowPatterns: [unet] });
    expect(readFileSync(join(dir, unet)).equals(files.unet)).toBe(true);
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.headers.range)).toEqual(['bytes=140000-']);
  });

  it('a server that ignores Range (200) restarts the file cleanly', async () => {
    hub.cutAfter.set(unet, { bytes: 50_000, times: 1 });
    hub.ignoreRange = true;
    const dir = await dl({ allowPatterns: [unet] });
    expect(readFileSync(join(dir, unet)).equals(files.unet)).toBe(true);
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.headers.range)).toEqual([undefined, 'bytes=50000-']);
    expect(blobs()).toEqual([sha256(files.unet)]);
  });

  it('resumes a non-LFS file from the hub itself too', async () => {
    const big: FakeFile = { path: 'big.txt', content: bytes(80_000, 9) };
    tiny.files.push(big);
    try {
      hub.cutAfter.set('big.txt', { bytes: 30_000, times: 1 });
      const p = await hfHubDownload('acme/tiny-sd', 'big.txt', { endpoint: hub.url, cacheDir, retryDelayMs: 1 });
      expect(readFileSync(p).equals(big.content)).toBe(true);
      expect(hub.requests.filter((r) => r.method === 'GET').map((r) => r.headers.range)).toEqual([undefined, 'bytes=30000-']);
      expect(blobs()).toEqual([gitSha1(big.content)]);
    } finally {
      tiny.files.pop();
    }
  });

  it('a corrupted body fails the sha256 check: error, no blob, nothing in snapshots/', async () => {
    hub.corrupt.add(unet);
    const e = await rejection(dl({ allowPatterns: [unet] }));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/^Download of unet\/diffusion_pytorch_model\.safetensors from acme\/tiny-sd is corrupt \(sha256 [0-9a-f]{64} does not match [0-9a-f]{64}\)/);
    expect(filesUnder(snap())).toEqual([]);
    expect(blobs()).toEqual([]);
  });

  it('a body longer than the advertised size fails the size check', async () => {
    hub.advertisedSize.set('vae/diffusion_pytorch_model.safetensors', 100_000);
    const e = await rejection(dl({ allowPatterns: ['vae/*.safetensors'] }));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain('got 120000 bytes, expected 100000');
    expect(blobs()).toEqual([]);
    expect(filesUnder(snap())).toEqual([]);
  });
});

describe('resolveRepo', () => {
  it('returns a local folder as is and downloads a repo id', async () => {
    expect(await resolveRepo(cacheDir)).toBe(cacheDir);
    await expect(resolveRepo('./no/such/folder')).rejects.toThrow('folder ./no/such/folder not found');
    expect(await resolveRepo('acme/tiny-sd', { endpoint: hub.url, cacheDir, allowPatterns: ['*.json'] })).toBe(snap());
    expect(await resolveRepo('acme/tiny-sd@v2', { endpoint: hub.url, cacheDir, allowPatterns: ['*.json'] })).toBe(snap(C2));
  });
});

describe('fewstep download', () => {
  async function run(argv: string[], isTTY = false) {
    let stdout = '';
    let stderr = '';
    const code = await main(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), isTTY });
    return { code, stdout, stderr };
  }

  it('prints the snapshot path; progress lines on stderr; --quiet is silent', async () => {
    process.env['HF_ENDPOINT'] = hub.url;
    process.env['HF_HUB_CACHE'] = cacheDir;
    try {
      let r = await run(['download', 'acme/tiny-sd', '--include', '*.json', '--include', 'vae/*', '--exclude', 'unet/*']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${snap()}\n`);
      expect(r.stderr.trim().split('\n').sort()).toEqual([
        'downloaded model_index.json (43 B)',
        'downloaded vae/diffusion_pytorch_model.safetensors (117 KiB)',
      ]);
      expect(filesUnder(snap())).toEqual(['model_index.json', 'vae/diffusion_pytorch_model.safetensors']);
      r = await run(['download', 'acme/tiny-sd', '--quiet', '--revision', 'v2', '--include', 'README.md']);
      expect(r).toEqual({ code: 0, stdout: `${snap(C2)}\n`, stderr: '' });
      const other = mkdtempSync(join(tmpdir(), 'fewstep-cd-'));
      tmpRoots.push(other);
      r = await run(['download', 'acme/tiny-sd', '-q', '--cache-dir', other, '--include', 'README.md']);
      expect(r.stdout).toBe(`${join(other, 'models--acme--tiny-sd', 'snapshots', C1)}\n`);
      r = await run(['download', 'acme/nope']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`fewstep download: Repository acme/nope not found on ${hub.url}\n`);
      r = await run(['download']);
      expect(r.code).toBe(2);
    } finally {
      delete process.env['HF_ENDPOINT'];
      delete process.env['HF_HUB_CACHE'];
    }
  });

  it('draws a bar on a TTY', async () => {
    let out = '';
    let t = 0;
    const p = createProgressPrinter((s) => void (out += s), { isTTY: true, now: () => (t += 1000), width: 10 });
    p.onProgress({ file: 'a.bin', loaded: 0, total: 100, status: 'downloading', index: 0, count: 2 });
    p.onProgress({ file: 'a.bin', loaded: 50, total: 100, status: 'downloading', index: 0, count: 2 });
    p.onProgress({ file: 'a.bin', loaded: 100, total: 100, status: 'done', index: 0, count: 2 });
    p.onProgress({ file: 'b.json', loaded: 5, total: 5, status: 'cached', index: 1, count: 2 });
    p.finish();
    expect(out).toContain('[1/2] a.bin █████░░░░░ 50 B/100 B 50%');
    expect(out).toContain('\r\x1b[Kdownloaded a.bin (100 B)\n');
    expect(out.endsWith('\n')).toBe(true);
  });
});
