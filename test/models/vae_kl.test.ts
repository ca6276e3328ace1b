// AutoencoderKL against diffusers 0.25.1 goldens: decode on two latent sizes, encode (mean, std) on an image.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { MemoryFile, SafetensorsFile, Tensor, encodeSafetensors, type FileSource } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderKL, SafetensorsSource, TorchGenerator, type AutoencoderKLConfig } from '@fewstep/models';
import { SD_VAE } from '@fewstep/models/testing';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose } from '../helpers/compare';
import { componentDir, goldenRoot, openGolden } from './golden';

afterAll(closeDevice);

// SD_VAE (models.md §4.3): 34,163,592 encoder + 49,490,179 decoder + quant convs.

describe('AutoencoderKL structure', () => {
  it('SD VAE parameter counts', () => {
    const p = AutoencoderKL.describe(SD_VAE);
    const count = (prefix: string) => [...p].filter(([k]) => k.startsWith(prefix)).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
    expect(count('encoder.')).toBe(34_163_592);
    expect(count('decoder.')).toBe(49_490_179);
    expect(p.get('decoder.mid_block.attentions.0.to_q.weight')).toEqual([512, 512]);
  });

  it("describe(vae_kl config) is exactly the checkpoint's key → shape map", async () => {
    const f = await SafetensorsFile.open(nodeFiles, join(goldenRoot, 'vae_kl', 'model.safetensors'));
    const want = new Map([...f.tensors].map(([k, info]) => [k, info.shape]));
    await f.close();
    const cfg = JSON.parse(await nodeFiles.readText(join(goldenRoot, 'vae_kl', 'config.json'))) as AutoencoderKLConfig;
    const got = AutoencoderKL.describe(cfg);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, s] of got) expect(s, k).toEqual(want.get(k));
  });
});


describe('AutoencoderKL goldens', () => {
  it('matches diffusers AutoencoderKL decode and encode (f32)', async () => {
    const d = await gpuDevice();
    const g = await openGolden('vae_kl');
    const [dir, cleanup] = componentDir('vae_kl', 'diffusion_pytorch_model.safetensors');
    const model = await AutoencoderKL.fromFolder(nodeFiles, dir, d);
    cleanup();
    const report: string[] = [];
    try {
      expect(model.scalingFactor).toBe(0.18215);
      expect(model.spatialScaleFactor).toBe(8);
      expect(model.latentChannels).toBe(4);
      const load = async (k: string) => Tensor.from(d, (await g.io.read(k, 'f32')) as Float32Array, g.io.info(k).shape, 'f32');
      const check = async (y: Tensor, key: string) => {
        const spec = g.caseJson.outputs[key]!;
        expect(y.shape).toEqual(spec.shape);
        const got = await y.readF32();
        y.dispose();
        const tol = spec.suggested;
        const c = expectClose(got, (await g.io.read(key, 'f32')) as Float32Array, tol, `vae_kl ${key}`);
        report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${tol.atol.toExponential(2)}, rtol ${tol.rtol.toExponential(2)})`);
      };
      for (const size of ['16x16', 'b2_8x12']) {
        const z = await load(`in.latent_${size}`);
        await check(model.decode(z), `out.decoded_${size}`);
        z.dispose();
      }
      const x = await load('in.image_64x64');
      const { mean, std } = await model.encode(x);
      await check(mean, 'out.encoded_mean_64x64');
      await check(std, 'out.encoded_std_64x64');
      // Vae.encodeLatents = latent_dist.sample(generator): mean + std·randn, one draw of the latents' shape.
      const gen = new TorchGenerator(7), ref = new TorchGenerator(7);
      const z = await model.encodeLatents(x, gen);
      expect(z.dtype).toBe('f32');
      const [m, sd] = [(await g.io.read('out.encoded_mean_64x64', 'f32')) as Float32Array, (await g.io.read('out.encoded_std_64x64', 'f32')) as Float32Array];
      const eps = ref.randn(z.shape);
      const want = m.map((v, i) => Math.fround(v + Math.fround(sd[i]! * eps[i]!)));
      expectClose(await z.readF32(), want, g.caseJson.outputs['out.encoded_mean_64x64']!.suggested, 'vae_kl encodeLatents');
      expect(gen.randn([3])).toEqual(ref.randn([3]));
      z.dispose();
      x.dispose();
    } finally {
      model.dispose();
      await g.io.close();
    }
    console.log(`vae_kl f32\n  ${report.join('\n  ')}`);
  });

  it('legacy attention key names (query/key/value/proj_attn) load as to_q/to_k/to_v/to_out.0: same decode as diffusers', async () => {
    const d = await gpuDevice();
    const g = await openGolden('vae_kl');
    const f = await SafetensorsFile.open(nodeFiles, join(goldenRoot, 'vae_kl', 'model.safetensors'));
    const legacy: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    const rename: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    for (const [k, info] of f.tensors) {
      const nk = k.replace(/attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./, (_, p: string) => `attentions.0.${rename[p]}.`);
      legacy[nk] = { dtype: 'F32', shape: info.shape, data: (await f.read(k, 'f32')) as Float32Array };
    }
    await f.close();
    expect(Object.keys(legacy).filter((k) => /\.(query|key|value|proj_attn)\.weight$/.test(k)).length).toBe(8);
    const bytes = encodeSafetensors(legacy);
    const mem: FileSource = { ...nodeFiles, open: async () => new MemoryFile('legacy.safetensors', bytes) };
    const src = await SafetensorsSource.open(mem, ['legacy.safetensors']);
    const cfg = JSON.parse(await nodeFiles.readText(join(goldenRoot, 'vae_kl', 'config.json'))) as AutoencoderKLConfig;
    const model = await AutoencoderKL.fromSource(src, cfg, d);
    try {
      // The decoder's mid-block attention runs on every decode: a projection loaded under the wrong name
      // (query as key, value as proj_attn, …) changes the image.
      const key = 'out.decoded_16x16';
      const z = Tensor.from(d, (await g.io.read('in.latent_16x16', 'f32')) as Float32Array, g.io.info('in.latent_16x16').shape, 'f32');
      const y = model.decode(z);
      z.dispose();
      const got = await y.readF32();
      y.dispose();
      expectClose(got, (await g.io.read(key, 'f32')) as Float32Array, g.caseJson.outputs[key]!.suggested, `vae_kl legacy keys ${key}`);
    } finally {
      model.dispose();
      await g.io.close();
    }
  });
});
