// `fewstep generate` / `fewstep batch` end to end on a tiny SDXS-style model (golden components, 64×64
// images = 8×8 latents so lavapipe is quick): from a folder, from the fake hub into a temporary HF
// cache and then offline, --out-dir ordering, --latents against the pipeline itself, batch resume.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSafetensors } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import sharp from 'sharp';
import { StableDiffusionPipeline, TorchGenerator, decodePng } from '@fewstep/models';
import { decodeImage } from '../../packages/cli/src/generation/image_inputs';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { isolateHfEnv, startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { tinyLoraFile } from '../helpers/tiny_lora';
import { buildTinyModel, tinyModelHubFiles } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-cli-gen-'));
const model = buildTinyModel(join(work, 'model'));
const sample = new URL('../fixtures/partiprompts-sample.tsv', import.meta.url).pathname;
const SIZE = ['--width', '64', '--height', '64'];
let restoreEnv: (() => void) | undefined;
let hub: FakeHub;

beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  process.env['HF_HOME'] = join(work, 'hf-home');
  process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
  hub = await startFakeHub([
    { id: 'org/tiny-sdxs', commit: 'd'.repeat(40), files: tinyModelHubFiles() },
    { id: 'org/tiny-lora', commit: 'e'.repeat(40), files: [{ path: 'tiny_lora.safetensors', content: Buffer.from(tinyLoraFile()), lfs: true }, { path: 'README.md', content: Buffer.from('#\n') }] },
  ]);
  process.env['HF_ENDPOINT'] = hub.url;
});
afterAll(async () => {
  await hub?.close();
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});


async function cli(args: string[], isTTY = false, extra: Partial<CliIO> = {}): Promise<{ code: number; stderr: string; stdout: string; bytes: Uint8Array[] }> {
  const out: string[] = [], err: string[] = [], bytes: Uint8Array[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stdoutBytes: async (b) => void bytes.push(b), stderr: (s) => void err.push(s), isTTY, ...extra };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join(''), bytes };
}

const readPng = async (p: string) => decodePng(new Uint8Array(readFileSync(p)), p);
const noPartials = (dir: string) => expect(readdirSync(dir).filter((n) => n.includes('.partial-'))).toEqual([]);

