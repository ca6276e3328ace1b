// UNet2DConditionModel: structure (parameter maps of real configs, checked against golden checkpoints),
// config errors, and diffusers 0.25.1 goldens (SDXS-0.9 and SD1.5 block structures at reduced width).
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { SafetensorsFile, Tensor, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose, randArray, type Tol } from '../helpers/compare';
import { componentDir, goldenRoot, openGolden } from './golden';
import { UNet2DConditionModel, resolveUNetConfig, unet2DConditionConfig, type UNet2DConditionConfig } from '@fewstep/models';
import { RandomSource, SD15, SD21_BASE, SDXS_09, SDXS_DREAMSHAPER } from '@fewstep/models/testing';

afterAll(closeDevice);

const goldenConfig = async (name: string) => JSON.parse(await nodeFiles.readText(join(goldenRoot, name, 'config.json'))) as Record<string, unknown>;

describe('UNet2DConditionModel structure', () => {
  it('parameter counts of the real configs match diffusers (models.md §1.2, §2.1, §4)', () => {
    expect(UNet2DConditionModel.parameterCount(SDXS_09)).toBe(328_177_284);
    expect(UNet2DConditionModel.parameterCount(SD15)).toBe(859_520_964);
    expect(UNet2DConditionModel.parameterCount(SD21_BASE)).toBe(865_910_724);
    expect(UNet2DConditionModel.parameterCount(SDXS_DREAMSHAPER)).toBe(315_746_244);
  });

  it('SDXS-0.9: only_cross_attention stages take text-width K/V in attn1, 8 heads everywhere', () => {
    const p = UNet2DConditionModel.describe(SDXS_09);
    expect(p.get('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight')).toEqual([320, 1024]);
    expect(p.get('up_blocks.2.attentions.1.transformer_blocks.0.attn1.to_k.weight')).toEqual([320, 1024]);
    expect(p.get('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight')).toEqual([640, 640]);
    expect(p.get('down_blocks.0.attentions.0.proj_in.weight')).toEqual([320, 320]);
    expect(p.get('down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight')).toEqual([2560, 320]);
    expect([...p.keys()].some((k) => k.startsWith('mid_block.'))).toBe(false);
    expect(resolveUNetConfig(SDXS_09).numAttentionHeads).toEqual([8, 8, 8]);
  });

  for (const name of ['unet_sdxs', 'unet_sd15']) {
    it(`describe(${name} config) is exactly the checkpoint's key → shape map`, async () => {
      const f = await SafetensorsFile.open(nodeFiles, join(goldenRoot, name, 'model.safetensors'));
      const want = new Map([...f.tensors].map(([k, info]) => [k, info.shape]));
      await f.close();
      const got = UNet2DConditionModel.describe(await goldenConfig(name));
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [k, s] of got) expect(s, k).toEqual(want.get(k));
    });
  }

  it('rejects unsupported configs naming the key', () => {
    const bad: [UNet2DConditionConfig, string][] = [
      [{ ...SD15, addition_embed_type: 'text_time' }, 'addition_embed_type'],
      [{ ...SD15, class_embed_type: 'timestep' }, 'class_embed_type'],
      [{ ...SD15, time_cond_proj_dim: 256 }, 'time_cond_proj_dim'],
      [{ ...SD15, attention_type: 'gated' }, 'attention_type'],
      [{ ...SD15, dual_cross_attention: true }, 'dual_cross_attention'],
      [{ ...SD15, num_attention_heads: 8 }, 'num_attention_heads'],
      [{ ...SD15, mid_block_type: 'UNetMidBlock2DSimpleCrossAttn' }, 'mid_block_type'],
      [{ ...SD15, down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'AttnDownBlock2D'] }, 'AttnDownBlock2D'],
      [{ ...SD15, block_out_channels: [320, 640] }, 'block_out_channels'],
    ];
    for (const [cfg, key] of bad) expect(() => UNet2DConditionModel.describe(cfg), key).toThrow(key);
  });

  it('config convention: config = config.json keys with diffusers defaults (extras kept, frozen); resolvedConfig per block', async () => {
    const json = await goldenConfig('unet_sdxs');
    const c = unet2DConditionConfig(json);
    expect(c._class_name).toBe(json['_class_name']);
    expect(c.mid_block_type).toBeNull();
    expect(unet2DConditionConfig({}).up_block_types).toEqual(['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
    expect(unet2DConditionConfig({}).sample_size).toBeNull();
    expect(Object.isFrozen(c)).toBe(true);
    const r = resolveUNetConfig({ layers_per_block: 1, cross_attention_dim: 768 });
    expect([r.layersPerBlock, r.crossAttentionDim, r.timeEmbedDim]).toEqual([[1, 1, 1, 1], [768, 768, 768, 768], 1280]);
    expect(SD15.in_channels).toBe(4);
  });

  it('RandomSource is deterministic per (seed, key) and uses fan-in ranges', async () => {
    const shapes = UNet2DConditionModel.describe(SDXS_09);
    const a = new RandomSource(shapes, 1), b = new RandomSource(shapes, 1), c = new RandomSource(shapes, 2);
    const k = 'down_blocks.1.resnets.0.conv1.weight';
    const va = (await a.read(k, 'f32')) as Float32Array;
    const vb = (await b.read(k, 'f32')) as Float32Array, vc = (await c.read(k, 'f32')) as Float32Array;
    expect(va.every((v, i) => v === vb[i])).toBe(true);
    expect(va.some((v, i) => v !== vc[i])).toBe(true);
    const bound = 1 / Math.sqrt(320 * 9);
    expect(va.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(bound);
    const nw = (await a.read('conv_norm_out.weight', 'f32')) as Float32Array;
    expect(Math.min(...nw)).toBeGreaterThanOrEqual(0.9);
  });
});

/** Runs both golden calls (per-item f32 timesteps, and the int scalar timestep) and compares. */
async function runGolden(d: Device, name: string, dtype: 'f32' | 'f16', tolFor: (suggested: Tol) => Tol) {
  const g = await openGolden(name);
  const [dir, cleanup] = componentDir(name, 'diffusion_pytorch_model.safetensors');
  const model = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d, { dtype });
  cleanup();
  expect(model.config).toEqual(unet2DConditionConfig(JSON.parse(await nodeFiles.readText(join(goldenRoot, name, 'config.json')))));
  expect(model.resolvedConfig).toEqual(resolveUNetConfig(model.config));
  const load = async (k: string) => Tensor.from(d, (await g.io.read(k, 'f32')) as Float32Array, g.io.info(k).shape, 'f32');
  const report: string[] = [];
  try {
    const sample = await load('in.sample');
    const ctx = await load('in.encoder_hidden_states');
    const ts = await load('in.timesteps');
    const scalar = (await g.io.read('in.timestep_scalar', 'i32'))[0]!;
    for (const [key, spec] of Object.entries(g.caseJson.outputs)) {
      const y = key === 'out.sample' ? model.forward(sample, ts, ctx) : model.forward(sample, scalar, ctx);
      expect(y.shape).toEqual(spec.shape);
      expect(y.dtype).toBe(dtype);
      const got = await y.readF32();
      y.dispose();
      const tol = tolFor(spec.suggested);
      const c = expectClose(got, (await g.io.read(key, 'f32')) as Float32Array, tol, `${name} ${dtype} ${key}`);
      report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${tol.atol.toExponential(2)}, rtol ${tol.rtol.toExponential(2)})`);
    }
    for (const t of [sample, ctx, ts]) t.dispose();
  } finally {
    model.dispose();
    await g.io.close();
  }
  console.log(`${name} ${dtype}\n  ${report.join('\n  ')}`);
}

/** f32: case.json's `suggested` as is (10× PyTorch's own f32-vs-f64 error). */
const F32_TOL = (s: Tol): Tol => s;
/**
 * f16 weights and activations (f32 accumulation, f32 timestep embedding) through ~40 convs/linears and
 * 10 transformer blocks, outputs of magnitude ≤ 1.7: measured max abs error vs the f32 reference is
 * ~2.3e-3 (lavapipe); 1e-2 + 1e-2·|ref| leaves ~4× headroom.
 */
const F16_TOL: Tol = { atol: 1e-2, rtol: 1e-2 };

describe('UNet2DConditionModel goldens', () => {
  it('unet_sdxs (SDXS-0.9 structure: no mid block, only_cross_attention [T,F,F], linear proj) f32', async () => {
    await runGolden(await gpuDevice(), 'unet_sdxs', 'f32', F32_TOL);
  });

  it('unet_sd15 (SD1.5 structure: mid block, conv proj, DownBlock2D/UpBlock2D) f32', async () => {
    await runGolden(await gpuDevice(), 'unet_sd15', 'f32', F32_TOL);
  });

  it('unet_sdxs f16', async () => {
    const d = await gpuDevice();
    if (!d.features.f16) return console.log('unet_sdxs f16: adapter has no shader-f16, skipped');
    await runGolden(d, 'unet_sdxs', 'f16', () => F16_TOL);
  });

  it('odd latent sizes forward upsample sizes; ControlNet residuals add to the skips and mid output', async () => {
    const d = await gpuDevice();
    const [dir, cleanup] = componentDir('unet_sdxs', 'diffusion_pytorch_model.safetensors');
    const model = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d);
    cleanup();
    try {
      const ctx = Tensor.from(d, randArray(77 * 32, 5), [1, 77, 32]);
      // 9×7: the down path gives 9→5→3 and 7→4→2; the up path must return to 5×4 then 9×7.
      const odd = Tensor.from(d, randArray(4 * 9 * 7, 3), [1, 4, 9, 7]);
      const y = model.forward(odd, 500, ctx);
      expect(y.shape).toEqual([1, 4, 9, 7]);
      const yv = await y.readF32();
      expect(yv.every(Number.isFinite)).toBe(true);

      // Zero residuals change nothing; a constant mid residual (no mid block here) changes the output.
      const skipShapes = [[1, 32, 9, 7], [1, 32, 9, 7], [1, 32, 5, 4], [1, 64, 5, 4], [1, 64, 3, 2], [1, 64, 3, 2]];
      const zeros = skipShapes.map((s) => Tensor.from(d, new Float32Array(s.reduce((a, b) => a * b, 1)), s));
      const zmid = Tensor.from(d, new Float32Array(64 * 3 * 2), [1, 64, 3, 2]);
      const y0 = model.forward(odd, 500, ctx, { downBlockAdditionalResiduals: zeros, midBlockAdditionalResidual: zmid });
      expectClose(await y0.readF32(), yv, { atol: 1e-6, rtol: 0 }, 'zero ControlNet residuals');
      const mid = Tensor.from(d, new Float32Array(64 * 3 * 2).fill(0.5), [1, 64, 3, 2]);
      const y1 = model.forward(odd, 500, ctx, { downBlockAdditionalResiduals: zeros, midBlockAdditionalResidual: mid });
      const v1 = await y1.readF32();
      expect(Math.max(...v1.map((v, i) => Math.abs(v - yv[i]!)))).toBeGreaterThan(1e-3);
      expect(() => model.forward(odd, 500, ctx, { midBlockAdditionalResidual: mid })).toThrow('need both');
      for (const t of [ctx, odd, y, y0, y1, zmid, mid, ...zeros]) t.dispose();
    } finally {
      model.dispose();
    }
  });
});
