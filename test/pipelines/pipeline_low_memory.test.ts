// Low-memory mode (fromPretrained({ lowMemory: true }), `fewstep generate --low-memory`) on the tiny SDXS-style
// model: every stage loads its component from the folder (weights streamed as its kernels run) and frees it after,
// so nothing stays on the GPU between stages — and the images, latents and float outputs are bit-exact to the resident pipeline's (text-to-image,
// CFG with several steps, image-to-image through the AutoencoderKL's sampled encode, a LoRA through the CLI).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, Tensor, UnsupportedError, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { StableDiffusionPipeline, UNet2DConditionModel, decodePng, type GenerateOptions, type ProgressEvent, type RGBImage } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { tinyLoraFile } from '../helpers/tiny_lora';
import { buildTinyModel } from '../helpers/tiny_sdxs_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-low-memory-'));
const model = buildTinyModel(join(work, 'model'));
let d: Device;

beforeAll(async () => {
  d = await gpuDevice();
});
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

function picture(w: number, h: number): RGBImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    data[i * 3] = (i * 7) % 256;
    data[i * 3 + 1] = (i >> 3) % 256;
    data[i * 3 + 2] = ((i % w) * 255) / w;
  }
  return { width: w, height: h, data };
}

const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('StableDiffusionPipeline lowMemory', () => {
  for (const vae of ['tiny', 'large'] as const) {
    it(`gives bit-exact results to the resident pipeline, with nothing left on the GPU between stages (vae ${vae})`, async () => {
      const requests: GenerateOptions[] = [
        { prompt: 'a red boat', width: 64, height: 64, seed: 3 },
        { prompt: ['a cat', 'a dog'], negativePrompt: 'blurry', guidance: 2.5, steps: 2, width: 64, height: 48, seed: 11 },
        { prompt: 'a house', init: { kind: 'image', image: picture(64, 64), strength: 0.6 }, steps: 2, width: 64, height: 64, seed: 5 },
      ];
      const resident = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, vae });
      const want = [];
      try {
        for (const r of requests) want.push(await resident.generate(r));
      } finally {
        resident.dispose();
      }
      d.pool.trim();
      const before = d.pool.stats.inUse;
      const unet = await UNet2DConditionModel.fromFolder(nodeFiles, join(model, 'unet'), d);
      const unetBytes = d.pool.stats.inUse - before;
      unet.dispose();
      expect(d.pool.stats.inUse).toBe(before);
      const pipe = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, vae, lowMemory: true });
      try {
        expect(pipe.lowMemory).toBe(true);
        // Loaded once to check, then freed: nothing stays resident.
        expect(d.pool.stats.inUse).toBe(before);
        expect(pipe.unet.config.in_channels).toBe(4); // configs stay readable
        for (const [i, r] of requests.entries()) {
          const inUse: Record<string, number> = {};
          const got = await pipe.generate({ ...r, onProgress: (e: ProgressEvent) => {
            // The prompt-embedding cache's entries stay on the GPU by design: counted apart.
            if (e.type === 'stage' && e.status === 'start') inUse[e.stage] ??= d.pool.stats.inUse - pipe.promptCache.bytes;
          } });
          expect(got.images.map((im) => bytes(im.data).toString('hex'))).toEqual(want[i]!.images.map((im) => bytes(im.data).toString('hex')));
          expect(bytes(got.latents.data).equals(bytes(want[i]!.latents.data))).toBe(true);
          expect(bytes(got.imageFloat.data).equals(bytes(want[i]!.imageFloat.data))).toBe(true);
          // Each stage starts with no weights on the GPU (small activations only): they stream from the files as the
          // kernels run (bounded memory: see the ParameterCache tests), and each stage's are gone before the next.
          expect(inUse['text_encoder']! - before).toBeLessThan(256 * 1024);
          expect(inUse['denoise']! - before).toBeLessThan(Math.min(unetBytes, 256 * 1024));
          expect(inUse['decode']! - before).toBeLessThan(256 * 1024);
          expect(d.pool.stats.inUse - pipe.promptCache.bytes).toBe(before);
        }
        // Calling a component directly between stages is refused (its weights are on disk).
        const z = Tensor.from(d, new Float32Array(4 * 8 * 8), [1, 4, 8, 8], 'f32');
        try {
          expect(() => pipe.vae.decode(z)).toThrow(/after dispose/);
        } finally {
          z.dispose();
        }
      } finally {
        pipe.dispose();
      }
      expect(d.pool.stats.inUse).toBe(before);
    });
  }

  it('promptEmbeds alone do not load the text encoder', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, lowMemory: true });
    try {
      const resident = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
      let embeds;
      try {
        const t = await resident.encodePrompt(resident.plan({ prompt: 'a tree' }));
        embeds = { data: await t.readF32(), shape: [...t.shape] };
        t.dispose();
      } finally {
        resident.dispose();
      }
      const before = d.pool.stats.inUse;
      const c = await pipe.encodePrompt(pipe.plan({ promptEmbeds: embeds, width: 64, height: 64 }));
      try {
        expect(bytes(await c.readF32()).equals(bytes(embeds.data))).toBe(true);
        // Only the embeddings were allocated (the tiny text encoder alone is ~6 MB).
        expect(d.pool.stats.inUse - before).toBeLessThan(c.byteLength + 4096);
      } finally {
        c.dispose();
      }
    } finally {
      pipe.dispose();
    }
  });

  it('refuses a lowMemory that is not a boolean, and a ControlNet without a loader', async () => {
    await expect(StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, lowMemory: 'yes' as never })).rejects.toThrow(InvalidArgumentError);
    await expect(StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles, lowMemory: 'yes' as never })).rejects.toThrow(/lowMemory must be true or false/);
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { device: d, io: nodeFiles });
    try {
      const loaders = { textEncoder: async () => pipe.textEncoder, unet: async () => pipe.unet, vae: async () => pipe.vae };
      expect(() =>
        StableDiffusionPipeline.fromComponents({
          tokenizer: pipe.tokenizer, textEncoder: pipe.textEncoder, unet: pipe.unet, vae: pipe.vae, schedulerConfig: pipe.schedulerConfig,
          controlnet: {} as never, lowMemory: loaders,
        }),
      ).toThrow(UnsupportedError);
    } finally {
      pipe.dispose();
    }
  });
});


async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

describe('fewstep generate --low-memory', () => {
  it('writes the same image as without it (with a LoRA, CFG, 2 steps)', async () => {
    const lora = join(work, 'lora.safetensors');
    writeFileSync(lora, tinyLoraFile());
    const args = ['generate', 'a photo of a cat', '--model', model, '--seed', '9', '--width', '64', '--height', '64', '--steps', '2', '--guidance', '2', '--lora', `${lora}:0.8`];
    const a = await cli([...args, '--out', join(work, 'resident.png')]);
    expect(a.code, a.stderr).toBe(0);
    const b = await cli([...args, '--low-memory', '--out', join(work, 'low.png')]);
    expect(b.code, b.stderr).toBe(0);
    const ra = await decodePng(new Uint8Array(readFileSync(join(work, 'resident.png'))), 'resident');
    const rb = await decodePng(new Uint8Array(readFileSync(join(work, 'low.png'))), 'low');
    expect(Buffer.from(rb.data).equals(Buffer.from(ra.data))).toBe(true);
    expect(new Set(ra.data).size).toBeGreaterThan(10);
  });

  it('is listed in generate --help', async () => {
    const r = await cli(['generate', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--low-memory\s+Almost no weights in memory: each stage/);
  });
});
