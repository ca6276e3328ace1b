// `fewstep generate --controlnet …` flag and input validation without a GPU: each mistake is one line naming the
// flag, exit 2, before any model is loaded or file written; and the PNG parameters of a ControlNet run.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng, parametersText, type GenerationInfo } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { buildTinySketchModel } from '../helpers/tiny_sketch_model';

const work = mkdtempSync(join(tmpdir(), 'fewstep-cn-null-'));
const savedOffline = process.env['HF_HUB_OFFLINE'];
beforeAll(() => {
  process.env['HF_HUB_OFFLINE'] = '1'; // nothing here may touch the network
});
afterAll(() => {
  if (savedOffline === undefined) delete process.env['HF_HUB_OFFLINE'];
  else process.env['HF_HUB_OFFLINE'] = savedOffline;
  rmSync(work, { recursive: true, force: true });
});

const model = buildTinySketchModel(join(work, 'model'));
const cn = join(model, 'controlnet');
const outDir = join(work, 'out');
mkdirSync(outDir);
const png = join(outDir, 'x.png');
const notPng = join(work, 'not-a-png.png');
writeFileSync(notPng, 'hello, not a png');
const sketch = join(work, 'sketch.png');
const odd = join(work, 'odd.png');
const emptyDir = join(work, 'empty');
mkdirSync(emptyDir);

beforeAll(async () => {
  writeFileSync(sketch, await encodePng({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(255) }));
  writeFileSync(odd, await encodePng({ width: 3, height: 5, data: new Uint8Array(3 * 5 * 3) }));
});

async function expectGenError(args: string[], message: string, code = 2) {
  const before = readdirSync(outDir).sort();
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const got = await main(['generate', 'a cat', '--model', model, '--out', png, ...args], io);
  expect(err.join('')).toBe(`fewstep generate: ${message}\n`);
  expect(got).toBe(code);
  expect(out.join('')).toBe('');
  expect(readdirSync(outDir).sort()).toEqual(before);
}

describe('fewstep generate --controlnet: flag errors (exit 2, one line, no file)', () => {
  it.each([
    [['--control-image', () => sketch], '--control-image needs --controlnet <id|dir>'],
    [['--control-scale', '0.5'], '--control-scale needs --controlnet <id|dir>'],
    [['--invert-control'], '--invert-control needs --controlnet <id|dir>'],
    [['--controlnet', () => cn], '--controlnet needs --control-image <image>'],
    [['--controlnet', () => cn, '--control-image', () => sketch, '--control-scale', '-1'], '--control-scale must be a finite number ≥ 0, got -1'],
    [['--controlnet', () => cn, '--control-image', () => sketch, '--control-scale', 'strong'], '--control-scale must be a number, got "strong"'],
    [['--controlnet', () => cn, '--control-image', () => sketch, '--invert-control=maybe'], '--invert-control takes no value'],
    [['--controlnet', () => cn, '--control-image', () => sketch, '--init-image', () => sketch], '--controlnet: a control image with an init image (ControlNet image-to-image) is not supported'],
    [['--controlnet', () => join(work, 'nope'), '--control-image', () => sketch], () => `--controlnet ${join(work, 'nope')}: folder not found`],
    [['--controlnet', () => emptyDir, '--control-image', () => sketch], () => `--controlnet ${emptyDir}: not a ControlNet folder (no config.json)`],
    [['--controlnet', () => sketch, '--control-image', () => sketch], () => `--controlnet ${sketch}: is a file; give the ControlNet folder (config.json + weights) or a hub repo id`],
    [['--controlnet', () => join(model, 'unet'), '--control-image', () => sketch], () => `--controlnet ${join(model, 'unet')}: config.json names "UNet2DConditionModel", not a ControlNetModel`],
    [['--controlnet', () => cn, '--control-image', () => join(work, 'missing.png')], () => `--control-image ${join(work, 'missing.png')}: file not found`],
    [['--controlnet', () => cn, '--control-image', () => emptyDir], () => `--control-image ${emptyDir}: is a folder, not an image file`],
    [['--controlnet', () => cn, '--control-image', () => notPng], () => `--control-image ${notPng}: not a PNG, JPEG or WebP image`],
    // Another size than the output is fit (--resize), not refused; too small to give even one latent pixel is.
    [['--controlnet', () => cn, '--control-image', () => odd], () => `--control-image ${odd}: is 3×5, smaller than 8×8; pass width and height to scale it up`],
  ] as [(string | (() => string))[], string | (() => string)][])('%#: %j', async (args, message) => {
    const v = (x: string | (() => string)) => (typeof x === 'function' ? x() : x);
    await expectGenError(args.map(v), v(message));
  });

  it('a hub ControlNet that is not cached, offline: one line, exit 1', async () => {
    const out: string[] = [], err: string[] = [];
    const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
    process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
    try {
      const code = await main(['generate', 'a cat', '--model', model, '--out', png, '--controlnet', 'acme/sketch-cn', '--control-image', sketch], io);
      expect(code).toBe(1);
      expect(err.join('')).toMatch(/^fewstep generate: Offline mode \(HF_HUB_OFFLINE=1\): acme\/sketch-cn@main is not in the cache at .*\n$/);
    } finally {
      delete process.env['HF_HUB_CACHE'];
    }
  });

  it('--help lists the ControlNet flags', async () => {
    const out: string[] = [];
    const io: CliIO = { stdout: (s) => void out.push(s), stderr: () => {}, isTTY: false };
    expect(await main(['generate', '--help'], io)).toBe(0);
    for (const f of ['--controlnet', '--control-image', '--control-scale', '--invert-control']) expect(out.join('')).toContain(f);
  });
});

describe('PNG parameters of a ControlNet run', () => {
  it('ControlNet, scale, image and inversion follow the LoRA field', () => {
    const g: GenerationInfo = {
      prompt: 'a cat', negativePrompt: '', steps: 1, sampler: 'DEISMultistepScheduler', guidance: 0, seed: 5, width: 512, height: 512,
      model: 'IDKiro/sdxs-512-dreamshaper', dtype: 'f32', batchIndex: 0, batchSize: 1, version: '0.1.0',
      controlnet: 'IDKiro/sdxs-512-dreamshaper-sketch', controlImage: 'sketch.png', controlScale: 0.8, invertControl: true,
    };
    expect(parametersText(g)).toBe(
      'a cat\nSteps: 1, Sampler: DEISMultistepScheduler, CFG scale: 0, Seed: 5, Size: 512x512, Model: IDKiro/sdxs-512-dreamshaper, ' +
        'ControlNet: IDKiro/sdxs-512-dreamshaper-sketch, Control scale: 0.8, Control image: sketch.png, Control inverted: true, Version: fewstep 0.1.0',
    );
    expect(parametersText({ ...g, invertControl: false })).not.toContain('Control inverted');
  });
});
