// `fewstep run` argument and input validation: every error is one line and happens before any GPU work.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, type TensorToWrite } from '@fewstep/tensor';
import type { Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { COMPONENT_CLASSES, componentInfo, loadComponent } from '@fewstep/models';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';

const golden = new URL('../fixtures/golden/', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'fewstep-run-null-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function component(name: string, config: Record<string, unknown> | string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  if (typeof config === 'string') symlinkSync(join(golden, config, 'config.json'), join(dir, 'config.json'));
  else writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}
const taesd = component('taesd', 'taesd');
const clip = component('clip', 'clip_text_gelu');
const unet = component('unet', { _class_name: 'UNet2DConditionModel', in_channels: 4, cross_attention_dim: 1024 });
// The golden sketch ControlNet's config: cross_attention_dim 32, conditioning embedding ×8.
const controlnet = join(work, 'controlnet');
mkdirSync(controlnet);
symlinkSync(join(golden, 'controlnet_sketch', 'controlnet', 'config.json'), join(controlnet, 'config.json'));

function inputs(file: string, tensors: Record<string, { dtype?: TensorToWrite['dtype']; shape: number[] }>): string {
  const t: Record<string, TensorToWrite> = {};
  for (const [k, v] of Object.entries(tensors)) {
    const n = v.shape.reduce((a, b) => a * b, 1);
    const dtype = v.dtype ?? 'F32';
    t[k] = { dtype, shape: v.shape, data: dtype === 'I64' ? new BigInt64Array(n) : dtype === 'I32' ? new Int32Array(n) : new Float32Array(n) };
  }
  const p = join(work, file);
  writeFileSync(p, encodeSafetensors(t));
  return p;
}

async function runCli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  const code = await main(['run', ...args], io);
  return { code, stderr: err.join(''), stdout: out.join('') };
}

