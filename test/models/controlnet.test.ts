// ControlNetModel: structure (parameter map of the golden checkpoint, the real sketch ControlNet's size), config
// errors, and the diffusers 0.25.1 golden controlnet_sketch: (a) the ControlNet alone at conditioning_scale 1.0 and
// 0.5, (b) the DreamShaper-structure UNet (no mid block) fed those residuals.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { SafetensorsFile, Tensor, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { ControlNetModel, SafetensorsSource, UNet2DConditionModel, loadComponent, resolveControlNetConfig, type ControlNetConfig } from '@fewstep/models';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose, randArray, type Tol } from '../helpers/compare';
import { goldenRoot, openGolden } from './golden';

afterAll(closeDevice);

const CASE = join(goldenRoot, 'controlnet_sketch');
const CN_DIR = join(CASE, 'controlnet');
const UNET_DIR = join(CASE, 'unet');
const cnConfig = async () => JSON.parse(await nodeFiles.readText(join(CN_DIR, 'config.json'))) as ControlNetConfig;

/** models.md §2.3: the inferred config of IDKiro/sdxs-512-dreamshaper-sketch (DreamShaper-SDXS encoder + a cross-attention mid block). */
const SKETCH: Partial<ControlNetConfig> = {
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  block_out_channels: [320, 640, 1280],
  layers_per_block: 1,
  cross_attention_dim: 768,
  attention_head_dim: 8,
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  conditioning_embedding_out_channels: [16, 32, 96, 256],
};

const OUT_NAMES = [0, 1, 2, 3, 4, 5].map((i) => `down_block_res_samples.${i}`).concat('mid_block_res_sample');

describe('ControlNetModel structure', () => {
  it('describe(golden config) is exactly the checkpoint key → shape map', async () => {
    const f = await SafetensorsFile.open(nodeFiles, join(CN_DIR, 'model.safetensors'));
    const want = new Map([...f.tensors].map(([k, info]) => [k, info.shape]));
    await f.close();
    const got = ControlNetModel.describe(await cnConfig());
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, s] of got) expect(s, k).toEqual(want.get(k));
  });

  it('the inferred sdxs-512-dreamshaper-sketch config has 186,551,440 parameters (746 MB fp32, models.md §2.3)', () => {
    expect(ControlNetModel.parameterCount(SKETCH)).toBe(186_551_440);
    const p = ControlNetModel.describe(SKETCH);
    expect(p.get('controlnet_cond_embedding.blocks.5.weight')).toEqual([256, 96, 3, 3]);
    expect(p.get('controlnet_cond_embedding.conv_out.weight')).toEqual([320, 256, 3, 3]);
    expect(p.get('controlnet_down_blocks.5.weight')).toEqual([1280, 1280, 1, 1]);
    expect(p.has('controlnet_down_blocks.6.weight')).toBe(false);
    expect(p.get('mid_block.attentions.0.proj_in.weight')).toEqual([1280, 1280, 1, 1]);
    // diffusers' defaults (SD1.5 ControlNets): 4 blocks × 2 layers → 12 zero convs.
    expect(ControlNetModel.describe({}).has('controlnet_down_blocks.11.weight')).toBe(true);
  });

  it('mid_block_type UNetMidBlock2D is one resnet without attention (num_layers 0)', () => {
    const p = ControlNetModel.describe({ ...SKETCH, mid_block_type: 'UNetMidBlock2D' });
    const mid = [...p.keys()].filter((k) => k.startsWith('mid_block.'));
    expect(mid.every((k) => k.startsWith('mid_block.resnets.0.'))).toBe(true);
    expect(mid.length).toBe(10);
  });

  it('num_attention_heads wins over attention_head_dim (unlike the UNet, ControlNetModel accepts it)', () => {
    expect(resolveControlNetConfig({ ...SKETCH, num_attention_heads: [4, 5, 10] }).numAttentionHeads).toEqual([4, 5, 10]);
    expect(resolveControlNetConfig(SKETCH).numAttentionHeads).toEqual([8, 8, 8]);
  });

  it('rejects unsupported configs naming the key', () => {
    const bad: [Partial<ControlNetConfig>, string][] = [
      [{ ...SKETCH, global_pool_conditions: true }, 'global_pool_conditions'],
      [{ ...SKETCH, class_embed_type: 'timestep' }, 'class_embed_type'],
      [{ ...SKETCH, addition_embed_type: 'text_time' }, 'addition_embed_type'],
      [{ ...SKETCH, encoder_hid_dim: 1024 }, 'encoder_hid_dim'],
      [{ ...SKETCH, mid_block_type: null }, 'mid_block_type'],
      [{ ...SKETCH, controlnet_conditioning_channel_order: 'rbg' }, 'controlnet_conditioning_channel_order'],
      [{ ...SKETCH, conditioning_embedding_out_channels: [] }, 'conditioning_embedding_out_channels'],
      [{ ...SKETCH, resnet_time_scale_shift: 'scale_shift' }, 'resnet_time_scale_shift'],
      [{ ...SKETCH, block_out_channels: [320, 640] }, 'block_out_channels'],
      [{ ...SKETCH, down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'AttnDownBlock2D'] }, 'AttnDownBlock2D'],
    ];
    for (const [cfg, key] of bad) expect(() => ControlNetModel.describe(cfg), key).toThrow(key);
  });
});

