// LoRA loading and load-time fusion: kohya (YOSO layout), diffusers and peft formats, checked against diffusers 0.25.1
// goldens (fused weights on the CPU, fused UNet outputs on the GPU), composition, and error messages.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { MemoryFile, SafetensorsFile, Tensor, encodeSafetensors, type FileSource, type TensorToWrite } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { SafetensorsSource, UNet2DConditionModel, combineTransforms, loadLora, loraTransform, parseLoraSpec, type LoraAdapter, type WeightTransform } from '@fewstep/models';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { goldenRoot, openGolden } from './golden';

afterAll(closeDevice);

const YOSO = join(goldenRoot, 'lora_yoso');
const PEFT = join(goldenRoot, 'lora_peft');
const SD15_WEIGHTS = join(goldenRoot, 'unet_sd15', 'model.safetensors');
const SKETCH_UNET = join(goldenRoot, 'controlnet_sketch', 'unet');

/** An in-memory FileSource: path → bytes (text files as strings). */
function memFiles(files: Record<string, Uint8Array | string>): FileSource {
  const bytes = (p: string) => {
    const v = files[p];
    if (v === undefined) throw new Error(`${p}: no such file`);
    return typeof v === 'string' ? new TextEncoder().encode(v) : v;
  };
  return {
    open: async (p) => new MemoryFile(p, bytes(p)),
    readText: async (p) => new TextDecoder().decode(bytes(p)),
    exists: async (p) => p in files,
    join: (...parts) => parts.join('/'),
    list: async (dir) => {
      const names = Object.keys(files).filter((k) => k.startsWith(dir + '/')).map((k) => k.slice(dir.length + 1));
      if (!names.length) throw new Error(`${dir}: not a folder`);
      return names;
    },
  };
}

/** A temp peft folder holding only adapter_config.json + adapter_model.bin (links into the lora_peft case). */
function peftBinFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fewstep-peft-bin-'));
  for (const n of ['adapter_config.json', 'adapter_model.bin']) symlinkSync(join(PEFT, n), join(dir, n));
  return dir;
}

const f32 = (shape: number[], fill: (i: number) => number = () => 0.01): TensorToWrite => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'F32', shape, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
};

/** Runs a transform over every weight of a source on the CPU (what WeightScope does while loading). */
async function fuseKeys(src: SafetensorsSource, t: WeightTransform | undefined, keys = src.keys()): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const k of keys) {
    const v = (await src.read(k, 'f32')) as Float32Array;
    out.set(k, t ? await t(k, v, src.shape(k)) : v);
  }
  return out;
}

/** Compares the transform's result on the fused_weight.* modules of a case's io.safetensors. */
async function checkFusedWeights(adapter: LoraAdapter, baseWeights: string, io: SafetensorsFile) {
  const src = await SafetensorsSource.open(nodeFiles, [baseWeights]);
  try {
    const t = adapter.transform('unet');
    const keys = [...io.tensors.keys()].filter((k) => k.startsWith('fused_weight.'));
    expect(keys.length).toBeGreaterThan(4);
    for (const fk of keys) {
      const k = fk.slice('fused_weight.'.length);
      const base = (await src.read(k, 'f32')) as Float32Array;
      const copy = base.slice();
      const got = await t(k, base, src.shape(k));
      expect(base, `${k}: source array untouched`).toEqual(copy);
      expectClose(got, (await io.read(fk, 'f32')) as Float32Array, { atol: 1e-6, rtol: 1e-6 }, `fused ${k}`);
    }
  } finally {
    await src.close();
  }
}

