// CLIPTextModel against transformers 4.36.2 goldens (gelu = SD2.x/SDXS tower, quick_gelu = SD1.x tower).
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, type Device } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { CLIPTextModel, SafetensorsSource, WeightScope, clipTextConfig } from '@fewstep/models';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose, type Tol } from '../helpers/compare';
import { componentDir, openGolden } from './golden';

afterAll(closeDevice);

/**
 * f16 weights and activations (f32 accumulation): at this fixture's scale (|x| ≤ 3.4) the f16 run
 * lands within 6e-3 absolute of the f32 reference (measured on lavapipe); 2e-2 + 1e-2·|ref| leaves headroom.
 */
const F16_TOL: Tol = { atol: 2e-2, rtol: 1e-2 };

async function run(model: CLIPTextModel, d: Device, ids: Int32Array, shape: number[], mask?: Int32Array) {
  const idsT = Tensor.from(d, ids, shape, 'i32');
  const maskT = mask ? Tensor.from(d, mask, shape, 'i32') : undefined;
  const out = await model.forward(idsT, { attentionMask: maskT });
  const res = {
    last: await out.lastHiddenState.readF32(),
    hidden: await Promise.all(out.hiddenStates.map((h) => h.readF32())),
    penultimate: await out.penultimateHiddenState.readF32(),
    pooler: await out.poolerOutput!.readF32(),
    clipSkip1: await d.scope(() => model.finalLayerNorm(out.penultimateHiddenState)).readF32(),
  };
  for (const t of [idsT, maskT, out.lastHiddenState, ...out.hiddenStates, out.poolerOutput]) t?.dispose();
  return res;
}

for (const name of ['clip_text_gelu', 'clip_text_quickgelu']) {
  describe(name, () => {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`matches transformers (${dtype})`, async () => {
        const d = await gpuDevice();
        const g = await openGolden(name);
        const [dir, cleanup] = componentDir(name);
        const model = await CLIPTextModel.fromFolder(nodeFiles, dir, d, { dtype });
        cleanup();
        try {
          expect(model.config.hidden_act).toBe(name.endsWith('quickgelu') ? 'quick_gelu' : 'gelu');
          const ids = (await g.io.read('in.input_ids', 'i32')) as Int32Array;
          const mask = (await g.io.read('in.attention_mask', 'i32')) as Int32Array;
          const shape = g.io.info('in.input_ids').shape;
          const r = await run(model, d, ids, shape);
          const rm = await run(model, d, ids, shape, mask);
          const got: Record<string, Float32Array> = {
            'out.last_hidden_state': r.last,
            'out.pooler_output': r.pooler,
            'out.penultimate_hidden_state': r.penultimate,
            'out.clip_skip_1_prompt_embeds': r.clipSkip1,
            'out.last_hidden_state_with_attention_mask': rm.last,
          };
          r.hidden.forEach((h, i) => (got[`out.hidden_states.${i}`] = h));
          expect(Object.keys(got).sort()).toEqual(Object.keys(g.caseJson.outputs).sort());
          const report: string[] = [];
          for (const [key, spec] of Object.entries(g.caseJson.outputs)) {
            const ref = (await g.io.read(key, 'f32')) as Float32Array;
            const tol = dtype === 'f32' ? spec.suggested : F16_TOL;
            const c = expectClose(got[key]!, ref, tol, `${name} ${dtype} ${key}`);
            report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${tol.atol.toExponential(2)})`);
          }
          console.log(`${name} ${dtype}\n  ${report.join('\n  ')}`);
        } finally {
          model.dispose();
          await g.io.close();
        }
      });
    }
  });
}

describe('CLIPTextModel loading', () => {
  it('consumes a legacy position_ids buffer and names unexpected keys', async () => {
    const d = await gpuDevice();
    const g = await openGolden('clip_text_gelu');
    const cfg = clipTextConfig(JSON.parse(await nodeFiles.readText(`${g.dir}/config.json`)));
    await g.io.close();
    const src = await SafetensorsSource.open(nodeFiles, [`${g.dir}/model.safetensors`]);
    const withIds = {
      name: 'legacy.safetensors',
      keys: () => [...src.keys(), 'text_model.embeddings.position_ids'],
      has: (k: string) => k === 'text_model.embeddings.position_ids' || src.has(k),
      shape: (k: string) => (k === 'text_model.embeddings.position_ids' ? [1, 77] : src.shape(k)),
      read: async (k: string, dt: 'f32' | 'f16') => (k === 'text_model.embeddings.position_ids' ? new Float32Array(77).map((_, i) => i) : src.read(k, dt)),
    };
    const m = await CLIPTextModel.load(WeightScope.create(withIds, d, 'f32'), cfg);
    m.dispose();
    const extra = { ...withIds, keys: () => [...src.keys(), 'text_model.embeddings.position_ids', 'logit_scale'], has: (k: string) => k === 'logit_scale' || withIds.has(k) };
    await expect(CLIPTextModel.load(WeightScope.create(extra, d, 'f32'), cfg)).rejects.toThrow('legacy.safetensors: 1 unexpected tensor(s) not used by CLIPTextModel: "logit_scale"');
    await src.close();
  });

  it('rejects an unsupported hidden_act', () => {
    expect(() => clipTextConfig({ hidden_act: 'mish' }, 'x/config.json')).toThrow('x/config.json: hidden_act "mish" is not supported');
  });
});