async function loadF32(d: Device, io: SafetensorsFile, key: string): Promise<Tensor> {
  return Tensor.from(d, (await io.read(key, 'f32')) as Float32Array, io.info(key).shape, 'f32');
}

describe('ControlNetModel golden controlnet_sketch', () => {
  it('(a) ControlNet alone: 6 down residuals + mid residual at conditioning_scale 1.0 and 0.5 (f32)', async () => {
    const d = await gpuDevice();
    const g = await openGolden('controlnet_sketch');
    // Through the registry: config.json's _class_name picks the class.
    const model = await loadComponent(nodeFiles, CN_DIR, d);
    expect(model).toBeInstanceOf(ControlNetModel);
    const cn = model as ControlNetModel;
    const report: string[] = [];
    try {
      const [sample, ts, ctx, cond] = await Promise.all(['in.sample', 'in.timestep', 'in.encoder_hidden_states', 'in.controlnet_cond'].map((k) => loadF32(d, g.io, k)));
      for (const [s, prefix] of [[1, 'out.'], [0.5, 'out.conditioning_scale_0.5.']] as const) {
        const res = cn.forward(sample!, ts!, ctx!, cond!, { conditioningScale: s });
        expect(res.downBlockResSamples.length).toBe(6);
        const outs = [...res.downBlockResSamples, res.midBlockResSample];
        for (const [i, name] of OUT_NAMES.entries()) {
          const key = prefix + name;
          const spec = g.caseJson.outputs[key]!;
          expect(outs[i]!.shape, key).toEqual(spec.shape);
          const c = expectClose(await outs[i]!.readF32(), (await g.io.read(key, 'f32')) as Float32Array, spec.suggested, `controlnet ${key}`);
          report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${spec.suggested.atol.toExponential(2)})`);
        }
        for (const t of outs) t.dispose();
      }
      for (const t of [sample, ts, ctx, cond]) t!.dispose();
    } finally {
      cn.dispose();
      await g.io.close();
    }
    console.log(report.join('\n'));
  });

  it('(b) UNet (no mid block) fed the residuals: the mid residual is still added (f32)', async () => {
    const d = await gpuDevice();
    const g = await openGolden('controlnet_sketch');
    const unet = await UNet2DConditionModel.fromFolder(nodeFiles, UNET_DIR, d);
    const report: string[] = [];
    try {
      expect(unet.mid_block).toBeNull();
      const [sample, ts, ctx] = await Promise.all(['in.sample', 'in.timestep', 'in.encoder_hidden_states'].map((k) => loadF32(d, g.io, k)));
      const residuals = async (prefix: string) => Promise.all(OUT_NAMES.map((n) => loadF32(d, g.io, prefix + n)));
      const runs: [string, Tensor[] | null][] = [
        ['out.unet_sample_with_residuals', await residuals('out.')],
        ['out.unet_sample_with_residuals_scale_0.5', await residuals('out.conditioning_scale_0.5.')],
        ['out.unet_sample_without_residuals', null],
      ];
      for (const [key, res] of runs) {
        const y = res ? unet.forward(sample!, ts!, ctx!, { downBlockAdditionalResiduals: res.slice(0, 6), midBlockAdditionalResidual: res[6]! }) : unet.forward(sample!, ts!, ctx!);
        const spec = g.caseJson.outputs[key]!;
        const c = expectClose(await y.readF32(), (await g.io.read(key, 'f32')) as Float32Array, spec.suggested, `unet ${key}`);
        report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${spec.suggested.atol.toExponential(2)})`);
        y.dispose();
        res?.forEach((t) => t.dispose());
      }
      for (const t of [sample, ts, ctx]) t!.dispose();
    } finally {
      unet.dispose();
      await g.io.close();
    }
    console.log(report.join('\n'));
  });

  it('f16 weights and activations stay close to the f32 golden', async () => {
    const d = await gpuDevice();
    if (!d.features.f16) return console.log('controlnet f16: adapter has no shader-f16, skipped');
    const g = await openGolden('controlnet_sketch');
    const cn = await ControlNetModel.fromFolder(nodeFiles, CN_DIR, d, { dtype: 'f16' });
    try {
      const [sample, ts, ctx, cond] = await Promise.all(['in.sample', 'in.timestep', 'in.encoder_hidden_states', 'in.controlnet_cond'].map((k) => loadF32(d, g.io, k)));
      const res = cn.forward(sample!, ts!, ctx!, cond!);
      // Residuals of magnitude ≤ 3.6 after ~20 convs/linears in f16 (f32 accumulation): ~1e-2 absolute.
      const tol: Tol = { atol: 3e-2, rtol: 1e-2 };
      for (const [i, t] of [...res.downBlockResSamples, res.midBlockResSample].entries()) {
        expect(t.dtype).toBe('f16');
        expectClose(await t.readF32(), (await g.io.read(`out.${OUT_NAMES[i]}`, 'f32')) as Float32Array, tol, `controlnet f16 ${OUT_NAMES[i]}`);
        t.dispose();
      }
      for (const t of [sample, ts, ctx, cond]) t!.dispose();
    } finally {
      cn.dispose();
      await g.io.close();
    }
  });

  it('mid_block_type UNetMidBlock2D (random weights): forward gives the residual shapes, scale multiplies', async () => {
    const d = await gpuDevice();
    const cfg: Partial<ControlNetConfig> = { block_out_channels: [16, 32], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], layers_per_block: 2, cross_attention_dim: 24, norm_num_groups: 8, attention_head_dim: 4, mid_block_type: 'UNetMidBlock2D', conditioning_embedding_out_channels: [8, 16] };
    const cn = await ControlNetModel.random(cfg, d, { seed: 3 });
    try {
      expect(cn.mid_block.resnets.length).toBe(1);
      expect(cn.conditioningScaleFactor).toBe(2);
      const sample = Tensor.from(d, randArray(2 * 4 * 6 * 6, 1), [2, 4, 6, 6]);
      const ctx = Tensor.from(d, randArray(2 * 5 * 24, 2), [2, 5, 24]);
      const cond = Tensor.from(d, randArray(3 * 12 * 12, 3, 0, 1), [1, 3, 12, 12]);
      const a = cn.forward(sample, [10, 900], ctx, cond);
      const b = cn.forward(sample, [10, 900], ctx, cond, { conditioningScale: -2 });
      expect(a.downBlockResSamples.map((t) => t.shape)).toEqual([[2, 16, 6, 6], [2, 16, 6, 6], [2, 16, 6, 6], [2, 16, 3, 3], [2, 32, 3, 3], [2, 32, 3, 3]]);
      expect(a.midBlockResSample.shape).toEqual([2, 32, 3, 3]);
      const [ma, mb] = [await a.midBlockResSample.readF32(), await b.midBlockResSample.readF32()];
      expectClose(mb, ma.map((v) => -2 * v), { atol: 1e-6, rtol: 1e-6 }, 'conditioning_scale -2');
    } finally {
      cn.dispose();
    }
  });

  it("controlnet_conditioning_channel_order 'bgr' flips the control image's channels; bad shapes are one clear error", async () => {
    const d = await gpuDevice();
    const config = await cnConfig();
    const src = await SafetensorsSource.open(nodeFiles, [join(CN_DIR, 'model.safetensors')]);
    const rgb = await ControlNetModel.fromSource(src, config, d);
    const bgr = await ControlNetModel.fromSource(src, { ...config, controlnet_conditioning_channel_order: 'bgr' }, d);
    await src.close();
    try {
      const hw = 64 * 64;
      const cond = randArray(3 * hw, 3, 0, 1);
      const flipped = new Float32Array(3 * hw);
      for (let c = 0; c < 3; c++) flipped.set(cond.subarray(c * hw, (c + 1) * hw), (2 - c) * hw);
      const sample = Tensor.from(d, randArray(4 * 8 * 8, 4), [1, 4, 8, 8]);
      const ctx = Tensor.from(d, randArray(77 * 32, 5), [1, 77, 32]);
      const a = rgb.forward(sample, 500, ctx, Tensor.from(d, cond, [1, 3, 64, 64]));
      const b = bgr.forward(sample, 500, ctx, Tensor.from(d, flipped, [1, 3, 64, 64]));
      expect(a.downBlockResSamples.map((t) => t.shape)).toEqual([[1, 32, 8, 8], [1, 32, 8, 8], [1, 32, 4, 4], [1, 64, 4, 4], [1, 64, 2, 2], [1, 64, 2, 2]]);
      for (const [x, y] of [[a.midBlockResSample, b.midBlockResSample], [a.downBlockResSamples[0]!, b.downBlockResSamples[0]!]] as const) {
        expectClose(await y.readF32(), await x.readF32(), { atol: 1e-6, rtol: 0 }, 'bgr vs flipped rgb');
      }
      const wrong = Tensor.from(d, new Float32Array(3 * 32 * 32), [1, 3, 32, 32]);
      expect(() => rgb.forward(sample, 500, ctx, wrong)).toThrow('controlnet_cond is 32×32 but the sample is 8×8; the control image must be 8× the latent size (64×64)');
      const gray = Tensor.from(d, new Float32Array(64 * 64), [1, 1, 64, 64]);
      expect(() => rgb.forward(sample, 500, ctx, gray)).toThrow('controlnet_cond must be [1, 3, H, W]');
    } finally {
      rgb.dispose();
      bgr.dispose();
    }
  });
});