describe('fewstep run errors', () => {
  const outPath = join(work, 'out.safetensors');
  const z = inputs('z.safetensors', { z: { shape: [1, 4, 8, 8] } });

  it('lists the call signatures in --help', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('AutoencoderTiny / AutoencoderKL: --method decode: z → sample');
  });

  it('usage errors exit 2', async () => {
    expect(await runCli([])).toEqual({ code: 2, stdout: '', stderr: 'fewstep run: expected one component folder, got 0\n' });
    expect((await runCli([taesd, '--out', outPath])).stderr).toBe('fewstep run: --inputs <file.safetensors> is required\n');
    expect((await runCli([taesd, '--inputs', z])).stderr).toBe('fewstep run: --out <file.safetensors> is required\n');
    const r = await runCli([taesd, '--inputs', z, '--out', outPath]);
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'fewstep run: AutoencoderTiny needs --method encode or --method decode\n' });
    expect((await runCli([clip, '--method', 'decode', '--inputs', z, '--out', outPath])).stderr).toBe(
      'fewstep run: --method is only for autoencoders; CLIPTextModel has a single forward\n',
    );
    expect((await runCli([taesd, '--method', 'sideways', '--inputs', z, '--out', outPath])).stderr).toBe(
      'fewstep run: --method must be one of encode, decode, got "sideways"\n',
    );
  });

  it('a bad folder or unknown class is one line, exit 1', async () => {
    const missing = join(work, 'nope');
    expect(await runCli([missing, '--inputs', z, '--out', outPath])).toEqual({ code: 1, stdout: '', stderr: `fewstep run: ${missing}: no config.json (not a diffusers/transformers component folder)\n` });
    const odd = component('odd', { _class_name: 'VQModel' });
    expect((await runCli([odd, '--inputs', z, '--out', outPath])).stderr).toBe(
      'fewstep run: component class "VQModel" is not supported by run (supported: UNet2DConditionModel, ControlNetModel, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, CLIPModel, AutoencoderTiny, AutoencoderKL)\n',
    );
    const none = component('none', { foo: 1 });
    expect((await runCli([none, '--inputs', z, '--out', outPath])).stderr).toBe(
      `fewstep run: ${join(none, 'config.json')}: no "_class_name" (diffusers) or "architectures" (transformers) entry, so the model class is unknown\n`,
    );
  });

  it('names a missing or unexpected input tensor and lists the expected names', async () => {
    let r = await runCli([taesd, '--method', 'encode', '--inputs', z, '--out', outPath]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `fewstep run: ${z}: unexpected input tensor "z" for AutoencoderTiny encode (expected: sample)\n` });
    const partial = inputs('unet_partial.safetensors', { sample: { shape: [1, 4, 8, 8] }, timestep: { shape: [] } });
    r = await runCli([unet, '--inputs', partial, '--out', outPath]);
    expect(r.stderr).toBe(`fewstep run: ${partial}: missing input tensor "encoder_hidden_states" for UNet2DConditionModel (expected: sample, timestep, encoder_hidden_states)\n`);
    const noIds = inputs('clip_none.safetensors', {});
    r = await runCli([clip, '--inputs', noIds, '--out', outPath]);
    expect(r.stderr).toBe(`fewstep run: ${noIds}: missing input tensor "input_ids" for CLIPTextModel (expected: input_ids, attention_mask (optional))\n`);
  });

  it('checks ranks, channel counts, dtypes and batch agreement', async () => {
    const cases: [string[], Record<string, { dtype?: TensorToWrite['dtype']; shape: number[] }>, string][] = [
      [[taesd, '--method', 'decode'], { z: { shape: [4, 8, 8] } }, 'input "z" has shape [4, 8, 8], but AutoencoderTiny decode expects [batch, 4, height, width]'],
      [[taesd, '--method', 'decode'], { z: { shape: [1, 3, 8, 8] } }, 'input "z" has shape [1, 3, 8, 8], but AutoencoderTiny decode expects [batch, 4, height, width]'],
      [[taesd, '--method', 'encode'], { sample: { shape: [1, 4, 64, 64] } }, 'input "sample" has shape [1, 4, 64, 64], but AutoencoderTiny encode expects [batch, 3, height, width]'],
      [[clip], { input_ids: { shape: [77] } }, 'input "input_ids" has shape [77], but CLIPTextModel expects [batch, length ≤ 77]'],
      [[clip], { input_ids: { shape: [1, 78], dtype: 'I64' } }, 'input_ids has length 78; CLIPTextModel takes 1 to 77 tokens (max_position_embeddings)'],
      [[clip], { input_ids: { shape: [1, 77], dtype: 'F32' } }, 'input "input_ids" is F32, but CLIPTextModel expects integer ids (I64 or I32)'],
      [[clip], { input_ids: { shape: [2, 77], dtype: 'I32' }, attention_mask: { shape: [1, 77], dtype: 'I64' } }, 'attention_mask has shape [1, 77] but input_ids has [2, 77]'],
      [[unet], { sample: { shape: [2, 4, 8, 8] }, timestep: { shape: [3] }, encoder_hidden_states: { shape: [2, 77, 1024] } }, 'timestep has shape [3]; expected a scalar, [1] or [2] (the batch of sample)'],
      [[unet], { sample: { shape: [2, 4, 8, 8] }, timestep: { shape: [] }, encoder_hidden_states: { shape: [1, 77, 1024] } }, 'encoder_hidden_states has batch 1 but sample has 2'],
      [[unet], { sample: { shape: [2, 4, 8, 8] }, timestep: { shape: [1, 1] }, encoder_hidden_states: { shape: [2, 77, 1024] } }, 'input "timestep" has shape [1, 1], but UNet2DConditionModel expects a scalar (0-dim) or [batch]'],
      [[unet], { sample: { shape: [2, 4, 8, 8] }, timestep: { shape: [] }, encoder_hidden_states: { shape: [2, 77, 768] } }, 'input "encoder_hidden_states" has shape [2, 77, 768], but UNet2DConditionModel expects [batch, length, 1024]'],
    ];
    for (const [i, [args, tensors, msg]] of cases.entries()) {
      const p = inputs(`bad${i}.safetensors`, tensors);
      const r = await runCli([...args, '--inputs', p, '--out', outPath]);
      expect(r, msg).toEqual({ code: 1, stdout: '', stderr: `fewstep run: ${p}: ${msg}\n` });
    }
    expect(existsSync(outPath)).toBe(false);
  });

  it('ControlNetModel: controlnet_cond must be 8× the latent size, 3 channels, batch 1 or the batch', async () => {
    const base = { sample: { shape: [2, 4, 8, 8] }, timestep: { shape: [] }, encoder_hidden_states: { shape: [2, 77, 32] } };
    const cases: [Record<string, { dtype?: TensorToWrite['dtype']; shape: number[] }>, string][] = [
      [base, 'missing input tensor "controlnet_cond" for ControlNetModel (expected: sample, timestep, encoder_hidden_states, controlnet_cond)'],
      [{ ...base, controlnet_cond: { shape: [2, 1, 64, 64] } }, 'input "controlnet_cond" has shape [2, 1, 64, 64], but ControlNetModel expects [batch, 3, 8·height, 8·width] in [0, 1]'],
      [{ ...base, controlnet_cond: { shape: [2, 3, 32, 64] } }, 'controlnet_cond is 32x64 but sample is 8x8; the control image must be 8x the latent size (64x64)'],
      [{ ...base, controlnet_cond: { shape: [3, 3, 64, 64] } }, 'controlnet_cond has batch 3 but sample has 2'],
      [{ ...base, encoder_hidden_states: { shape: [2, 77, 768] }, controlnet_cond: { shape: [2, 3, 64, 64] } }, 'input "encoder_hidden_states" has shape [2, 77, 768], but ControlNetModel expects [batch, length, 32]'],
    ];
    for (const [i, [tensors, msg]] of cases.entries()) {
      const p = inputs(`cn_bad${i}.safetensors`, tensors);
      const r = await runCli([controlnet, '--inputs', p, '--out', outPath]);
      expect(r, msg).toEqual({ code: 1, stdout: '', stderr: `fewstep run: ${p}: ${msg}\n` });
    }
    expect(existsSync(outPath)).toBe(false);
  });

  it('--control-scale and --lora are usage errors on the wrong component or with a bad value', async () => {
    const u = inputs('unet_ok.safetensors', { sample: { shape: [1, 4, 8, 8] }, timestep: { shape: [] }, encoder_hidden_states: { shape: [1, 77, 1024] } });
    expect(await runCli([unet, '--inputs', u, '--out', outPath, '--control-scale', '0.5'])).toEqual({
      code: 2, stdout: '', stderr: `fewstep run: --control-scale is only for ControlNetModel folders, not UNet2DConditionModel (${unet})\n`,
    });
    expect((await runCli([controlnet, '--inputs', u, '--out', outPath, '--control-scale', 'strong'])).stderr).toBe('fewstep run: --control-scale must be a number, got "strong"\n');
    expect(await runCli([taesd, '--method', 'decode', '--inputs', z, '--out', outPath, '--lora', z])).toEqual({
      code: 2, stdout: '', stderr: `fewstep run: --lora is only for UNet2DConditionModel folders, not AutoencoderTiny (${taesd})\n`,
    });
    const missing = join(work, 'no-lora.safetensors');
    expect(await runCli([unet, '--inputs', u, '--out', outPath, '--lora', `${missing}:0.5`])).toEqual({
      code: 2, stdout: '', stderr: `fewstep run: --lora ${missing}: no such file or folder (nor a hub repo id org/name)\n`,
    });
    expect(existsSync(outPath)).toBe(false);
  });

  it('rejects ids outside the vocabulary', async () => {
    const p = join(work, 'oov.safetensors');
    const ids = new BigInt64Array(77);
    ids[5] = 49408n;
    writeFileSync(p, encodeSafetensors({ input_ids: { dtype: 'I64', shape: [1, 77], data: ids } }));
    const r = await runCli([clip, '--inputs', p, '--out', outPath]);
    expect(r.stderr).toBe(`fewstep run: ${p}: input_ids[0, 5] = 49408 is outside the vocabulary (0..49407)\n`);
  });

  it('a missing inputs file is one line', async () => {
    const p = join(work, 'absent.safetensors');
    const r = await runCli([taesd, '--method', 'decode', '--inputs', p, '--out', outPath]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `fewstep run: ${p}: cannot open (ENOENT)\n` });
  });
});

describe('component registry', () => {
  it('names the class from _class_name or architectures[0]', async () => {
    expect((await componentInfo(nodeFiles, taesd)).className).toBe('AutoencoderTiny');
    expect((await componentInfo(nodeFiles, clip)).className).toBe('CLIPTextModel');
    expect(COMPONENT_CLASSES).toEqual(['UNet2DConditionModel', 'ControlNetModel', 'CLIPTextModel', 'CLIPTextModelWithProjection', 'CLIPVisionModelWithProjection', 'CLIPModel', 'AutoencoderTiny', 'AutoencoderKL']);
    expect((await componentInfo(nodeFiles, controlnet)).className).toBe('ControlNetModel');
  });

  it('an unknown class names itself and the folder', async () => {
    const dir = component('proj', { architectures: ['T5EncoderModel'] });
    await expect(loadComponent(nodeFiles, dir, null as unknown as Device)).rejects.toThrow(
      `${dir}: component class "T5EncoderModel" is not supported (supported: UNet2DConditionModel, ControlNetModel, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, CLIPModel, AutoencoderTiny, AutoencoderKL)`,
    );
  });
});
