// The config-only key → shape maps must equal the real checkpoints' state dicts (golden model files),
// so random-weight benchmarks build exactly the modules real weights would.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny, CLIPTextModel, autoencoderTinyConfig, clipTextConfig } from '@fewstep/models';

const fx = (p: string) => new URL(`../fixtures/golden/${p}`, import.meta.url).pathname;

async function stateDict(path: string): Promise<Map<string, number[]>> {
  const f = await SafetensorsFile.open(nodeFiles, path);
  const m = new Map([...f.tensors.values()].map((t) => [t.name, t.shape]));
  await f.close();
  return m;
}

const sorted = (m: Map<string, number[]>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));

describe('config-only parameter maps', () => {
  for (const c of ['clip_text_gelu', 'clip_text_quickgelu']) {
    it(`CLIPTextModel.describe equals ${c}'s state dict`, async () => {
      const cfg = clipTextConfig(JSON.parse(readFileSync(fx(`${c}/config.json`), 'utf8')));
      const want = await stateDict(fx(`${c}/model.safetensors`));
      want.delete('text_model.embeddings.position_ids');
      expect(sorted(CLIPTextModel.describe(cfg))).toEqual(sorted(want));
    });
  }
  it("AutoencoderTiny.describe equals taesd's state dict", async () => {
    const cfg = autoencoderTinyConfig(JSON.parse(readFileSync(fx('taesd/config.json'), 'utf8')));
    expect(sorted(AutoencoderTiny.describe(cfg))).toEqual(sorted(await stateDict(fx('taesd/model.safetensors'))));
  });
});