describe('fewstep generate', () => {
  it('one image to --out: PNG of the right size with the parameters', async () => {
    const out = join(work, 'one.png');
    const r = await cli(['generate', 'a photo of a cat', '--model', model, '--out', out, '--seed', '7', ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${out}\nseed 7, 1 step, guidance 0, 64x64, ${/, ([\d.]+) s\n$/.exec(r.stdout)![1]} s\n`);
    // Non-TTY progress: one line per stage, then the timings.
    for (const line of ['load unet ', 'loaded ', 'tokenize ', 'text encoder ', 'denoise step 1/1 ', 'decode ', 'timings: tokenize ']) expect(r.stderr).toContain(line);
    const img = await readPng(out);
    expect([img.width, img.height, img.data.length]).toEqual([64, 64, 64 * 64 * 3]);
    expect(img.text['parameters']).toBe(
      'a photo of a cat\nSteps: 1, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 7, Size: 64x64, Model: ' + model + ', Version: fewstep 0.1.0',
    );
    expect(JSON.parse(img.text['fewstep']!)).toMatchObject({ prompt: 'a photo of a cat', seed: 7, steps: 1, guidance: 0, width: 64, height: 64, sampler: 'EulerDiscreteScheduler' });
    // Not a flat image.
    expect(new Set(img.data).size).toBeGreaterThan(10);
    noPartials(work);

    // Same seed → same pixels; --quiet prints nothing on stderr.
    const again = join(work, 'one-again.png');
    const q = await cli(['generate', 'a photo of a cat', '--model', model, '--out', again, '--seed', '7', '--quiet', ...SIZE]);
    expect(q.code).toBe(0);
    expect(q.stderr.split('\n').filter((l) => l && !l.startsWith('Warning:'))).toEqual([]);
    expect(Buffer.from((await readPng(again)).data).equals(Buffer.from(img.data))).toBe(true);
  });

  it('--vae-dtype: with --dtype f16 TAESD decodes in f32 unless --vae-dtype f16; the metadata says which; bad values refused', async () => {
    const bad = await cli(['generate', 'x', '--model', model, '--out', join(work, 'bad.png'), '--vae-dtype', 'bf16']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--vae-dtype must be one of f32, f16, got "bf16"');
    const f32 = join(work, 'vae-f32.png');
    const r0 = await cli(['generate', 'a photo of a cat', '--model', model, '--out', f32, '--seed', '7', '--quiet', ...SIZE]);
    expect(r0.code, r0.stderr).toBe(0);
    expect(JSON.parse((await readPng(f32)).text['fewstep']!)).toMatchObject({ dtype: 'f32', vaeDtype: 'f32' });
    if (!(await gpuDevice()).features.f16) return console.log('--vae-dtype: adapter has no shader-f16, f16 cases skipped');
    const imgs: Record<string, Awaited<ReturnType<typeof readPng>>> = {};
    for (const v of ['default', 'f16', 'f32']) {
      const out = join(work, `vae-${v}-16.png`);
      const r = await cli(['generate', 'a photo of a cat', '--model', model, '--out', out, '--seed', '7', '--dtype', 'f16', '--quiet', ...(v === 'default' ? [] : ['--vae-dtype', v]), ...SIZE]);
      expect(r.code, r.stderr).toBe(0);
      imgs[v] = await readPng(out);
    }
    expect(JSON.parse(imgs['default']!.text['fewstep']!)).toMatchObject({ dtype: 'f16', vaeDtype: 'f32' });
    expect(imgs['default']!.text['parameters']).toContain(', VAE dtype: f32,');
    expect(JSON.parse(imgs['f16']!.text['fewstep']!)).toMatchObject({ dtype: 'f16', vaeDtype: 'f16' });
    expect(imgs['f16']!.text['parameters']).not.toContain('VAE dtype');
    expect(Buffer.from(imgs['f32']!.data).equals(Buffer.from(imgs['default']!.data))).toBe(true);
    expect(Buffer.from(imgs['f16']!.data).equals(Buffer.from(imgs['default']!.data))).toBe(false);
  });

  it('--out-dir with 2 prompts and --batch 2: 4 files in batch order, --json summary', async () => {
    const dir = join(work, 'many');
    const r = await cli(['generate', 'a red cube', 'a blue sphere', '--batch', '2', '--model', model, '--out-dir', dir, '--seed', '11', '--json', ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    const names = ['0000-a-red-cube.png', '0001-a-red-cube.png', '0002-a-blue-sphere.png', '0003-a-blue-sphere.png'];
    expect(readdirSync(dir).sort()).toEqual(names);
    const summary = JSON.parse(r.stdout) as { files: string[]; seed: number; timings: Record<string, number>; steps: number };
    expect(summary.files).toEqual(names.map((n) => join(dir, n)));
    expect(summary.seed).toBe(11);
    expect(summary.steps).toBe(1);
    for (const k of ['tokenize', 'text_encoder', 'denoise', 'decode']) expect(summary.timings[k]).toBeGreaterThan(0);
    const imgs = await Promise.all(names.map((n) => readPng(join(dir, n))));
    expect(JSON.parse(imgs[3]!.text['fewstep']!)).toMatchObject({ prompt: 'a blue sphere', batchIndex: 3, batchSize: 4 });
    // Different noise per batch item.
    expect(Buffer.from(imgs[0]!.data).equals(Buffer.from(imgs[1]!.data))).toBe(false);
  });

  it('--latents: the same image as the pipeline given the same latents', async () => {
    const shape = [1, 4, 8, 8];
    const data = new TorchGenerator(1234).randn(shape, 'f32') as Float32Array;
    const file = join(work, 'latents.safetensors');
    writeFileSync(file, encodeSafetensors({ latents: { dtype: 'F32', shape, data } }));
    const out = join(work, 'latents.png');
    // No --width/--height: the size comes from the latents.
    const r = await cli(['generate', 'a lighthouse', '--model', model, '--out', out, '--latents', file, '--seed', '5']);
    expect(r.code, r.stderr).toBe(0);
    const got = await readPng(out);
    expect([got.width, got.height]).toEqual([64, 64]);
    expect(JSON.parse(got.text['fewstep']!).latents).toBe(file);

    const device = await gpuDevice();
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { device, io: nodeFiles });
    try {
      const ref = await pipe.generate({ prompt: 'a lighthouse', init: { kind: 'latents', latents: { data, shape } }, seed: 5 });
      expect(Buffer.from(got.data).equals(Buffer.from(ref.images[0]!.data))).toBe(true);
      // And not what the seed alone would give.
      const seeded = await pipe.generate({ prompt: 'a lighthouse', seed: 5, width: 64, height: 64 });
      expect(Buffer.from(got.data).equals(Buffer.from(seeded.images[0]!.data))).toBe(false);
    } finally {
      pipe.dispose();
    }
  });

  it('from the fake hub into the HF cache, then offline from the cache: same bytes', async () => {
    const a = join(work, 'hub-a.png'), b = join(work, 'hub-b.png');
    hub.requests = [];
    const r1 = await cli(['generate', 'a photo of a cat', '--model', 'org/tiny-sdxs', '--out', a, '--seed', '7', ...SIZE]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toContain('downloaded unet/diffusion_pytorch_model.safetensors');
    const fetched = hub.requests.filter((q) => q.method === 'GET' && q.path.includes('/resolve/')).map((q) => q.path);
    // The configs first (the request is checked against them), then the weights: model_index.json once.
    expect(fetched.filter((p) => p.endsWith('/model_index.json')).length).toBe(1);
    expect(fetched.some((p) => p.endsWith('.bin') || p.endsWith('README.md') || p.includes('vae_large'))).toBe(false);

    process.env['HF_HUB_OFFLINE'] = '1';
    try {
      hub.requests = [];
      const r2 = await cli(['generate', 'a photo of a cat', '--model', 'org/tiny-sdxs', '--out', b, '--seed', '7', ...SIZE]);
      expect(r2.code, r2.stderr).toBe(0);
      expect(hub.requests).toEqual([]);
      expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
      // Offline, a model that is not cached: one line, exit 1, no file.
      const c = join(work, 'hub-c.png');
      const r3 = await cli(['generate', 'x', '--model', 'org/other', '--out', c, ...SIZE]);
      expect(r3.code).toBe(1);
      expect(r3.stderr).toMatch(/^fewstep generate: Offline mode \(HF_HUB_OFFLINE=1\): org\/other@main is not in the cache at .*\n$/);
      expect(existsSync(c)).toBe(false);
    } finally {
      delete process.env['HF_HUB_OFFLINE'];
    }
    // The hub model and the folder give the same pixels (only the Model: metadata differs).
    const local = await readPng(join(work, 'one.png'));
    expect(Buffer.from((await readPng(a)).data).equals(Buffer.from(local.data))).toBe(true);
    expect((await readPng(a)).text['parameters']).toContain('Model: org/tiny-sdxs');
  });

  it('--vae large decodes with the AutoencoderKL in vae_large/', async () => {
    const out = join(work, 'large.png');
    const r = await cli(['generate', 'a photo of a cat', '--model', model, '--out', out, '--seed', '7', '--vae', 'large', ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    const img = await readPng(out);
    expect([img.width, img.height]).toEqual([64, 64]);
    expect(Buffer.from(img.data).equals(Buffer.from((await readPng(join(work, 'one.png'))).data))).toBe(false);
  });

  it('--lora: a local file at scale 0 changes nothing; the hub repo at scale 2 changes the image', async () => {
    const file = join(work, 'tiny_lora.safetensors');
    writeFileSync(file, tinyLoraFile());
    const zero = join(work, 'lora0.png'), two = join(work, 'lora2.png');
    const r0 = await cli(['generate', 'a photo of a cat', '--model', model, '--out', zero, '--seed', '7', '--lora', `${file}:0`, ...SIZE]);
    expect(r0.code, r0.stderr).toBe(0);
    const plain = await readPng(join(work, 'one.png'));
    expect(Buffer.from((await readPng(zero)).data).equals(Buffer.from(plain.data))).toBe(true);
    const r2 = await cli(['generate', 'a photo of a cat', '--model', model, '--out', two, '--seed', '7', '--lora', 'org/tiny-lora:2', ...SIZE]);
    expect(r2.code, r2.stderr).toBe(0);
    const img = await readPng(two);
    expect(Buffer.from(img.data).equals(Buffer.from(plain.data))).toBe(false);
    expect(img.text['parameters']).toContain('Lora: "org/tiny-lora:2"');
  });

  it('--init latent-mean: the YOSO informative init from reference latents, as the pipeline does it', async () => {
    const shape = [3, 4, 8, 8];
    const data = new TorchGenerator(77).randn(shape, 'f32') as Float32Array;
    const file = join(work, 'reference.safetensors');
    writeFileSync(file, encodeSafetensors({ latents: { dtype: 'F32', shape, data } }));
    const out = join(work, 'yoso1.png');
    const r = await cli(['generate', 'a cat', '--model', model, '--out', out, '--init', 'latent-mean', '--init-latents', file, '--scheduler', 'lcm', '--steps', '1', '--seed', '8']);
    expect(r.code, r.stderr).toBe(0);
    const got = await readPng(out);
    const device = await gpuDevice();
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { device, io: nodeFiles, scheduler: 'LCMScheduler' });
    try {
      const ref = await pipe.generate({ prompt: 'a cat', seed: 8, steps: 1, init: { kind: 'informative', reference: { latents: { data, shape } } } });
      expect(Buffer.from(got.data).equals(Buffer.from(ref.images[0]!.data))).toBe(true);
      const plain = await pipe.generate({ prompt: 'a cat', seed: 8, steps: 1, width: 64, height: 64 });
      expect(Buffer.from(got.data).equals(Buffer.from(plain.images[0]!.data))).toBe(false);
    } finally {
      pipe.dispose();
    }
  });

  it('a YOSO LoRA (by name) switches the defaults to LCM, 2 steps, guidance 1.5; flags still win', async () => {
    const file = join(work, 'yoso_tiny_lora.safetensors');
    writeFileSync(file, tinyLoraFile());
    const out = join(work, 'yoso-defaults.png');
    const r = await cli(['generate', 'a cat', '--model', model, '--out', out, '--seed', '2', '--lora', `${file}:0`, ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('YOSO LoRA: LCMScheduler, 2 steps, guidance 1.5 by default');
    expect(JSON.parse((await readPng(out)).text['fewstep']!)).toMatchObject({ steps: 2, guidance: 1.5, sampler: 'LCMScheduler' });
    const out1 = join(work, 'yoso-1step.png');
    const r1 = await cli(['generate', 'a cat', '--model', model, '--out', out1, '--seed', '2', '--lora', `${file}:0`, '--steps', '1', ...SIZE]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(JSON.parse((await readPng(out1)).text['fewstep']!)).toMatchObject({ steps: 1, guidance: 1.5 });
  });

  it('--init-image: image-to-image keeps the size', async () => {
    const out = join(work, 'i2i.png');
    const r = await cli(['generate', 'a photo of a dog', '--model', model, '--out', out, '--seed', '3', '--init-image', join(work, 'one.png'), '--strength', '1', '--steps', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('encode image ');
    const img = await readPng(out);
    expect([img.width, img.height]).toEqual([64, 64]);
    expect(JSON.parse(img.text['fewstep']!)).toMatchObject({ strength: 1, steps: 2 });
  });
});

describe('fewstep generate: images in and out, stdout, status line, cancellation', () => {
  const photo = join(work, 'photo.jpg');
  beforeAll(async () => {
    // An 84×68 JPEG (not a multiple of 8): the output becomes 80×64, the image fit by --resize (crop).
    const g = new TorchGenerator(5).randn([84 * 68 * 3], 'f32') as Float32Array;
    await sharp(Buffer.from(g.map((v) => Math.max(0, Math.min(255, 128 + 60 * v)))), { raw: { width: 84, height: 68, channels: 3 } }).jpeg().toFile(photo);
  });

  it('--init-image JPEG of another size, --out .webp: fit by --resize, the parameters in EXIF and XMP', async () => {
    const out = join(work, 'i2i.webp');
    const r = await cli(['generate', 'a photo of a dog', '--model', model, '--out', out, '-s', '3', '--init-image', photo, '--steps', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(out);
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 80, 64]);
    const xmp = meta.xmp!.toString('utf8');
    expect(xmp).toContain('a photo of a dog\nSteps: 2, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 3, Size: 80x64');
    expect(xmp).toContain('fewstep:parameters>{&quot;prompt&quot;:&quot;a photo of a dog&quot;');
    expect(meta.exif!.toString('latin1')).toContain('Steps: 2, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 3, Size: 80x64');
    // 64×64 from the same image: --resize stretch and the default crop give other pixels.
    const stretched = join(work, 'i2i-stretch.png');
    const r2 = await cli(['generate', 'a photo of a dog', '--model', model, '--out', stretched, '-s', '3', '--init-image', photo, '--steps', '2', '--resize', 'stretch', ...SIZE]);
    expect(r2.code, r2.stderr).toBe(0);
    const a = await readPng(stretched);
    expect([a.width, a.height]).toEqual([64, 64]);
    expect(JSON.parse(a.text['fewstep']!)).toMatchObject({ resize: 'stretch', initImage: photo });
    const cropped = join(work, 'i2i-crop.png');
    expect((await cli(['generate', 'a photo of a dog', '--model', model, '--out', cropped, '-s', '3', '--init-image', photo, '--steps', '2', ...SIZE])).code).toBe(0);
    expect(Buffer.from((await readPng(cropped)).data).equals(Buffer.from(a.data))).toBe(false);
  });

  it('--out-dir --format jpeg; -o - writes exactly one PNG to stdout and nothing else', async () => {
    const dir = join(work, 'jpegs');
    const r = await cli(['generate', 'a cat', '-p', 'a dog', '--model', model, '--out-dir', dir, '--format', 'jpeg', '--seed', '7', ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['0000-a-cat.jpg', '0001-a-dog.jpg']);
    expect((await sharp(join(dir, '0000-a-cat.jpg')).metadata()).format).toBe('jpeg');

    const s = await cli(['generate', 'a photo of a cat', '--model', model, '-o', '-', '--seed', '7', ...SIZE]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toBe('');
    expect(s.bytes.length).toBe(1);
    const img = await decodePng(s.bytes[0]!, 'stdout');
    expect(Buffer.from(img.data).equals(Buffer.from((await readPng(join(work, 'one.png'))).data))).toBe(true);
    expect(s.stderr).toMatch(/seed 7, 1 step, guidance 0, 64x64, [\d.]+ s\n$/);
  });

  it('--init-images a.png b.jpg: the informative init from reference images, as the pipeline does it', async () => {
    const a = join(work, 'one.png');
    const out = join(work, 'yoso-images.png');
    const r = await cli(['generate', 'a cat', '--model', model, '--out', out, '--init-images', a, photo, '--scheduler', 'lcm', '--steps', '1', '--seed', '8', ...SIZE]);
    expect(r.code, r.stderr).toBe(0);
    const got = await readPng(out);
    expect(JSON.parse(got.text['fewstep']!)).toMatchObject({ init: 'latent-mean', initImages: [a, photo] });
    const images = [await decodeImage(new Uint8Array(readFileSync(a)), a), await decodeImage(new Uint8Array(readFileSync(photo)), photo)];
    const device = await gpuDevice();
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { device, io: nodeFiles, scheduler: 'LCMScheduler' });
    try {
      const ref = await pipe.generate({ prompt: 'a cat', seed: 8, steps: 1, width: 64, height: 64, init: { kind: 'informative', reference: { images } } });
      expect(Buffer.from(got.data).equals(Buffer.from(ref.images[0]!.data))).toBe(true);
    } finally {
      pipe.dispose();
    }
  });

  it('on a terminal: a status line with the running stage and its time, no stage lines', async () => {
    const out = join(work, 'tty.png');
    const r = await cli(['generate', 'a photo of a cat', '--model', model, '--out', out, '--seed', '7', ...SIZE], true, { columns: 100 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\r\x1b\[Kload unet \d+\.\d s/);
    expect(r.stderr).toMatch(/\r\x1b\[Kdenoise step 1\/1 \d+\.\d s/);
    expect(r.stderr).not.toMatch(/^denoise step 1\/1 [\d.]+ ms$/m);
    expect(r.stderr).toContain('timings: tokenize ');
  });

  it.each([
    ['during the generation', 'text encoder '],
    ['while loading', 'load text_encoder '],
  ])('Ctrl-C %s: exit 130, one line "cancelled", no output file, no temporary file', async (_, trigger) => {
    const dir = join(work, 'cancelled'), out = join(work, 'cancelled.png');
    for (const target of [['--out-dir', dir, '--batch', '2'], ['--out', out]]) {
      const controller = new AbortController();
      const err: string[] = [];
      const io: CliIO = {
        stdout: () => {},
        stderr: (s) => {
          err.push(s);
          if (s.startsWith(trigger)) controller.abort();
        },
        isTTY: false,
        signal: controller.signal,
      };
      const code = await main(['generate', 'a cat', '--model', model, ...target, '--seed', '1', ...SIZE], io);
      expect(code, err.join('')).toBe(130);
      expect(err.at(-1)).toBe('fewstep generate: cancelled\n');
      expect(err.filter((l) => l.includes('cancelled')).length).toBe(1);
      expect(existsSync(dir)).toBe(false);
      expect(existsSync(out)).toBe(false);
      noPartials(work);
    }
  });
});

describe('fewstep batch', () => {
  it('3 TSV rows with --limit, resumed: the second run only makes the third', async () => {
    const dir = join(work, 'batch');
    const head = ['batch', '--prompts', sample, '--out-dir', dir, '--model', model, '--category', 'Food & Beverage', '--seed', '100'];
    const base = [...head, ...SIZE];
    const r1 = await cli([...base, '--limit', '2']);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stdout).toBe(`${join(dir, 'report.html')}\n`);
    const pngs = () => readdirSync(dir).filter((n) => n.endsWith('.png')).sort();
    expect(pngs()).toEqual(['0006-a-bowl-of-pho.png', '0007-a-cup-of-boba.png']);
    const lines = () => readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines().map((l) => [l['prompt'], l['category'], l['challenge'], l['seed'], l['file']])).toEqual([
      ['A bowl of Pho', 'Food & Beverage', 'Basic', 106, '0006-a-bowl-of-pho.png'],
      ['a cup of boba', 'Food & Beverage', 'Basic', 107, '0007-a-cup-of-boba.png'],
    ]);
    expect(typeof lines()[0]!['seconds']).toBe('number');
    const img = await readPng(join(dir, '0006-a-bowl-of-pho.png'));
    expect(img.text['parameters']).toContain('Seed: 106');

    const r2 = await cli([...base, '--limit', '3']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toContain('resuming: 2 of 3 prompts already done');
    expect(r2.stderr).toContain('[3/3] 0008-a-picture-of-some-food-in-the-plate.png');
    expect(pngs()).toEqual(['0006-a-bowl-of-pho.png', '0007-a-cup-of-boba.png', '0008-a-picture-of-some-food-in-the-plate.png']);
    expect(lines().length).toBe(3);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).overall.count).toBe(3);
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ model, steps: 1, guidance: 0, width: 64, height: 64, seed: 100, scheduler: 'EulerDiscreteScheduler' });
    // Progress: one line per image with the time left.
    expect(r2.stderr).toMatch(/\[3\/3\] 0008-a-picture-of-some-food-in-the-plate\.png \([\d.]+ s\)\n/);
    expect(html).toContain('Food &amp; Beverage <small>(3)</small>');
    for (const n of pngs()) expect(html).toContain(`src="${n}"`);

    // Everything done: no model load, nothing appended.
    const r3 = await cli([...base, '--limit', '3']);
    expect(r3.code).toBe(0);
    expect(r3.stderr).toContain('nothing to do: all 3 prompts are done');
    expect(r3.stderr).not.toContain('loaded');
    expect(lines().length).toBe(3);

    // Other settings into the same run folder: refused before anything is loaded.
    const r5 = await cli([...head, '--width', '128', '--height', '128', '--limit', '3']);
    expect(r5.code).toBe(2);
    expect(r5.stderr).toBe(`fewstep batch: --out-dir ${dir} holds a run with other settings (width: 64 there, 128 now; height: 64 there, 128 now); use another folder\n`);

    // A PNG deleted by hand is made again (same seed → same pixels).
    const before = readFileSync(join(dir, '0007-a-cup-of-boba.png'));
    rmSync(join(dir, '0007-a-cup-of-boba.png'));
    const r4 = await cli([...base, '--limit', '3']);
    expect(r4.code, r4.stderr).toBe(0);
    expect(Buffer.from((await readPng(join(dir, '0007-a-cup-of-boba.png'))).data).equals(Buffer.from((await decodePng(new Uint8Array(before))).data))).toBe(true);
    noPartials(dir);
  });
});

