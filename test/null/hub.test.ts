// Hub downloads into the huggingface_hub cache layout, against a fake hub on 127.0.0.1.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AbortError, FewstepError, isAbortError } from '@fewstep/tensor';
import {
  AuthRequiredError,
  EntryNotFoundError,
  FileForbiddenError,
  HubConnectionError,
  HubError,
  HubInputError,
  IntegrityError,
  NoMatchingFilesError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
  compileGlob,
  createProgressPrinter,
  fileFilter,
  hfHubDownload,
  listRepoFiles,
  parseRepoSpec,
  resolveConfig,
  resolveModel,
  resolveRepo,
  snapshotDownload,
  type DownloadProgressEvent,
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

const C3 = 'c'.repeat(39) + '3';
const tsv = bytes(20_000, 11);
const prompts: FakeRepo = { id: 'acme/prompts', type: 'dataset', commit: C3, files: [{ path: 'README.md', content: Buffer.from('# prompts\n') }, { path: 'data/prompts.tsv', content: tsv, lfs: true }] };

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
    prompts,
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
    const events: DownloadProgressEvent[] = [];
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
    // Progress: every file announced first ('initiate'), then its bytes, then 'done' with its size.
    expect(events.every((e) => e.type === 'download' && e.repo === 'acme/tiny-sd')).toBe(true);
    expect(events.slice(0, 6).map((e) => e.status)).toEqual(Array(6).fill('initiate'));
    const done = events.filter((e) => e.status === 'done');
    expect(done.map((e) => e.file).sort()).toEqual(tiny.files.map((f) => f.path).sort());
    expect(done.every((e) => e.cached === false)).toBe(true);
    expect(done.find((e) => e.file === 'unet/diffusion_pytorch_model.safetensors')).toMatchObject({ loaded: 300_000, total: 300_000 });
    for (const f of tiny.files) {
      const mine = events.filter((e) => e.file === f.path);
      expect(mine[0]!.status).toBe('initiate');
      expect(mine.at(-1)).toMatchObject({ status: 'done', loaded: f.content.length });
      expect(mine.slice(1, -1).every((e) => e.status === 'progress' && e.total === f.content.length)).toBe(true);
      const loads = mine.slice(1).map((e) => e.loaded);
      expect(loads).toEqual([...loads].sort((a, b) => a - b)); // byte counts only grow
    }
    expect(events.filter((e) => e.file === 'unet/diffusion_pytorch_model.safetensors' && e.status === 'progress').length).toBeGreaterThan(0);
  });

  it('a second call uses the cache with zero requests', async () => {
    await dl();
    hub.reset();
    const events: DownloadProgressEvent[] = [];
    expect(await dl({ onProgress: (e) => events.push(e) })).toBe(snap());
    expect(hub.requests).toEqual([]);
    // Cache hits: initiate, then done with cached: true — no progress events.
    expect(events.filter((e) => e.status === 'initiate')).toHaveLength(6);
    expect(events.filter((e) => e.status === 'done' && e.cached === true)).toHaveLength(6);
    expect(events).toHaveLength(12);
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

  it('temp files of killed processes in the repo\'s .fewstep/tmp are removed by the next download; a live process\' stay', async () => {
    const tmp = join(repoRoot(), '.fewstep', 'tmp');
    mkdirSync(tmp, { recursive: true });
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());
    const parent = process.ppid; // alive while we run
    for (const n of [`link-${dead}-abc123.tmp`, `write-${dead}-x9.tmp`, `link-${parent}-keep.tmp`, 'other.txt']) writeFileSync(join(tmp, n), 'x');
    await dl({ allowPatterns: ['model_index.json'] });
    expect(readdirSync(tmp).sort()).toEqual([`link-${parent}-keep.tmp`, 'other.txt'].sort());
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

  it('a 403 on one file of a repo that lists fine names that file and the hub\'s reason, not a token', async () => {
    hub.forbidden.set('README.md', 'Access to this file has been disabled');
    let e = await rejection(dl({ allowPatterns: ['README.md', 'model_index.json'] }));
    expect(e).not.toBeInstanceOf(AuthRequiredError);
    expect(e).toBeInstanceOf(FileForbiddenError);
    expect((e as FewstepError).code).toBe('hub_http');
    expect(e.message).toBe(
      `HTTP 403 Forbidden for README.md of acme/tiny-sd@main from ${new URL(hub.url).host}: Access to this file has been disabled (the repo's file list was readable, so this file itself is refused)`,
    );
    hub.forbidden.set('README.md', '');
    e = await rejection(dl({ allowPatterns: ['README.md'], token: 'hf_any' }));
    expect(e.message).toBe(
      `HTTP 403 Forbidden for README.md of acme/tiny-sd@main from ${new URL(hub.url).host} (the repo's file list was readable, so this file itself is refused; check that your token may read it)`,
    );
    // Through the CLI: one line, exit 1.
    process.env['HF_ENDPOINT'] = hub.url;
    process.env['HF_HUB_CACHE'] = cacheDir;
    try {
      let err = '';
      const code = await main(['download', 'acme/tiny-sd', '-q', '--include', 'README.md'], { stdout: () => {}, stderr: (s) => void (err += s), isTTY: false });
      expect(code).toBe(1);
      expect(err).toMatch(/^fewstep download: HTTP 403 Forbidden for README\.md of acme\/tiny-sd@main from [^\n]+ \(the repo's file list was readable, so this file itself is refused\)\n$/);
    } finally {
      delete process.env['HF_ENDPOINT'];
      delete process.env['HF_HUB_CACHE'];
    }
  });

  it('include patterns that match nothing are an error naming them, online and from a known cached list', async () => {
    let e = await rejection(dl({ allowPatterns: ['nonexistent.json'] }));
    expect(e).toBeInstanceOf(NoMatchingFilesError);
    expect((e as FewstepError).code).toBe('entry_not_found');
    expect(e.message).toBe('No file of acme/tiny-sd@main matches the include pattern nonexistent.json (the revision has 6 files; nothing was downloaded)');
    expect(hub.count('hub', 'HEAD')).toBe(0);
    e = await rejection(dl({ allowPatterns: ['*.json', '*.gguf', 'vea/'] }));
    expect(e.message).toBe('No file of acme/tiny-sd@main matches the include patterns *.gguf, vea/ (the revision has 6 files; nothing was downloaded)');
    e = await rejection(dl({ allowPatterns: ['*.json'], ignorePatterns: ['*.json'] }));
    expect(e).toBeInstanceOf(NoMatchingFilesError);
    expect(e.message).toBe('No file of acme/tiny-sd@main is left after the include / exclude patterns (the revision has 6 files; nothing was downloaded)');
    // The list is cached now: the same answer with no request, and offline.
    hub.reset();
    expect((await rejection(dl({ allowPatterns: ['nonexistent.json'] }))).message).toContain('matches the include pattern nonexistent.json');
    expect((await rejection(dl({ allowPatterns: ['nonexistent.json'], offline: true }))).message).toContain('matches the include pattern nonexistent.json');
    expect(hub.requests).toEqual([]);
    expect(filesUnder(snap())).toEqual([]);
    // fewstep download says so and exits 1.
    process.env['HF_ENDPOINT'] = hub.url;
    process.env['HF_HUB_CACHE'] = cacheDir;
    try {
      let out = '';
      let err = '';
      const code = await main(['download', 'acme/tiny-sd', '--include', 'nonexistent.json'], { stdout: (s) => void (out += s), stderr: (s) => void (err += s), isTTY: false });
      expect({ code, out, err }).toEqual({
        code: 1,
        out: '',
        err: 'fewstep download: No file of acme/tiny-sd@main matches the include pattern nonexistent.json (the revision has 6 files; nothing was downloaded)\n',
      });
    } finally {
      delete process.env['HF_ENDPOINT'];
      delete process.env['HF_HUB_CACHE'];
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

  it('a small (non-LFS) file with flipped bytes of the right length fails its git blob sha1 (the ETag)', async () => {
    hub.corrupt.add('unet/config.json');
    const e = await rejection(dl({ allowPatterns: ['unet/config.json'] }));
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as FewstepError).code).toBe('integrity');
    expect(e.message).toBe(
      `Download of unet/config.json from acme/tiny-sd is corrupt (git blob sha1 ${gitSha1(Buffer.from(files.unetConfig.map((b) => b ^ 0xff)))} does not match the ETag ${gitSha1(files.unetConfig)}); the partial file was deleted, run again to retry`,
    );
    expect(filesUnder(snap())).toEqual([]);
    expect(blobs()).toEqual([]);
    // hfHubDownload checks it too; once the hub serves the right bytes, the file arrives.
    expect(await rejection(hfHubDownload('acme/tiny-sd', 'unet/config.json', { endpoint: hub.url, cacheDir }))).toBeInstanceOf(IntegrityError);
    hub.corrupt.clear();
    const p = await hfHubDownload('acme/tiny-sd', 'unet/config.json', { endpoint: hub.url, cacheDir });
    expect(readFileSync(p).equals(files.unetConfig)).toBe(true);
  });
});

describe('listRepoFiles', () => {
  const list = (opts: Parameters<typeof listRepoFiles>[1] = {}, repo = 'acme/tiny-sd') => listRepoFiles(repo, { endpoint: hub.url, cacheDir, retryDelayMs: 5, ...opts });

  it('asks the hub once, then answers from the cache; refresh asks again; nothing is downloaded', async () => {
    expect(await list()).toEqual(tiny.files.map((f) => f.path));
    expect(hub.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/models/acme/tiny-sd/revision/main']);
    expect(readFileSync(join(repoRoot(), 'refs', 'main'), 'utf8')).toBe(C1);
    expect(filesUnder(snap())).toEqual([]);
    hub.reset();
    expect(await list()).toEqual(tiny.files.map((f) => f.path));
    expect(hub.requests).toEqual([]);
    await list({ refresh: true });
    expect(hub.count('hub', 'GET')).toBe(1);
    expect(await list({ revision: 'v2' })).toHaveLength(tiny.files.length);
  });

  it('offline: from the cache (a Python cache: the files its snapshot holds), else OfflineMissingError', async () => {
    let e = await rejection(list({ offline: true }));
    expect(e).toBeInstanceOf(OfflineMissingError);
    expect((e as FewstepError).code).toBe('offline_missing');
    expect(e.message).toMatch(/^Offline mode \(HF_HUB_OFFLINE=1\): acme\/tiny-sd@main is not in the cache at /);
    await dl({ allowPatterns: ['*.json'] });
    hub.reset();
    expect(await list({ offline: true })).toEqual(tiny.files.map((f) => f.path));
    rmSync(join(repoRoot(), '.fewstep'), { recursive: true });
    expect((await list({ offline: true })).sort()).toEqual(['model_index.json', 'unet/config.json']);
    expect(hub.requests).toEqual([]);
    e = await rejection(list({}, 'acme/nope'));
    expect(e).toBeInstanceOf(RepoNotFoundError);
  });

  it('a hub that cannot be reached falls back to the cached list', async () => {
    await list();
    expect(await list({ endpoint: 'http://127.0.0.1:9', refresh: true, retries: 0 })).toEqual(tiny.files.map((f) => f.path));
    const e = await rejection(list({ endpoint: 'http://127.0.0.1:9', retries: 0 }, 'acme/other'));
    expect(e).toBeInstanceOf(HubConnectionError);
    expect((e as HubConnectionError).networkCode).toBe('ECONNREFUSED');
  });
});

describe('dataset repos', () => {
  it('lists and downloads through /api/datasets/ and /datasets/…/resolve/ into datasets--org--name', async () => {
    const opts = { endpoint: hub.url, cacheDir, repoType: 'dataset' as const };
    expect(await listRepoFiles('acme/prompts', opts)).toEqual(['README.md', 'data/prompts.tsv']);
    expect(hub.requests.map((r) => r.path)).toEqual(['/api/datasets/acme/prompts/revision/main']);
    const dir = await snapshotDownload('acme/prompts', { ...opts, allowPatterns: ['*.tsv'] });
    expect(dir).toBe(join(cacheDir, 'datasets--acme--prompts', 'snapshots', C3));
    expect(readFileSync(join(dir, 'data/prompts.tsv')).equals(tsv)).toBe(true);
    expect(hub.requests.some((r) => r.method === 'HEAD' && r.path === `/datasets/acme/prompts/resolve/${C3}/data/prompts.tsv`)).toBe(true);
    const p = await hfHubDownload('acme/prompts', 'README.md', opts);
    expect(readFileSync(p, 'utf8')).toBe('# prompts\n');
    // The same id as a model repo does not exist.
    const e = await rejection(listRepoFiles('acme/prompts', { endpoint: hub.url, cacheDir }));
    expect(e).toBeInstanceOf(RepoNotFoundError);
  });
});

describe('cancellation (AbortSignal)', () => {
  const unet = 'unet/diffusion_pytorch_model.safetensors';
  const inc = () => join(repoRoot(), 'blobs', `${sha256(files.unet)}.incomplete`);

  it('aborting mid-file closes the socket at once, throws AbortError, keeps only the resumable .incomplete', async () => {
    hub.slow.set(unet, { chunk: 16_384, delayMs: 40 }); // ~0.75 s for the whole file
    const ac = new AbortController();
    const events: DownloadProgressEvent[] = [];
    const t0 = Date.now();
    const e = await rejection(
      dl({
        allowPatterns: [unet, 'unet/config.json'],
        signal: ac.signal,
        onProgress: (ev) => {
          events.push(ev);
          if (ev.status === 'progress' && ev.file === unet && ev.loaded >= 32_768) ac.abort();
        },
      }),
    );
    expect(Date.now() - t0).toBeLessThan(600);
    expect(e).toBeInstanceOf(AbortError);
    expect(isAbortError(e)).toBe(true);
    expect((e as FewstepError).code).toBe('aborted');
    expect(e.message).toBe('download of acme/tiny-sd: aborted');
    await vi.waitFor(() => expect(hub.closedEarly).toEqual([unet]), { timeout: 1000 });
    expect(events.some((ev) => ev.status === 'done' && ev.file === unet)).toBe(false);
    // Nothing of the aborted file in snapshots/, no blob renamed into place; the partial bytes stay.
    expect(filesUnder(snap())).not.toContain(unet);
    expect(blobs()).not.toContain(sha256(files.unet));
    const partial = lstatSync(inc()).size;
    expect(partial).toBeGreaterThanOrEqual(32_768);
    expect(partial).toBeLessThan(files.unet.length);
    // No retries after the abort.
    expect(hub.count('cdn', 'GET')).toBe(1);

    // The next call resumes from the partial file.
    hub.reset();
    const dir = await dl({ allowPatterns: [unet] });
    expect(readFileSync(join(dir, unet)).equals(files.unet)).toBe(true);
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.headers.range)).toEqual([`bytes=${partial}-`]);
  });

  it('hfHubDownload stops too; an already aborted signal makes no request', async () => {
    hub.slow.set(unet, { chunk: 16_384, delayMs: 40 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const e = await rejection(hfHubDownload('acme/tiny-sd', unet, { endpoint: hub.url, cacheDir, signal: ac.signal }));
    expect(e).toBeInstanceOf(AbortError);
    expect(e.message).toBe(`download of ${unet} from acme/tiny-sd: aborted`);
    await vi.waitFor(() => expect(hub.closedEarly).toEqual([unet]), { timeout: 1000 });
    expect(existsSync(join(snap(), unet))).toBe(false);
    hub.reset();
    const done = new AbortController();
    done.abort();
    for (const p of [
      () => dl({ signal: done.signal }),
      () => hfHubDownload('acme/tiny-sd', unet, { endpoint: hub.url, cacheDir, signal: done.signal }),
      () => listRepoFiles('acme/tiny-sd', { endpoint: hub.url, cacheDir, signal: done.signal }),
      () => resolveModel('acme/tiny-sd', { endpoint: hub.url, cacheDir, dtype: 'f32', vae: undefined, signal: done.signal }),
    ]) {
      expect(await rejection(p())).toBeInstanceOf(AbortError);
    }
    expect(hub.requests).toEqual([]);
  });

  it('an abort during the wait between retries stops at once', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    const e = await rejection(snapshotDownload('acme/tiny-sd', { endpoint: 'http://127.0.0.1:9', cacheDir, retries: 5, retryDelayMs: 10_000, signal: ac.signal }));
    expect(e).toBeInstanceOf(AbortError);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('typed errors', () => {
  it('each hub error is a FewstepError with a stable code', async () => {
    const cases: [() => Promise<unknown>, new (...a: never[]) => HubError, string][] = [
      [() => dl({}, 'acme/nope'), RepoNotFoundError, 'repo_not_found'],
      [() => dl({ revision: 'nobranch' }), RevisionNotFoundError, 'revision_not_found'],
      [() => hfHubDownload('acme/tiny-sd', 'nope.txt', { endpoint: hub.url, cacheDir }), EntryNotFoundError, 'entry_not_found'],
      [() => dl({}, 'acme/private'), AuthRequiredError, 'auth_required'],
      [() => dl({ token: 'hf_wrong' }, 'acme/gated'), AuthRequiredError, 'auth_required'],
      [() => dl({ offline: true }), OfflineMissingError, 'offline_missing'],
      [() => dl({}, 'bad//id'), HubInputError, 'hub_input'],
      [() => snapshotDownload('acme/tiny-sd', { endpoint: 'http://127.0.0.1:9', cacheDir, retries: 0 }), HubConnectionError, 'hub_connection'],
    ];
    for (const [p, cls, code] of cases) {
      const e = await rejection(p());
      expect(e).toBeInstanceOf(cls);
      expect(e).toBeInstanceOf(HubError);
      expect(e).toBeInstanceOf(FewstepError);
      expect((e as FewstepError).code).toBe(code);
      expect(e.name).toBe(cls.name);
    }
    hub.corrupt.add('vae/diffusion_pytorch_model.safetensors');
    const e = await rejection(dl({ allowPatterns: ['vae/*.safetensors'] }));
    expect((e as FewstepError).code).toBe('integrity');
  });
});

describe('parseRepoSpec', () => {
  it('org/name[@revision]; the suffix wins over the option; main by default', () => {
    expect(parseRepoSpec('org/name')).toEqual({ repoId: 'org/name', revision: 'main' });
    expect(parseRepoSpec('org/name', 'v2')).toEqual({ repoId: 'org/name', revision: 'v2' });
    expect(parseRepoSpec('org/name@v1', 'v2')).toEqual({ repoId: 'org/name', revision: 'v1' });
    expect(parseRepoSpec('org/name@refs/pr/1')).toEqual({ repoId: 'org/name', revision: 'refs/pr/1' });
    expect(parseRepoSpec('org/name@')).toEqual({ repoId: 'org/name', revision: 'main' });
    expect(parseRepoSpec('@x')).toEqual({ repoId: '@x', revision: 'main' });
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
      r = await run(['download', 'acme/tiny-sd@v2', '-q', '--include', 'README.md']);
      expect(r.stdout).toBe(`${snap(C2)}\n`);
      r = await run(['download', 'acme/prompts', '-q', '--repo-type', 'dataset', '--include', '*.tsv']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${join(cacheDir, 'datasets--acme--prompts', 'snapshots', C3)}\n`);
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

  const ev = (status: DownloadProgressEvent['status'], file: string, loaded: number, total: number | null, cached?: boolean): DownloadProgressEvent => ({
    type: 'download',
    status,
    repo: 'acme/x',
    file,
    loaded,
    total,
    ...(cached === undefined ? {} : { cached }),
  });

  it('draws a bar on a TTY, counting the announced files', async () => {
    let out = '';
    let t = 0;
    const p = createProgressPrinter((s) => void (out += s), { isTTY: true, now: () => (t += 1000), width: 10 });
    p.onProgress(ev('initiate', 'a.bin', 0, null));
    p.onProgress(ev('initiate', 'b.json', 0, null));
    p.onProgress(ev('progress', 'a.bin', 0, 100));
    p.onProgress(ev('progress', 'a.bin', 50, 100));
    p.onProgress(ev('done', 'a.bin', 100, 100, false));
    p.onProgress(ev('done', 'b.json', 5, 5, true));
    p.finish();
    expect(out).toContain('[1/2] a.bin █████░░░░░ 50 B/100 B 50%');
    expect(out).toContain('\r\x1b[Kdownloaded a.bin (100 B)\n');
    expect(out).not.toContain('b.json');
    expect(out.endsWith('\n')).toBe(true);
  });

  it('without a TTY: one line per transferred file, cache hits silent; quiet prints nothing', () => {
    let out = '';
    const p = createProgressPrinter((s) => void (out += s), { isTTY: false });
    for (const e of [ev('initiate', 'a.bin', 0, null), ev('progress', 'a.bin', 10, 2048), ev('done', 'a.bin', 2048, 2048, false), ev('initiate', 'b', 0, 3), ev('done', 'b', 3, 3, true)]) p.onProgress(e);
    expect(out).toBe('downloaded a.bin (2.0 KiB)\n');
    out = '';
    const q = createProgressPrinter((s) => void (out += s), { isTTY: true, quiet: true });
    q.onProgress(ev('done', 'a.bin', 1, 1, false));
    expect(out).toBe('');
  });
});
