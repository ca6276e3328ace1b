// @fewstep/models' typed errors: each failure a caller can meet is one class with a stable `code`
// (ConfigError 'invalid_config', WeightsError 'weights_mismatch', ModelFolderError 'not_a_model', and
// tensor's UnsupportedError / ShapeError / FileFormatError), with the message naming the file, key or tensor.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FewstepError, FileFormatError, ShapeError, Tensor, UnsupportedError } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  AutoencoderKL,
  CLIPTextModel,
  ConfigError,
  ModelFolderError,
  UNet2DConditionModel,
  WeightScope,
  WeightsError,
  loadComponent,
  readConfig,
  resolveUNetConfig,
} from '@fewstep/models';
import { RandomSource } from '@fewstep/models/testing';
import { closeDevice, gpuDevice } from '../helpers/gpu';

afterAll(closeDevice);

/** Runs `fn`, returns what it threw (failing when it does not throw). */
async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

// A small AutoencoderKL: one stage of 8 channels (norm groups of 4), 2 latent channels.
const TINY_KL = { block_out_channels: [8], norm_num_groups: 4, latent_channels: 2 };
const TINY_CLIP = { hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 10, max_position_embeddings: 4 };

describe('config errors', () => {
  it('malformed configs are ConfigError (invalid_config), unimplemented options UnsupportedError (unsupported)', async () => {
    const lengths = await caught(() => resolveUNetConfig({ block_out_channels: [320, 640] }));
    expect(lengths).toBeInstanceOf(ConfigError);
    expect(lengths).toMatchObject({ code: 'invalid_config', name: 'ConfigError' });
    expect((lengths as Error).message).toContain('Must provide the same number of `block_out_channels` as `down_block_types`');

    const unsupported = await caught(() => UNet2DConditionModel.describe({ class_embed_type: 'timestep' }));
    expect(unsupported).toBeInstanceOf(UnsupportedError);
    expect(unsupported).toMatchObject({ code: 'unsupported' });
    expect((unsupported as Error).message).toBe('UNet2DConditionModel: config class_embed_type = "timestep" is not supported by fewstep (only null is supported)');

    expect(await caught(() => CLIPTextModel.describe({ hidden_size: 'big' }))).toMatchObject({ code: 'invalid_config' });
    expect(await caught(() => AutoencoderKL.describe({ ...TINY_KL, up_block_types: [] }))).toBeInstanceOf(ConfigError);
  });

  it('folders: no config.json is ModelFolderError (not_a_model), a broken one FileFormatError naming it, an unknown class UnsupportedError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-errors-'));
    try {
      const none = await caught(() => readConfig(nodeFiles, dir));
      expect(none).toBeInstanceOf(ModelFolderError);
      expect(none).toMatchObject({ code: 'not_a_model', dir });
      writeFileSync(join(dir, 'config.json'), '{ nope');
      const broken = await caught(() => readConfig(nodeFiles, dir));
      expect(broken).toBeInstanceOf(FileFormatError);
      expect(broken).toMatchObject({ code: 'file_format', file: join(dir, 'config.json') });
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'UNet3DConditionModel' }));
      const unknown = await caught(() => loadComponent(nodeFiles, dir, null as never));
      expect(unknown).toBeInstanceOf(UnsupportedError);
      expect((unknown as Error).message).toContain('component class "UNet3DConditionModel" is not supported');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('weights errors', () => {
  const shapes = () => AutoencoderKL.describe(TINY_KL);

  it('a missing tensor, a wrong shape and unused keys are WeightsError (weights_mismatch) naming file and tensor; nothing stays allocated', async () => {
    const d = await gpuDevice();
    const before = d.pool.stats.inUse;

    const missing = shapes();
    missing.delete('decoder.conv_out.weight');
    const e1 = await caught(() => AutoencoderKL.fromSource(new RandomSource(missing, 0, 'tiny.safetensors'), TINY_KL, d));
    expect(e1).toBeInstanceOf(WeightsError);
    expect(e1).toMatchObject({ code: 'weights_mismatch', file: 'tiny.safetensors', tensor: 'decoder.conv_out.weight' });
    expect((e1 as Error).message).toBe('tiny.safetensors: missing tensor "decoder.conv_out.weight" (expected shape [3, 8, 3, 3])');

    const wrong = shapes();
    wrong.set('post_quant_conv.weight', [2, 2, 3, 3]);
    const e2 = await caught(() => AutoencoderKL.fromSource(new RandomSource(wrong, 0, 'tiny.safetensors'), TINY_KL, d));
    expect(e2).toMatchObject({ code: 'weights_mismatch', tensor: 'post_quant_conv.weight' });
    expect((e2 as Error).message).toBe('tiny.safetensors: tensor "post_quant_conv.weight" has shape [2, 2, 3, 3] but the model expects [2, 2, 1, 1]');

    const extra = shapes();
    extra.set('decoder.conv_out.lora.weight', [3, 8]);
    const e3 = await caught(() => AutoencoderKL.fromSource(new RandomSource(extra, 0, 'tiny.safetensors'), TINY_KL, d));
    expect(e3).toBeInstanceOf(WeightsError);
    expect((e3 as Error).message).toBe('tiny.safetensors: 1 unexpected tensor(s) not used by AutoencoderKL: "decoder.conv_out.lora.weight"');

    expect(d.pool.stats.inUse).toBe(before);
  });

  it('a model built by describe (a recording scope) has shapes but no data: using a weight is UnsupportedError', () => {
    const w = WeightScope.recording();
    const m = CLIPTextModel.build(w, TINY_CLIP);
    expect(w.shapes.get('text_model.final_layer_norm.weight')).toEqual([8]);
    expect(m.text_model.final_layer_norm.weight.shape).toEqual([8]);
    expect(() => m.device).toThrow(UnsupportedError);
    expect(() => m.device).toThrow('belongs to a model built with a recording WeightScope');
  });

  it('model inputs of the wrong shape are ShapeError (shape_mismatch)', async () => {
    const d = await gpuDevice();
    const vae = await AutoencoderKL.random(TINY_KL, d);
    const z = Tensor.empty(d, [1, 3, 4, 4]);
    try {
      const e = await caught(() => vae.decode(z));
      expect(e).toBeInstanceOf(ShapeError);
      expect(e).toMatchObject({ code: 'shape_mismatch', field: 'z' });
      expect(e).toBeInstanceOf(FewstepError);
    } finally {
      z.dispose();
      vae.dispose();
    }
  });
});