describe('loadLora: formats', () => {
  it('kohya (YOSO layout): 277 modules, alpha 8 / rank 4 = scale 2, fused weights match diffusers', async () => {
    const a = await loadLora(nodeFiles, join(YOSO, 'lora.safetensors'));
    expect(a.format).toBe('kohya');
    expect(a.targets.size).toBe(277);
    expect(a.components).toEqual(['unet']);
    expect(a.component).toBe('unet');
    const t = a.targets.get('unet.down_blocks_0_attentions_0_proj_in')!;
    expect(t).toMatchObject({ rank: 4, alpha: 8, scale: 2, downShape: [4, 32, 1, 1], upShape: [32, 4, 1, 1], flat: true });
    const g = await openGolden('lora_yoso');
    try {
      await checkFusedWeights(a, SD15_WEIGHTS, g.io);
    } finally {
      await g.io.close();
    }
    // Matched kohya names resolve to the model's real module paths.
    expect(t.module).toBe('down_blocks.0.attentions.0.proj_in');
    expect(t.flat).toBe(false);
  });

  it('kohya: every module matches a weight of the unet_sd15 UNet (check() before loading, assertAllApplied() after)', async () => {
    const a = await loadLora(nodeFiles, join(YOSO, 'lora.safetensors'), { scale: 0.5 });
    expect(a.targets.get('unet.mid_block_resnets_0_time_emb_proj')!.scale).toBe(1);
    const src = await SafetensorsSource.open(nodeFiles, [SD15_WEIGHTS]);
    try {
      a.check('unet', src.keys());
      expect(() => a.assertAllApplied()).toThrow('277 LoRA module(s) matched no weight of the unet');
      await fuseKeys(src, a.transform('unet'));
      a.assertAllApplied();
      a.assertAllApplied('unet');
    } finally {
      await src.close();
    }
  });

  it('diffusers keys (unet.<module>.lora.down/up.weight + .alpha, and lora_A/lora_B) fuse like the kohya file', async () => {
    const kohya = await SafetensorsFile.open(nodeFiles, join(YOSO, 'lora.safetensors'));
    const a = await loadLora(nodeFiles, join(YOSO, 'lora.safetensors'));
    const src = await SafetensorsSource.open(nodeFiles, [SD15_WEIGHTS]);
    try {
      await fuseKeys(src, a.transform('unet')); // resolves the kohya names
      const fmt1: Record<string, TensorToWrite> = {}, fmt2: Record<string, TensorToWrite> = {};
      for (const t of a.targets.values()) {
        fmt1[`unet.${t.module}.lora.down.weight`] = { dtype: 'F32', shape: t.downShape, data: t.down };
        fmt1[`unet.${t.module}.lora.up.weight`] = { dtype: 'F32', shape: t.upShape, data: t.up };
        fmt1[`unet.${t.module}.alpha`] = { dtype: 'F32', shape: [], data: Float32Array.of(t.alpha!) };
        fmt2[`unet.${t.module}.lora_A.weight`] = { dtype: 'F32', shape: t.downShape, data: t.down };
        fmt2[`unet.${t.module}.lora_B.weight`] = { dtype: 'F32', shape: t.upShape, data: t.up };
      }
      const io = memFiles({ 'd/a.safetensors': encodeSafetensors(fmt1), 'd/b.safetensors': encodeSafetensors(fmt2) });
      const d1 = await loadLora(io, 'd/a.safetensors');
      const d2 = await loadLora(io, 'd/b.safetensors', { scale: 2 }); // no alpha: scale 1 × user 2 = alpha/rank
      expect(d1.format).toBe('diffusers');
      expect(d1.targets.size).toBe(277);
      const g = await openGolden('lora_yoso');
      try {
        await checkFusedWeights(d1, SD15_WEIGHTS, g.io);
        await checkFusedWeights(d2, SD15_WEIGHTS, g.io);
      } finally {
        await g.io.close();
      }
    } finally {
      await src.close();
      await kohya.close();
    }
  });

  it('peft folder (adapter_config.json + adapter_model.safetensors): lora_alpha / r = 2, fused weights match', async () => {
    const a = await loadLora(nodeFiles, PEFT);
    expect(a.format).toBe('peft');
    expect(a.targets.size).toBe(110);
    expect(a.components).toEqual(['unet']);
    const t = a.targets.get('unet.down_blocks.0.downsamplers.0.conv')!;
    expect(t).toMatchObject({ rank: 4, alpha: 8, scale: 2, downShape: [4, 32, 3, 3], upShape: [32, 4, 1, 1] });
    const g = await openGolden('lora_peft');
    try {
      await checkFusedWeights(a, join(SKETCH_UNET, 'model.safetensors'), g.io);
    } finally {
      await g.io.close();
    }
    // The adapter_model.safetensors path itself works too (config read from beside it).
    const b = await loadLora(nodeFiles, join(PEFT, 'adapter_model.safetensors'));
    expect(b.format).toBe('peft');
    expect(b.targets.size).toBe(110);
  });

  it('peft folder with only adapter_model.bin (torch.save of a plain dict): the same adapter as the safetensors one', async () => {
    const dir = peftBinFolder();
    try {
      const a = await loadLora(nodeFiles, dir);
      const ref = await loadLora(nodeFiles, PEFT);
      expect(a.format).toBe('peft');
      expect([...a.targets.keys()].sort()).toEqual([...ref.targets.keys()].sort());
      for (const [k, t] of a.targets) {
        const r = ref.targets.get(k)!;
        expect({ rank: t.rank, alpha: t.alpha, scale: t.scale, downShape: t.downShape, upShape: t.upShape }, k).toEqual({ rank: r.rank, alpha: r.alpha, scale: r.scale, downShape: r.downShape, upShape: r.upShape });
        expect(t.down, k).toEqual(r.down);
        expect(t.up, k).toEqual(r.up);
      }
      const g = await openGolden('lora_peft');
      try {
        await checkFusedWeights(a, join(SKETCH_UNET, 'model.safetensors'), g.io);
      } finally {
        await g.io.close();
      }
      // The .bin path itself (config read from beside it).
      const b = await loadLora(nodeFiles, join(dir, 'adapter_model.bin'));
      expect(b.format).toBe('peft');
      expect(b.targets.size).toBe(110);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('combineTransforms: two adapters at 0.5 equal one at 1.0; scale 0 leaves weights unchanged', async () => {
    const file = join(YOSO, 'lora.safetensors');
    const [half1, half2, full, zero] = await Promise.all([0.5, 0.5, 1, 0].map((scale) => loadLora(nodeFiles, file, { scale })));
    const src = await SafetensorsSource.open(nodeFiles, [SD15_WEIGHTS]);
    try {
      const keys = ['down_blocks.0.resnets.0.conv1.weight', 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight', 'conv_in.weight'];
      const both = await fuseKeys(src, combineTransforms(half1!.transform('unet'), undefined, half2!.transform('unet')), keys);
      const one = await fuseKeys(src, loraTransform([full!], 'unet'), keys);
      const none = await fuseKeys(src, zero!.transform('unet'), keys);
      const base = await fuseKeys(src, undefined, keys);
      for (const k of keys) {
        expectClose(both.get(k)!, one.get(k)!, { atol: 1e-6, rtol: 1e-6 }, `0.5 + 0.5 vs 1.0 ${k}`);
        expect(none.get(k), k).toEqual(base.get(k));
      }
      expect(base.get('conv_in.weight')).toEqual(one.get('conv_in.weight'));
      expect(combineTransforms()).toBeUndefined();
      expect(loraTransform([full!], 'text_encoder')).toBeUndefined();
    } finally {
      await src.close();
    }
  });

  it('parseLoraSpec keeps colons in paths and reads a trailing :scale', () => {
    expect(parseLoraSpec('a.safetensors:0.8')).toEqual({ path: 'a.safetensors', scale: 0.8 });
    expect(parseLoraSpec('dir/b')).toEqual({ path: 'dir/b', scale: 1 });
    expect(parseLoraSpec('C:\\x\\c.safetensors')).toEqual({ path: 'C:\\x\\c.safetensors', scale: 1 });
    expect(parseLoraSpec('C:\\x\\c.safetensors:-1.5')).toEqual({ path: 'C:\\x\\c.safetensors', scale: -1.5 });
  });
});

describe('loadLora: errors', () => {
  it('a LoRA module that is not in the model (another architecture) is named by assertAllApplied / check', async () => {
    const io = memFiles({
      'x/other.safetensors': encodeSafetensors({
        'lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight': f32([4, 32, 3, 3]),
        'lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight': f32([32, 4, 1, 1]),
        'lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight': f32([4, 32, 1, 1]),
        'lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight': f32([32, 4, 1, 1]),
        'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': f32([4, 32]),
        'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': f32([32, 4]),
      }),
    });
    const a = await loadLora(io, 'x/other.safetensors');
    expect(a.components).toEqual(['unet', 'text_encoder']);
    const src = await SafetensorsSource.open(nodeFiles, [SD15_WEIGHTS]);
    try {
      expect(() => a.check('unet', src.keys())).toThrow(
        'x/other.safetensors: 1 LoRA module(s) matched no weight of the unet: "lora_unet_down_blocks_7_attentions_0_proj_in" (a LoRA for another model architecture?)',
      );
      await fuseKeys(src, a.transform('unet'));
      expect(() => a.assertAllApplied('unet')).toThrow(
        'x/other.safetensors: 1 LoRA module(s) matched no weight of the unet: "lora_unet_down_blocks_7_attentions_0_proj_in" (a LoRA for another model architecture?)',
      );
      expect(() => a.assertAllApplied()).toThrow(
        'x/other.safetensors: 2 LoRA module(s) matched no weight of the unet, text_encoder: "lora_unet_down_blocks_7_attentions_0_proj_in", "lora_te_text_model_encoder_layers_0_self_attn_q_proj"',
      );
    } finally {
      await src.close();
    }
  });

  it('LDM/SGM block names are reported as unsupported', async () => {
    const io = memFiles({
      'x/ldm.safetensors': encodeSafetensors({
        'lora_unet_input_blocks_1_1_proj_in.lora_down.weight': f32([4, 32]),
        'lora_unet_input_blocks_1_1_proj_in.lora_up.weight': f32([32, 4]),
      }),
    });
    const a = await loadLora(io, 'x/ldm.safetensors');
    expect(() => a.check('unet', ['down_blocks.0.attentions.0.proj_in.weight'])).toThrow('(LDM/SGM block names like input_blocks are not supported yet)');
  });

  it('PyTorch .bin adapters: safetensors preferred when both exist; a broken .bin is one error naming it', async () => {
    await expect(loadLora(nodeFiles, '/nowhere/pytorch_lora_weights.bin')).rejects.toThrow('/nowhere/pytorch_lora_weights.bin: cannot open (ENOENT)');
    const cfg = await nodeFiles.readText(join(PEFT, 'adapter_config.json'));
    const st = new Uint8Array(readFileSync(join(PEFT, 'adapter_model.safetensors')));
    const junk = new Uint8Array([0x50, 0x4b, 3, 4]);
    // Both present: the safetensors one is read (the junk .bin is never opened).
    const both = await loadLora(memFiles({ 'anime/adapter_config.json': cfg, 'anime/adapter_model.safetensors': st, 'anime/adapter_model.bin': junk }), 'anime');
    expect(both.targets.size).toBe(110);
    const io = memFiles({ 'anime/adapter_config.json': cfg, 'anime/adapter_model.bin': junk });
    await expect(loadLora(io, 'anime')).rejects.toThrow('anime/adapter_model.bin: 4 bytes: too short for a zip archive (truncated?)');
    await expect(loadLora(io, 'anime/')).rejects.toThrow('anime/adapter_model.bin: 4 bytes: too short for a zip archive (truncated?)');
    const evil = new Uint8Array(readFileSync(join(goldenRoot, 'torch_checkpoints', 'evil.bin')));
    await expect(loadLora(memFiles({ 'x/lora.bin': evil }), 'x/lora.bin')).rejects.toThrow('x/lora.bin: unsafe pickle refused: global "os system" (os.system)');
    await expect(loadLora(memFiles({ 'p/adapter_config.json': cfg, 'p/x.txt': '' }), 'p')).rejects.toThrow('p: peft adapter folder has no adapter_model.safetensors or adapter_model.bin');
  });

  it('rank mismatch between down and up is named at load (kohya and peft)', async () => {
    const io = memFiles({
      'x/bad.safetensors': encodeSafetensors({
        'lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight': f32([4, 32, 3, 3]),
        'lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight': f32([32, 8, 1, 1]),
      }),
      'p/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 8, target_modules: ['to_q'] }),
      'p/adapter_model.safetensors': encodeSafetensors({
        'base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight': f32([4, 32]),
        'base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight': f32([32, 4]),
      }),
      'q/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['to_k'] }),
      'q/adapter_model.safetensors': encodeSafetensors({
        'base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight': f32([4, 32]),
        'base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight': f32([32, 4]),
      }),
    });
    await expect(loadLora(io, 'x/bad.safetensors')).rejects.toThrow(
      'x/bad.safetensors: LoRA "lora_unet_down_blocks_0_resnets_0_conv1" rank mismatch: "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight" is [4, 32, 3, 3] (rank 4) but "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight" is [32, 8, 1, 1] (expected [out, 4, 1, 1])',
    );
    await expect(loadLora(io, 'p')).rejects.toThrow(
      'p: LoRA "mid_block.attentions.0.transformer_blocks.0.attn1.to_q" rank mismatch: "base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" is [4, 32] (rank 4) but p/adapter_config.json says r = 8',
    );
    await expect(loadLora(io, 'q')).rejects.toThrow('q: LoRA "mid_block.attentions.0.transformer_blocks.0.attn1.to_q" is not among target_modules of q/adapter_config.json (["to_k"])');
  });

  it("a LoRA whose delta does not fit the model's weight names both keys", async () => {
    const io = memFiles({
      'x/wide.safetensors': encodeSafetensors({
        'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight': f32([4, 64]),
        'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight': f32([64, 4]),
      }),
    });
    const a = await loadLora(io, 'x/wide.safetensors');
    const src = await SafetensorsSource.open(nodeFiles, [SD15_WEIGHTS]);
    try {
      const k = 'mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight';
      expect(src.shape(k)).toEqual([64, 64]);
      const down = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight';
      // The mid block is 64 wide: fits. The same LoRA on a 32-wide module does not:
      await fuseKeys(src, a.transform('unet'), [k]);
      a.assertAllApplied();
      const b = await loadLora(memFiles({
        'x/narrow.safetensors': encodeSafetensors({
          'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight': f32([4, 64]),
          'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight': f32([64, 4]),
        }),
      }), 'x/narrow.safetensors');
      await expect(fuseKeys(src, b.transform('unet'), [down])).rejects.toThrow(
        `x/narrow.safetensors: LoRA "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" (up [64, 4] @ down [4, 64] → [64, 64]) does not fit "${down}" of shape [32, 32]`,
      );
    } finally {
      await src.close();
    }
  });

  it('unrecognised tensors (LoHa etc.) and a folder without adapter_config.json', async () => {
    const io = memFiles({
      'x/loha.safetensors': encodeSafetensors({ 'lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a': f32([4, 32]) }),
      'dir/readme.txt': 'hi',
    });
    await expect(loadLora(io, 'x/loha.safetensors')).rejects.toThrow(
      'x/loha.safetensors: 1 tensor(s) are not kohya LoRA weights (LoCon/LoHa/DoRA and other variants are not supported): "lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a"',
    );
    await expect(loadLora(io, 'dir')).rejects.toThrow('dir: not a LoRA adapter folder (no adapter_config.json)');
  });
});

/** A temp unet folder linking a config and weights. */
function unetDir(config: string, weights: string): [string, () => void] {
  const dir = mkdtempSync(join(tmpdir(), 'fewstep-lora-'));
  symlinkSync(config, join(dir, 'config.json'));
  symlinkSync(weights, join(dir, 'diffusion_pytorch_model.safetensors'));
  return [dir, () => rmSync(dir, { recursive: true, force: true })];
}

/** Loads the UNet (with the adapter fused, or plain) and compares the listed outputs. */
async function runUNet(caseName: string, unetConfig: string, unetWeights: string, adapter: LoraAdapter | null, outputs: string[]) {
  const d = await gpuDevice();
  const g = await openGolden(caseName);
  const [dir, cleanup] = unetDir(unetConfig, unetWeights);
  let model: UNet2DConditionModel;
  try {
    model = await UNet2DConditionModel.fromFolder(nodeFiles, dir, d, { transform: adapter ? loraTransform([adapter], 'unet') : undefined });
  } finally {
    cleanup();
  }
  adapter?.assertAllApplied();
  const load = async (k: string) => Tensor.from(d, (await g.io.read(k, 'f32')) as Float32Array, g.io.info(k).shape, 'f32');
  try {
    const sample = await load('in.sample');
    const ctx = await load('in.encoder_hidden_states');
    const ts = await load('in.timesteps');
    const scalar = (await g.io.read('in.timestep_scalar', 'i32'))[0]!;
    for (const key of outputs) {
      const y = key.startsWith('out.sample_t_scalar') ? model.forward(sample, scalar, ctx) : model.forward(sample, ts, ctx);
      const got = await y.readF32();
      y.dispose();
      const tol = g.caseJson.outputs[key]?.suggested ?? { atol: 1e-5, rtol: 1e-5 };
      const c = expectClose(got, (await g.io.read(key, 'f32')) as Float32Array, tol, `${caseName} ${key}`);
      console.log(`${caseName} ${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${tol.atol})`);
    }
    for (const t of [sample, ctx, ts]) t.dispose();
  } finally {
    model.dispose();
    await g.io.close();
  }
}

describe('LoRA goldens (UNet forward, f32)', () => {
  const sd15Cfg = join(goldenRoot, 'unet_sd15', 'config.json');
  it('lora_yoso: kohya LoRA fused at load matches diffusers fuse_lora (both timestep forms)', async () => {
    const a = await loadLora(nodeFiles, join(YOSO, 'lora.safetensors'));
    await runUNet('lora_yoso', sd15Cfg, SD15_WEIGHTS, a, ['out.sample_lora_fused', 'out.sample_t_scalar_lora_fused']);
  });

  it('lora_yoso: the same UNet without the LoRA gives out.sample_base', async () => {
    await runUNet('lora_yoso', sd15Cfg, SD15_WEIGHTS, null, ['out.sample_base']);
  });

  it('lora_peft: peft adapter (safetensors) on the DreamShaper-structure UNet matches the fused outputs', async () => {
    const a = await loadLora(nodeFiles, PEFT);
    await runUNet('lora_peft', join(SKETCH_UNET, 'config.json'), join(SKETCH_UNET, 'model.safetensors'), a, ['out.sample_lora_fused', 'out.sample_t_scalar_lora_fused']);
  });

  it('lora_peft: the same adapter from adapter_model.bin (PyTorch zip) matches the fused outputs', async () => {
    const dir = peftBinFolder();
    try {
      const a = await loadLora(nodeFiles, dir);
      await runUNet('lora_peft', join(SKETCH_UNET, 'config.json'), join(SKETCH_UNET, 'model.safetensors'), a, ['out.sample_lora_fused']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
