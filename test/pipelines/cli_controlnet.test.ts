// `fewstep generate --controlnet` and `fewstep run <controlnet>` end to end on a tiny DreamShaper-sketch-style
// folder built from the golden components (controlnet_sketch): the CLI's PNGs against diffusers' own images for the
// DEIS run, --invert-control against the pre-inverted image, --control-scale 0 against no ControlNet, the ControlNet
// from the fake hub (only config.json + safetensors downloaded), and `fewstep run` on the ControlNet folder against
// golden (a).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile, encodeSafetensors, type TensorToWrite } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { decodePng } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { isolateHfEnv, startFakeHub, type FakeHub } from '../helpers/fake_hub';
import { closeDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { goldenRoot, openGolden, type GoldenCase } from '../models/golden';
import { buildTinySketchModel, tinyControlNetHubFiles } from '../helpers/tiny_sketch_model';

const CASE = join(goldenRoot, 'controlnet_sketch');
const work = mkdtempSync(join(tmpdir(), 'fewstep-cli-cn-'));
const model = buildTinySketchModel(join(work, 'model'));
const controlnetDir = join(model, 'controlnet');
let restoreEnv: (() => void) | undefined;
let hub: FakeHub;
let g: GoldenCase;
let latentsFile: string;
let prompts: string[];

beforeAll(async () => {
  restoreEnv = isolateHfEnv();
  process.env['HF_HOME'] = join(work, 'hf-home');
  process.env['HF_HUB_CACHE'] = join(work, 'hf-cache');
  // An anime-style repo: a PEFT adapter shipped only as adapter_model.bin (the golden lora_peft files).
  const peft = join(goldenRoot, 'lora_peft');
  const animeFiles = ['adapter_config.json', 'adapter_model.bin'].map((f) => ({ path: f, content: readFileSync(join(peft, f)), lfs: f.endsWith('.bin') }));
  hub = await startFakeHub([
    { id: 'org/tiny-sketch', commit: 'c'.repeat(40), files: tinyControlNetHubFiles() },
    { id: 'org/tiny-anime', commit: 'a'.repeat(40), files: [...animeFiles, { path: 'README.md', content: Buffer.from('#\n') }] },
  ]);
  process.env['HF_ENDPOINT'] = hub.url;
  g = await openGolden('controlnet_sketch');
  prompts = (g.caseJson as unknown as { prompts: string[] }).prompts;
  latentsFile = join(work, 'latents.safetensors');
  const info = g.io.info('pipeline.latents_in');
  writeFileSync(latentsFile, encodeSafetensors({ latents: { dtype: 'F32', shape: info.shape, data: (await g.io.read('pipeline.latents_in', 'f32')) as Float32Array } }));
});
afterAll(async () => {
  await hub?.close();
  await g?.io.close();
  restoreEnv?.();
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

const readPng = async (p: string) => decodePng(new Uint8Array(readFileSync(p)), p);
const pixels = async (p: string) => Buffer.from((await readPng(p)).data);
const NAMES = ['0000-a-cat.png', '0001-cinematic-still-a-cat-sitting-on-a-chair-emotion.png'];

describe('fewstep generate --controlnet', () => {
  it('sketch.png --invert-control with the golden latents: diffusers\' DEIS images (±1), parameters in the PNG', async () => {
    const dir = join(work, 'deis');
    const r = await cli(['generate', ...prompts, '--model', model, '--controlnet', controlnetDir, '--control-image', join(CASE, 'sketch.png'), '--invert-control', '--latents', latentsFile, '--seed', '1', '--out-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    const ref = await g.io.readBytes('deis_1step_cfg0_taesd.image_uint8');
    const n = 128 * 128 * 3;
    for (const [b, name] of NAMES.entries()) {
      const img = await readPng(join(dir, name));
      expect([img.width, img.height]).toEqual([128, 128]);
      let off = 0;
      for (let i = 0; i < n; i++) if (Math.abs(img.data[i]! - ref[b * n + i]!) > 1) off++;
      expect(off, `${name}: pixels off by more than 1`).toBe(0);
    }
    const img = await readPng(join(dir, NAMES[0]!));
    expect(img.text['parameters']).toContain(`Sampler: DEISMultistepScheduler, CFG scale: 0, Seed: 1, Size: 128x128, Model: ${model}`);
    expect(img.text['parameters']).toContain(`ControlNet: ${controlnetDir}, Control scale: 1, Control image: ${join(CASE, 'sketch.png')}, Control inverted: true`);
    expect(JSON.parse(img.text['fewstep']!)).toMatchObject({ controlnet: controlnetDir, controlImage: join(CASE, 'sketch.png'), controlScale: 1, invertControl: true, width: 128, height: 128 });

    // The pre-inverted control_image.png without --invert-control: the same pixels.
    const dir2 = join(work, 'deis-noinvert');
    const r2 = await cli(['generate', ...prompts, '--model', model, '--controlnet', controlnetDir, '--control-image', join(CASE, 'control_image.png'), '--latents', latentsFile, '--seed', '1', '--out-dir', dir2, '--json']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout)).toMatchObject({ controlnet: controlnetDir, controlScale: 1, invertControl: false, width: 128, height: 128 });
    for (const name of NAMES) expect((await pixels(join(dir2, name))).equals(await pixels(join(dir, name)))).toBe(true);
  });

  it('--control-scale 0 gives the plain model\'s image; 0.5 another; the ControlNet from the hub gives the local pixels', async () => {
    const args = (out: string) => ['generate', 'a cat', '--model', model, '--seed', '3', '--out', out];
    const ctl = ['--control-image', join(CASE, 'control_image.png')];
    const plain = join(work, 'plain.png'), zero = join(work, 'zero.png'), half = join(work, 'half.png'), fromHub = join(work, 'hub.png'), local = join(work, 'local.png');
    // Without a control image the size is the model's (sample_size 16 × 8 = 128), the control image's too.
    for (const [out, extra] of [[plain, []], [zero, ['--controlnet', controlnetDir, ...ctl, '--control-scale', '0']], [half, ['--controlnet', controlnetDir, ...ctl, '--control-scale', '0.5']], [local, ['--controlnet', controlnetDir, ...ctl]]] as const) {
      const r = await cli([...args(out), ...extra]);
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await pixels(zero)).equals(await pixels(plain))).toBe(true);
    expect((await pixels(half)).equals(await pixels(plain))).toBe(false);
    expect((await pixels(half)).equals(await pixels(local))).toBe(false);
    expect((await readPng(half)).text['parameters']).toContain('Control scale: 0.5');

    hub.requests = [];
    const r = await cli([...args(fromHub), '--controlnet', 'org/tiny-sketch', ...ctl]);
    expect(r.code, r.stderr).toBe(0);
    const asked = new Set(hub.requests.filter((q) => q.path.includes('/resolve/')).map((q) => q.path.split('/').pop()));
    expect([...asked].sort()).toEqual(['config.json', 'diffusion_pytorch_model.safetensors']);
    expect((await pixels(fromHub)).equals(await pixels(local))).toBe(true);
    expect((await readPng(fromHub)).text['parameters']).toContain('ControlNet: org/tiny-sketch');
  });
});

describe('fewstep run <controlnet folder>', () => {
  it('sample, timestep, encoder_hidden_states, controlnet_cond → golden (a) at --control-scale 1 and 0.5', async () => {
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of ['sample', 'timestep', 'encoder_hidden_states', 'controlnet_cond']) {
      const info = g.io.info(`in.${name}`);
      tensors[name] = { dtype: info.dtype, shape: info.shape, data: await g.io.readBytes(`in.${name}`) };
    }
    const inputs = join(work, 'cn_in.safetensors');
    writeFileSync(inputs, encodeSafetensors(tensors));
    const names = [0, 1, 2, 3, 4, 5].map((i) => `down_block_res_samples.${i}`).concat('mid_block_res_sample');
    for (const [scale, prefix] of [[undefined, 'out.'], ['0.5', 'out.conditioning_scale_0.5.']] as const) {
      const outPath = join(work, `cn_out_${scale ?? 1}.safetensors`);
      const r = await cli(['run', controlnetDir, '--inputs', inputs, '--out', outPath, ...(scale ? ['--control-scale', scale] : [])]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('down_block_res_samples.0 [2, 32, 16, 16], ');
      expect(r.stdout).toContain('mid_block_res_sample [2, 64, 4, 4] (ControlNetModel, f32');
      const res = await SafetensorsFile.open(nodeFiles, outPath);
      try {
        expect([...res.tensors.keys()].sort()).toEqual([...names].sort());
        for (const n of names) {
          const spec = g.caseJson.outputs[prefix + n]!;
          expectClose((await res.read(n, 'f32')) as Float32Array, (await g.io.read(prefix + n, 'f32')) as Float32Array, spec.suggested, `run controlnet ${prefix}${n}`);
        }
      } finally {
        await res.close();
      }
    }
  });
});

describe('fewstep generate --lora <PEFT repo with adapter_model.bin>', () => {
  it('downloads adapter_config.json + adapter_model.bin and fuses them like the local safetensors adapter', async () => {
    const peftDir = join(goldenRoot, 'lora_peft'); // has both formats: safetensors win locally
    const args = (lora: string, out: string) => ['generate', ...prompts, '--model', model, '--lora', lora, '--latents', latentsFile, '--seed', '1', '--out-dir', out];
    const fromHub = join(work, 'anime-hub'), local = join(work, 'anime-local'), plain = join(work, 'anime-none');
    const r1 = await cli(args('org/tiny-anime', fromHub));
    expect(r1.code, r1.stderr).toBe(0);
    expect((await cli(args(peftDir, local))).code).toBe(0);
    expect((await cli(['generate', ...prompts, '--model', model, '--latents', latentsFile, '--seed', '1', '--out-dir', plain])).code).toBe(0);
    for (const name of NAMES) {
      expect((await pixels(join(fromHub, name))).equals(await pixels(join(local, name)))).toBe(true);
      expect((await pixels(join(fromHub, name))).equals(await pixels(join(plain, name)))).toBe(false);
    }
  });

  it('fewstep run <unet> --lora <PEFT repo>: the fused UNet of the lora_peft golden', async () => {
    const lp = await openGolden('lora_peft');
    try {
      const tensors: Record<string, TensorToWrite> = {};
      for (const [to, from] of Object.entries({ sample: 'in.sample', timestep: 'in.timesteps', encoder_hidden_states: 'in.encoder_hidden_states' })) {
        const info = lp.io.info(from);
        tensors[to] = { dtype: info.dtype, shape: info.shape, data: await lp.io.readBytes(from) };
      }
      const inputs = join(work, 'peft_in.safetensors'), out = join(work, 'peft_out.safetensors');
      writeFileSync(inputs, encodeSafetensors(tensors));
      const r = await cli(['run', join(model, 'unet'), '--lora', 'org/tiny-anime', '--inputs', inputs, '--out', out]);
      expect(r.code, r.stderr).toBe(0);
      const res = await SafetensorsFile.open(nodeFiles, out);
      expectClose((await res.read('sample', 'f32')) as Float32Array, (await lp.io.read('out.sample_lora_fused', 'f32')) as Float32Array, lp.caseJson.outputs['out.sample_lora_fused']!.suggested, 'run --lora repo');
      await res.close();
    } finally {
      await lp.io.close();
    }
  });
});
