// `fewstep run` end to end on the golden components: build the inputs file with the Python call's
// argument names, run main(), and compare the written outputs with the golden values.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, encodeSafetensors, type TensorToWrite } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { main } from '../../packages/cli/src/main';
import type { CliIO } from '../../packages/cli/src/command';
import { AutoencoderTiny, CLIPTextModel, loadComponent } from '@fewstep/models';
import { expectClose } from '../helpers/compare';
import { closeDevice, gpuDevice } from '../helpers/gpu';
import { componentDir, goldenRoot, openGolden } from './golden';

const work = mkdtempSync(join(tmpdir(), 'fewstep-run-'));
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await closeDevice();
});

function captureIO() {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false };
  return { io, out, err };
}

/** Copies golden tensors (raw bytes, original dtype) into a new inputs file under new names. */
async function writeInputs(io: SafetensorsFile, names: Record<string, string>, file: string): Promise<string> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [to, from] of Object.entries(names)) {
    const info = io.info(from);
    tensors[to] = { dtype: info.dtype, shape: info.shape, data: await io.readBytes(from) };
  }
  const path = join(work, file);
  writeFileSync(path, encodeSafetensors(tensors));
  return path;
}

describe('fewstep run', () => {
  it('CLIPTextModel: input_ids (I64) → last_hidden_state, penultimate_hidden_state', async () => {
    const g = await openGolden('clip_text_gelu');
    const [dir, cleanup] = componentDir('clip_text_gelu');
    try {
      const inputs = await writeInputs(g.io, { input_ids: 'in.input_ids' }, 'clip_in.safetensors');
      const outPath = join(work, 'clip_out.safetensors');
      const { io, out, err } = captureIO();
      expect(await main(['run', dir, '--inputs', inputs, '--out', outPath], io), err.join('')).toBe(0);
      expect(out.join('')).toContain('last_hidden_state [4, 77, 32], penultimate_hidden_state [4, 77, 32]');
      const res = await SafetensorsFile.open(nodeFiles, outPath);
      expect([...res.tensors.keys()].sort()).toEqual(['last_hidden_state', 'penultimate_hidden_state']);
      for (const [name, ref] of [['last_hidden_state', 'out.last_hidden_state'], ['penultimate_hidden_state', 'out.penultimate_hidden_state']] as const) {
        expect(res.info(name).dtype).toBe('F32');
        expectClose((await res.read(name, 'f32')) as Float32Array, (await g.io.read(ref, 'f32')) as Float32Array, g.caseJson.outputs[ref]!.suggested, `run clip ${name}`);
      }
      await res.close();
    } finally {
      cleanup();
      await g.io.close();
    }
  });

  it('CLIPModel: input_ids, attention_mask (I64), pixel_values → embeds, poolers, logits, clip_score (golden clip_score)', async () => {
    const g = await openGolden('clip_score');
    const [dir, cleanup] = componentDir('clip_score');
    try {
      const inputs = await writeInputs(g.io, { input_ids: 'in.input_ids', attention_mask: 'in.attention_mask', pixel_values: 'in.pixel_values' }, 'clipm_in.safetensors');
      const outPath = join(work, 'clipm_out.safetensors');
      const { io, out, err } = captureIO();
      expect(await main(['run', dir, '--inputs', inputs, '--out', outPath], io), err.join('')).toBe(0);
      expect(out.join('')).toContain('image_embeds [3, 24], text_embeds [3, 24], vision_pooler_output [3, 48], text_pooler_output [3, 32], logits_per_image [3, 3], logits_per_text [3, 3], clip_score [3] (CLIPModel, f32');
      const res = await SafetensorsFile.open(nodeFiles, outPath);
      for (const name of ['image_embeds', 'text_embeds', 'vision_pooler_output', 'text_pooler_output', 'logits_per_image', 'clip_score']) {
        const ref = `out.${name}`;
        expect(res.info(name).dtype).toBe('F32');
        expectClose((await res.read(name, 'f32')) as Float32Array, (await g.io.read(ref, 'f32')) as Float32Array, g.caseJson.outputs[ref]!.suggested, `run clip ${name}`);
      }
      await res.close();

      // Images and texts in different numbers: the logits, no clip_score (it pairs image i with text i).
      const two = join(work, 'clipm_two.safetensors');
      const ids = g.io.info('in.input_ids');
      writeFileSync(two, encodeSafetensors({
        input_ids: { dtype: 'I64', shape: [2, 77], data: (await g.io.readBytes('in.input_ids')).subarray(0, 2 * 77 * 8) },
        pixel_values: { dtype: 'F32', shape: g.io.info('in.pixel_values').shape, data: await g.io.readBytes('in.pixel_values') },
      }));
      expect(ids.shape).toEqual([3, 77]);
      const { io: io2, out: out2, err: err2 } = captureIO();
      expect(await main(['run', dir, '--inputs', two, '--out', join(work, 'clipm_two_out.safetensors')], io2), err2.join('')).toBe(0);
      expect(out2.join('')).toContain('logits_per_image [3, 2], logits_per_text [2, 3] (CLIPModel');
      expect(out2.join('')).not.toContain('clip_score');

      // pixel_values of the wrong size: one line naming the tensor and the expected shape, exit 1.
      const bad = join(work, 'clipm_bad.safetensors');
      writeFileSync(bad, encodeSafetensors({
        input_ids: { dtype: 'I64', shape: ids.shape, data: await g.io.readBytes('in.input_ids') },
        pixel_values: { dtype: 'F32', shape: [1, 3, 256, 256], data: new Uint8Array(3 * 256 * 256 * 4) },
      }));
      const { io: io3, err: err3 } = captureIO();
      expect(await main(['run', dir, '--inputs', bad, '--out', join(work, 'never.safetensors')], io3)).toBe(1);
      expect(err3.join('')).toBe(`fewstep run: ${bad}: input "pixel_values" has shape [1, 3, 256, 256], but CLIPModel expects [batch, 3, 224, 224] (the image processor's pixel_values)\n`);
    } finally {
      cleanup();
      await g.io.close();
    }
  });

  it('AutoencoderTiny --method decode: z → sample; --method encode: sample → latents', async () => {
    const g = await openGolden('taesd');
    const [dir, cleanup] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
    try {
      const dec = await writeInputs(g.io, { z: 'in.latent_16x16' }, 'taesd_dec_in.safetensors');
      const decOut = join(work, 'taesd_dec_out.safetensors');
      const { io, err } = captureIO();
      expect(await main(['run', dir, '--method', 'decode', '--inputs', dec, '--out', decOut], io), err.join('')).toBe(0);
      const r1 = await SafetensorsFile.open(nodeFiles, decOut);
      expect(r1.info('sample').shape).toEqual([1, 3, 128, 128]);
      expectClose((await r1.read('sample', 'f32')) as Float32Array, (await g.io.read('out.decoded_16x16', 'f32')) as Float32Array, g.caseJson.outputs['out.decoded_16x16']!.suggested, 'run taesd decode');
      await r1.close();

      const enc = await writeInputs(g.io, { sample: 'in.image_64x64' }, 'taesd_enc_in.safetensors');
      const encOut = join(work, 'taesd_enc_out.safetensors');
      expect(await main(['run', dir, '--method=encode', '--inputs', enc, '--out', encOut], io), err.join('')).toBe(0);
      const r2 = await SafetensorsFile.open(nodeFiles, encOut);
      expectClose((await r2.read('latents', 'f32')) as Float32Array, (await g.io.read('out.encoded_64x64', 'f32')) as Float32Array, g.caseJson.outputs['out.encoded_64x64']!.suggested, 'run taesd encode');
      await r2.close();
      // Only the outputs are left: the temporary files were renamed into place.
      expect(readdirSync(work).filter((n) => n.includes('.partial'))).toEqual([]);
    } finally {
      cleanup();
      await g.io.close();
    }
  });
  it('UNet2DConditionModel: sample, timestep ([batch] or scalar I64), encoder_hidden_states → sample', async () => {
    const g = await openGolden('unet_sdxs');
    const [dir, cleanup] = componentDir('unet_sdxs', 'diffusion_pytorch_model.safetensors');
    try {
      for (const [ts, ref] of [['in.timesteps', 'out.sample'], ['in.timestep_scalar', 'out.sample_t_scalar']] as const) {
        const inputs = await writeInputs(g.io, { sample: 'in.sample', timestep: ts, encoder_hidden_states: 'in.encoder_hidden_states' }, `unet_in_${ts}.safetensors`);
        const outPath = join(work, `unet_out_${ts}.safetensors`);
        const { io, err } = captureIO();
        expect(await main(['run', dir, '--inputs', inputs, '--out', outPath], io), err.join('')).toBe(0);
        const res = await SafetensorsFile.open(nodeFiles, outPath);
        expectClose((await res.read('sample', 'f32')) as Float32Array, (await g.io.read(ref, 'f32')) as Float32Array, g.caseJson.outputs[ref]!.suggested, `run unet ${ref}`);
        await res.close();
      }
    } finally {
      cleanup();
      await g.io.close();
    }
  });

  it('UNet2DConditionModel --lora: a peft adapter folder fused at load (lora_peft golden); :0 gives the base UNet', async () => {
    const g = await openGolden('lora_peft');
    const unetDir = join(goldenRoot, 'controlnet_sketch', 'unet');
    const peft = join(goldenRoot, 'lora_peft');
    try {
      const inputs = await writeInputs(g.io, { sample: 'in.sample', timestep: 'in.timesteps', encoder_hidden_states: 'in.encoder_hidden_states' }, 'lora_in.safetensors');
      for (const [spec, ref, tol] of [
        [peft, 'out.sample_lora_fused', g.caseJson.outputs['out.sample_lora_fused']!.suggested],
        [`${peft}:0`, 'out.sample_base', { atol: 1e-5, rtol: 1e-5 }],
      ] as const) {
        const outPath = join(work, 'lora_out.safetensors');
        const { io, err } = captureIO();
        expect(await main(['run', unetDir, '--lora', spec, '--inputs', inputs, '--out', outPath], io), err.join('')).toBe(0);
        const res = await SafetensorsFile.open(nodeFiles, outPath);
        expectClose((await res.read('sample', 'f32')) as Float32Array, (await g.io.read(ref, 'f32')) as Float32Array, tol, `run unet --lora ${ref}`);
        await res.close();
      }
      // A LoRA for another architecture fails before the GPU, naming the unmatched modules.
      const yoso = join(goldenRoot, 'lora_yoso', 'lora.safetensors');
      const { io, err } = captureIO();
      expect(await main(['run', unetDir, '--lora', yoso, '--inputs', inputs, '--out', join(work, 'never.safetensors')], io)).toBe(1);
      expect(err.join('')).toMatch(/^fewstep run: .*lora\.safetensors: \d+ LoRA module\(s\) matched no weight of the unet/);
    } finally {
      await g.io.close();
    }
  });

  it('AutoencoderKL --method encode: sample → latents (the mean)', async () => {
    const g = await openGolden('vae_kl');
    const [dir, cleanup] = componentDir('vae_kl', 'diffusion_pytorch_model.safetensors');
    try {
      const inputs = await writeInputs(g.io, { sample: 'in.image_64x64' }, 'kl_in.safetensors');
      const outPath = join(work, 'kl_out.safetensors');
      const { io, err } = captureIO();
      expect(await main(['run', dir, '--method', 'encode', '--inputs', inputs, '--out', outPath], io), err.join('')).toBe(0);
      const res = await SafetensorsFile.open(nodeFiles, outPath);
      expect([...res.tensors.keys()]).toEqual(['latents']);
      const ref = 'out.encoded_mean_64x64';
      expectClose((await res.read('latents', 'f32')) as Float32Array, (await g.io.read(ref, 'f32')) as Float32Array, g.caseJson.outputs[ref]!.suggested, 'run vae_kl encode');
      await res.close();
    } finally {
      cleanup();
      await g.io.close();
    }
  });
  it('loadComponent builds the class its config names', async () => {
    const d = await gpuDevice();
    const [clipDir, c1] = componentDir('clip_text_gelu');
    const [taesdDir, c2] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
    try {
      const a = await loadComponent(nodeFiles, clipDir, d);
      expect(a).toBeInstanceOf(CLIPTextModel);
      a.dispose();
      const b = await loadComponent(nodeFiles, taesdDir, d, { dtype: 'f16' });
      expect(b).toBeInstanceOf(AutoencoderTiny);
      expect(b.dtype).toBe('f16');
      b.dispose();
    } finally {
      c1();
      c2();
    }
  });
});
