// The web page's browser-side pieces that need no browser, run in Node (fetch, Blob and streams are the same
// APIs): the URL settings, the latest-wins queue, the hub client against the fake hub (listing, on-demand
// downloads with progress, the store, offline fallback, errors, abort), the mounted FileSource, and the error
// messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceError, FewstepError, AbortError } from '@fewstep/tensor';
import type { DownloadProgressEvent } from '@fewstep/models';
import { parseSettings, settingsToQuery, defaultSettings, parseRepoId } from '../../packages/web/src/settings';
import { LatestWins } from '../../packages/web/src/latest_wins';
import { BrowserHub, HubError } from '../../packages/web/src/hub/hub_client';
import { MemoryStore } from '../../packages/web/src/hub/weight_store';
import { MountedFiles, pickedFolderMount } from '../../packages/web/src/io/browser_files';
import { describeError } from '../../packages/web/src/ui/messages';
import { startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { tinyModelHubFiles } from '../helpers/tiny_sdxs_model';

describe('URL settings', () => {
  it('reads every key, with defaults for the rest', () => {
    const { settings, run, warnings } = parseSettings(
      '?mode=sketch&model=org/name@v1&endpoint=https://hf-mirror.example/&controlnet=org/cn&prompt=a%20cat&negative_prompt=blurry&seed=7&steps=2&guidance=1.5&width=64&height=128&dtype=f16&control_scale=0.5&invert=0&run=1',
    );
    expect(warnings).toEqual([]);
    expect(run).toBe(true);
    expect(settings).toEqual({
      mode: 'sketch', model: 'org/name', revision: 'v1', endpoint: 'https://hf-mirror.example', controlnet: 'org/cn', prompt: 'a cat', negativePrompt: 'blurry',
      seed: 7, steps: 2, guidance: 1.5, width: 64, height: 128, dtype: 'f16', controlScale: 0.5, invert: false, backend: 'browser',
    });
    expect(parseSettings('backend=server').settings.backend).toBe('server');
    expect(parseSettings('').settings).toEqual(defaultSettings('text'));
    expect(parseSettings('mode=sketch').settings.model).toBe('IDKiro/sdxs-512-dreamshaper');
  });

  it('bad values are warnings naming the key, never errors', () => {
    const { settings, warnings } = parseSettings('model=not a repo&seed=abc&steps=0&width=65&dtype=f8&endpoint=ftp://x&mode=video&guidance=-1&backend=gpu');
    expect(settings).toEqual(defaultSettings('text'));
    expect(warnings.map((w) => w.split('=')[0])).toEqual(['mode', 'model', 'endpoint', 'seed', 'steps', 'guidance', 'width', 'dtype', 'backend']);
    expect(parseSettings('seed=-1').settings.seed).toBeNull();
    expect(parseSettings('seed=random').settings.seed).toBeNull();
    expect(parseSettings(`seed=${2 ** 53}`).warnings).toHaveLength(1);
  });

  it('round-trips through settingsToQuery, which writes only what differs', () => {
    const s = { ...defaultSettings('text'), seed: 42, width: 64, height: 64, dtype: 'f32' as const, endpoint: 'http://127.0.0.1:9' };
    const q = settingsToQuery(s, { run: true });
    expect(q).toBe('endpoint=http%3A%2F%2F127.0.0.1%3A9&seed=42&width=64&height=64&dtype=f32&run=1');
    expect(parseSettings(q).settings).toEqual(s);
    const sk = { ...defaultSettings('sketch'), controlScale: 0.75, invert: false, seed: 3 };
    expect(parseSettings(settingsToQuery(sk)).settings).toEqual(sk);
    expect(settingsToQuery(defaultSettings('text'))).toBe('');
  });

  it('repo ids', () => {
    expect(parseRepoId('IDKiro/sdxs-512-0.9')).toEqual({ repo: 'IDKiro/sdxs-512-0.9', revision: null });
    expect(parseRepoId('a/b@refs/pr/1')).toEqual({ repo: 'a/b', revision: 'refs/pr/1' });
    for (const bad of ['a', 'a/b/c', '../x', 'a/b@', 'a/b@x y', '']) expect(parseRepoId(bad), bad).toBeNull();
  });
});

describe('LatestWins', () => {
  it('runs one job at a time, keeps only the newest waiting job', async () => {
    const ran: number[] = [];
    let release: (() => void) | null = null;
    const q = new LatestWins<number>(async (n) => {
      ran.push(n);
      await new Promise<void>((r) => (release = r));
    });
    q.submit(1);
    q.submit(2);
    q.submit(3);
    expect(q.state).toMatchObject({ running: true, queued: true, submitted: 3, started: 1, dropped: 1 });
    release!();
    await new Promise((r) => setTimeout(r, 0));
    expect(ran).toEqual([1, 3]);
    release!();
    await q.idle();
    expect(q.state).toMatchObject({ running: false, queued: false, started: 2 });
  });

  it('an error goes to onError and the queue goes on; cancel aborts the running job', async () => {
    const errors: unknown[] = [];
    const q = new LatestWins<string>(
      async (j, signal) => {
        if (j === 'bad') throw new Error('boom');
        await new Promise<void>((res, rej) => signal.addEventListener('abort', () => rej(new AbortError())));
      },
      (e) => errors.push(e),
    );
    q.submit('bad');
    q.submit('wait');
    await new Promise((r) => setTimeout(r, 0));
    q.cancel();
    await q.idle();
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom', 'the operation was aborted']);
  });
});

describe('BrowserHub + MountedFiles against the fake hub', () => {
  let hub: FakeHub;
  const COMMIT = 'c'.repeat(40);
  beforeAll(async () => {
    hub = await startFakeHub([{ id: 'org/tiny', commit: COMMIT, files: tinyModelHubFiles() }]);
  });
  afterAll(() => hub?.close());

  it('lists the repo, downloads a file once with progress (LFS via the CDN redirect), then serves it from the store', async () => {
    const store = new MemoryStore();
    const bh = new BrowserHub(store);
    const listing = await bh.listRepo(hub.url, 'org/tiny', 'main');
    expect(listing.commit).toBe(COMMIT);
    expect(listing.offline).toBe(false);
    expect(listing.files.map((f) => f.path)).toContain('unet/diffusion_pytorch_model.safetensors');
    const events: DownloadProgressEvent[] = [];
    hub.requests = [];
    const [a, b] = await Promise.all([
      bh.file(listing, 'unet/diffusion_pytorch_model.safetensors', { onProgress: (e) => events.push(e) }),
      bh.file(listing, 'unet/diffusion_pytorch_model.safetensors'),
    ]);
    expect(a).toBe(b);
    const want = tinyModelHubFiles().find((f) => f.path === 'unet/diffusion_pytorch_model.safetensors')!.content;
    expect(Buffer.from(await a.arrayBuffer()).equals(want)).toBe(true);
    expect(hub.count('hub', 'GET')).toBe(1);
    expect(hub.count('cdn', 'GET')).toBe(1);
    expect(events[0]).toMatchObject({ type: 'download', status: 'initiate', repo: 'org/tiny', file: 'unet/diffusion_pytorch_model.safetensors', loaded: 0 });
    expect(events.at(-1)).toMatchObject({ status: 'done', loaded: want.length, total: want.length });
    events.length = 0;
    await bh.file(listing, 'unet/diffusion_pytorch_model.safetensors', { onProgress: (e) => events.push(e) });
    expect(events).toEqual([{ type: 'download', status: 'done', repo: 'org/tiny', file: 'unet/diffusion_pytorch_model.safetensors', loaded: want.length, total: want.length, cached: true }]);
    expect(hub.count('hub', 'GET')).toBe(1);
  });

  it('offline: the listing and the files come from the store; a file never fetched is offline_missing', async () => {
    const store = new MemoryStore();
    const online = new BrowserHub(store);
    const l1 = await online.listRepo(hub.url, 'org/tiny', 'main');
    await online.file(l1, 'unet/config.json');
    const offline = new BrowserHub(store, async () => {
      throw new TypeError('Failed to fetch');
    });
    const l2 = await offline.listRepo(hub.url, 'org/tiny', 'main');
    expect(l2).toMatchObject({ commit: COMMIT, offline: true });
    expect(JSON.parse(await (await offline.file(l2, 'unet/config.json')).text())).toHaveProperty('_class_name');
    await expect(offline.file(l2, 'vae/config.json')).rejects.toMatchObject({ code: 'offline_missing' });
    await expect(offline.listRepo(hub.url, 'org/other', 'main')).rejects.toMatchObject({ code: 'offline_missing' });
  });

  it('errors: a 404 repo, a 404 file, a cut download (nothing stored), an abort', async () => {
    const store = new MemoryStore();
    const bh = new BrowserHub(store);
    const e = await bh.listRepo(hub.url, 'org/missing', 'main').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HubError);
    expect(e).toMatchObject({ code: 'repo_not_found' });
    expect((e as Error).message).toBe(`model org/missing not found on ${hub.url} (HTTP 404): check the repo id`);
    const listing = await bh.listRepo(hub.url, 'org/tiny', 'main');
    await expect(bh.file(listing, 'nope.json')).rejects.toMatchObject({ code: 'entry_not_found' });
    hub.cutAfter.set('vae/diffusion_pytorch_model.safetensors', { bytes: 100, times: 1 });
    await expect(bh.file(listing, 'vae/diffusion_pytorch_model.safetensors')).rejects.toBeInstanceOf(FewstepError);
    expect(await bh.cached(listing, 'vae/diffusion_pytorch_model.safetensors')).toBeNull();
    hub.slow.set('text_encoder/model.safetensors', { chunk: 1000, delayMs: 20 });
    const ac = new AbortController();
    const p = bh.file(listing, 'text_encoder/model.safetensors', { signal: ac.signal, onProgress: (ev) => ev.status === 'progress' && ac.abort() });
    setTimeout(() => ac.abort(), 300);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(await bh.cached(listing, 'text_encoder/model.safetensors')).toBeNull();
    hub.reset();
  });

  it('MountedFiles: exists / list / open over a hub mount and a picked folder', async () => {
    const bh = new BrowserHub(new MemoryStore());
    const listing = await bh.listRepo(hub.url, 'org/tiny', 'main');
    const io = new MountedFiles();
    const dir = io.mount('org/tiny@cccc', { files: listing.files.map((f) => f.path), blob: (rel) => bh.file(listing, rel) });
    expect(await io.exists(io.join(dir, 'unet'))).toBe(true);
    expect(await io.exists(io.join(dir, 'unet', 'config.json'))).toBe(true);
    expect(await io.exists('org/tiny/unet')).toBe(false);
    expect(await io.list(io.join(dir, 'unet'))).toEqual(['config.json', 'diffusion_pytorch_model.bin', 'diffusion_pytorch_model.safetensors']);
    expect(JSON.parse(await io.readText(`${dir}/vae/config.json`))._class_name).toBe('AutoencoderTiny');
    const f = await io.open(`${dir}/unet/diffusion_pytorch_model.safetensors`);
    expect((await f.read(8, 1))[0]).toBe('{'.charCodeAt(0));
    await expect(f.read(f.size - 1, 2)).rejects.toMatchObject({ code: 'file_format' });

    const picked = [new File(['{"a":1}'], 'config.json'), new File(['x'], 'model.safetensors')];
    Object.defineProperty(picked[0], 'webkitRelativePath', { value: 'my-model/unet/config.json' });
    Object.defineProperty(picked[1], 'webkitRelativePath', { value: 'my-model/unet/model.safetensors' });
    const { root, mount } = pickedFolderMount(picked);
    expect(root).toBe('my-model');
    io.mount(root, mount);
    expect(await io.list('my-model/unet')).toEqual(['config.json', 'model.safetensors']);
    expect(await io.readText('my-model/unet/config.json')).toBe('{"a":1}');
  });
});

describe('error messages', () => {
  it('name the problem and what to try, by error code', () => {
    expect(describeError(new HubError('repo_not_found', 'model org/x not found')).title).toBe('Model not found');
    const oom = describeError(new DeviceError('gpu_error', 'WebGPU error: Out of memory'));
    expect(oom.title).toBe('The GPU ran out of memory');
    expect(oom.hints.join(' ')).toMatch(/smaller width and height/);
    expect(describeError(new DeviceError('device_lost', 'lost')).hints.join(' ')).toMatch(/no reload needed/);
    expect(describeError(new AbortError()).level).toBe('info');
    expect(describeError(new Error('weird')).title).toBe('Something went wrong');
  });
});
