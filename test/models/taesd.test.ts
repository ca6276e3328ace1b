// AutoencoderTiny (TAESD) against diffusers 0.25.1 goldens: decode on two latent sizes, encode on an image.
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny, TorchGenerator, autoencoderTinyConfig, type Vae } from '@fewstep/models';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { expectClose, type Tol } from '../helpers/compare';
import { componentDir, openGolden } from './golden';

afterAll(closeDevice);

/**
 * f16 weights and activations (f32 accumulation) through ~25 convs: measured max abs error vs the
 * f32 reference is 7e-3 on decoded images of magnitude ≤ 5 and 6e-4 on the latents (lavapipe);
 * 2.5e-2 + 1e-2·|ref| leaves headroom. The f16 run skips the large 24×32 decode (lavapipe time).
 */
const F16_TOL: Tol = { atol: 2.5e-2, rtol: 1e-2 };

describe('taesd', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`matches diffusers AutoencoderTiny (${dtype})`, async () => {
      const d = await gpuDevice();
      const g = await openGolden('taesd');
      const [dir, cleanup] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
      const model = await AutoencoderTiny.fromFolder(nodeFiles, dir, d, { dtype });
      cleanup();
      try {
        expect(model.spatialScaleFactor).toBe(8);
        const report: string[] = [];
        for (const [key, spec] of Object.entries(g.caseJson.outputs)) {
          if (dtype === 'f16' && key === 'out.decoded_24x32') continue;
          const [, kind, size] = /^out\.(encoded|decoded)_(.+)$/.exec(key)!;
          const inKey = kind === 'encoded' ? `in.image_${size}` : `in.latent_${size}`;
          const x = Tensor.from(d, (await g.io.read(inKey, 'f32')) as Float32Array, g.io.info(inKey).shape, dtype);
          const y = kind === 'encoded' ? model.encode(x) : model.decode(x);
          expect(y.shape).toEqual(spec.shape);
          const got = await y.readF32();
          x.dispose();
          y.dispose();
          const ref = (await g.io.read(key, 'f32')) as Float32Array;
          const tol = dtype === 'f32' ? spec.suggested : F16_TOL;
          const c = expectClose(got, ref, tol, `taesd ${dtype} ${key}`);
          report.push(`${key}: max abs ${c.maxAbs.toExponential(2)} (atol ${tol.atol.toExponential(2)})`);
        }
        console.log(`taesd ${dtype}\n  ${report.join('\n  ')}`);
      } finally {
        model.dispose();
        await g.io.close();
      }
    });
  }

  it('rejects bad configs and inputs clearly', async () => {
    expect(() => autoencoderTinyConfig({ num_encoder_blocks: 'x' }, 'v/config.json')).toThrow('v/config.json: "num_encoder_blocks" must be a list of integers, got "x"');
    const d = await gpuDevice();
    const [dir, cleanup] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
    const model = await AutoencoderTiny.fromFolder(nodeFiles, dir, d);
    cleanup();
    const x = Tensor.empty(d, [1, 3, 8, 8]);
    expect(() => model.decode(x)).toThrow('AutoencoderTiny.decode: z must be [batch, 4, height, width], got [1, 3, 8, 8]');
    x.dispose();
    model.dispose();
  });

  it('as a Vae: encodeLatents is the encoder output as f32 and draws nothing from the generator', async () => {
    const d = await gpuDevice();
    const g = await openGolden('taesd');
    const [dir, cleanup] = componentDir('taesd', 'diffusion_pytorch_model.safetensors');
    const vae: Vae = await AutoencoderTiny.fromFolder(nodeFiles, dir, d, { dtype: 'f16' });
    cleanup();
    try {
      expect([vae.className, vae.scalingFactor, vae.spatialScaleFactor, vae.latentChannels, vae.dtype]).toEqual(['AutoencoderTiny', 1, 8, 4, 'f16']);
      const key = Object.keys(g.caseJson.outputs).find((k) => k.startsWith('out.encoded_'))!;
      const inKey = key.replace('out.encoded_', 'in.image_');
      const x = Tensor.from(d, (await g.io.read(inKey, 'f32')) as Float32Array, g.io.info(inKey).shape, 'f32');
      const gen = new TorchGenerator(1);
      const z = await vae.encodeLatents(x, gen);
      expect(z.dtype).toBe('f32');
      expectClose(await z.readF32(), (await g.io.read(key, 'f32')) as Float32Array, F16_TOL, `taesd encodeLatents ${key}`);
      expect(gen.randn([2])).toEqual(new TorchGenerator(1).randn([2]));
      x.dispose();
      z.dispose();
    } finally {
      vae.dispose();
      await g.io.close();
    }
  });
});
