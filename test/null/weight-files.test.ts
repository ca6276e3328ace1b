// selectWeightFiles: the one rule for which weight files of a component folder get loaded (local
// folders, hub repos, ControlNet repos).
import { describe, expect, it } from 'vitest';
import { FewstepError } from '@fewstep/tensor';
import { selectWeightFiles } from '@fewstep/models';

const sel = (names: string[], opts: Parameters<typeof selectWeightFiles>[1] = {}) => selectWeightFiles(names, opts);
function error(f: () => unknown): FewstepError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FewstepError);
    return e as FewstepError;
  }
  throw new Error('expected an error');
}

describe('selectWeightFiles', () => {
  it('standard safetensors names, diffusers and transformers', () => {
    expect(sel(['config.json', 'diffusion_pytorch_model.safetensors'])).toEqual({ files: ['diffusion_pytorch_model.safetensors'], variant: '', format: 'safetensors' });
    expect(sel(['config.json', 'model.safetensors', 'README.md']).files).toEqual(['model.safetensors']);
  });

  it("diffusers' name over transformers' when both are there", () => {
    expect(sel(['model.safetensors', 'diffusion_pytorch_model.safetensors']).files).toEqual(['diffusion_pytorch_model.safetensors']);
    expect(sel(['pytorch_model.bin', 'diffusion_pytorch_model.bin']).files).toEqual(['diffusion_pytorch_model.bin']);
  });

  it('shards, sorted, the index file left out', () => {
    const shards = ['model-00002-of-00002.safetensors', 'model-00001-of-00002.safetensors', 'model.safetensors.index.json'];
    expect(sel(shards).files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const fp16 = ['diffusion_pytorch_model.fp16-00001-of-00002.safetensors', 'diffusion_pytorch_model.fp16-00002-of-00002.safetensors', 'diffusion_pytorch_model.safetensors'];
    expect(sel(fp16, { dtype: 'f16' })).toEqual({ files: fp16.slice(0, 2), variant: 'fp16', format: 'safetensors' });
  });

  it('fp16 for f16, plain for f32 (the default), each falling back to the other', () => {
    const both = ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors'];
    expect(sel(both, { dtype: 'f16' }).files).toEqual(['diffusion_pytorch_model.fp16.safetensors']);
    expect(sel(both, { dtype: 'f32' }).files).toEqual(['diffusion_pytorch_model.safetensors']);
    expect(sel(both).files).toEqual(['diffusion_pytorch_model.safetensors']);
    expect(sel(['model.fp16.safetensors'], { dtype: 'f32' })).toEqual({ files: ['model.fp16.safetensors'], variant: 'fp16', format: 'safetensors' });
    expect(sel(['model.safetensors'], { dtype: 'f16' })).toEqual({ files: ['model.safetensors'], variant: '', format: 'safetensors' });
  });

  it('an explicit variant comes first; a lone other variant is used', () => {
    const three = ['model.safetensors', 'model.fp16.safetensors', 'model.bf16.safetensors'];
    expect(sel(three, { variant: 'bf16' }).files).toEqual(['model.bf16.safetensors']);
    expect(sel(three, { variant: 'fp16' }).files).toEqual(['model.fp16.safetensors']);
    expect(sel(three, { variant: 'ema' }).files).toEqual(['model.safetensors']);
    expect(sel(['model.bf16.safetensors'])).toEqual({ files: ['model.bf16.safetensors'], variant: 'bf16', format: 'safetensors' });
    expect(sel(['model.bf16.safetensors', 'model.fp16.safetensors'], { dtype: 'f32' }).files).toEqual(['model.fp16.safetensors']);
    const e = error(() => sel(['model.bf16.safetensors', 'model.ema.safetensors'], { where: 'org/m: unet/' }));
    expect(e.code).toBe('not_a_model');
    expect(e.message).toBe('org/m: unet/ has several weight variants (bf16, ema) and no plain or fp16 one');
  });

  it('safetensors whenever the folder has any; without standard names every .safetensors', () => {
    expect(sel(['diffusion_pytorch_model.bin', 'diffusion_pytorch_model.safetensors']).files).toEqual(['diffusion_pytorch_model.safetensors']);
    expect(sel(['diffusion_pytorch_model.bin', 'taesd_decoder.safetensors', 'taesd_encoder.safetensors'])).toEqual({
      files: ['taesd_decoder.safetensors', 'taesd_encoder.safetensors'],
      variant: '',
      format: 'safetensors',
    });
  });

  it('.bin only without safetensors: standard names, variants and shards like safetensors', () => {
    expect(sel(['config.json', 'diffusion_pytorch_model.bin'])).toEqual({ files: ['diffusion_pytorch_model.bin'], variant: '', format: 'bin' });
    const bins = ['diffusion_pytorch_model.bin', 'diffusion_pytorch_model.fp16.bin'];
    expect(sel(bins, { dtype: 'f16' }).files).toEqual(['diffusion_pytorch_model.fp16.bin']);
    expect(sel(bins, { dtype: 'f32' }).files).toEqual(['diffusion_pytorch_model.bin']);
    const shards = ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json'];
    expect(sel(shards).files).toEqual(shards.slice(0, 2));
  });

  it('names in subfolders are ignored', () => {
    expect(sel(['sub/model.safetensors', 'model.bin', 'pytorch_model.bin']).files).toEqual(['pytorch_model.bin']);
  });

  it('one-line errors name the folder and what it has', () => {
    let e = error(() => sel(['config.json'], { where: '/m/unet' }));
    expect(e.code).toBe('not_a_model');
    expect(e.message).toBe('/m/unet has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin)');
    e = error(() => sel(['config.json', 'weights.pth', 'unet.ckpt'], { where: '/m/unet' }));
    expect(e.message).toBe(
      '/m/unet has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin); found unet.ckpt, weights.pth, which are not the names diffusers/transformers load (`fewstep convert` turns one into safetensors)',
    );
    expect(error(() => sel([])).message).toMatch(/^the folder has no weights/);
  });
});
