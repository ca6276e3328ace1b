// AutoencoderTiny from madebyollin's original TAESD files (taesd_encoder.pth / taesd_decoder.pth, read by the
// whitelist unpickler, keys renamed to diffusers') against taesd.py's own Encoder()/Decoder() outputs
// (torch_checkpoints case). Original convention: images in [0, 1]; diffusers decode = Decoder()(z) * 2 - 1
// and encode(x) = Encoder()((x + 1) / 2).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, Tensor, TorchCheckpointFile, encodeSafetensors, type TensorToWrite } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { AutoencoderTiny } from '@fewstep/models';
import { gpuDevice, closeDevice } from '../helpers/gpu';
import { main } from '../../packages/cli/src/main';
import { expectClose } from '../helpers/compare';
import { goldenRoot } from './golden';

afterAll(closeDevice);

const G = join(goldenRoot, 'torch_checkpoints');
const caseJson = JSON.parse(readFileSync(join(G, 'case.json'), 'utf8')) as {
  outputs: Record<string, { suggested: { atol: number; rtol: number } }>;
};

/** A temp folder holding links to the given case files; returns [dir, cleanup]. */
function folderWith(names: string[]): [string, () => void] {
  const dir = mkdtempSync(join(tmpdir(), 'fewstep-taesd-pth-'));
  for (const n of names) symlinkSync(join(G, n), join(dir, n));
  return [dir, () => rmSync(dir, { recursive: true, force: true })];
}

describe('TAESD from the original .pth files', () => {
  it('decode(in.latent) = out.taesd_py_decoder * 2 - 1 and encode(2 * in.image_01 - 1) = out.taesd_py_encoder (f32)', async () => {
    const d = await gpuDevice();
    const io = await SafetensorsFile.open(nodeFiles, join(G, 'io.safetensors'));
    // No config.json: TAESD's defaults (diffusers AutoencoderTiny's).
    const [dir, cleanup] = folderWith(['taesd_encoder.pth', 'taesd_decoder.pth']);
    const model = await AutoencoderTiny.fromFolder(nodeFiles, dir, d);
    cleanup();
    try {
      const z = Tensor.from(d, (await io.read('in.latent', 'f32')) as Float32Array, io.info('in.latent').shape, 'f32');
      const img = model.decode(z);
      expect(img.shape).toEqual([1, 3, 64, 64]);
      const got = await img.readF32();
      const ref01 = (await io.read('out.taesd_py_decoder', 'f32')) as Float32Array;
      const dtol = caseJson.outputs['out.taesd_py_decoder']!.suggested;
      // ×2 scales the reference's own error too.
      const dc = expectClose(got, ref01.map((v) => v * 2 - 1), { atol: 2 * dtol.atol, rtol: dtol.rtol }, 'taesd .pth decode');

      const x01 = (await io.read('in.image_01', 'f32')) as Float32Array;
      const x = Tensor.from(d, x01.map((v) => v * 2 - 1), io.info('in.image_01').shape, 'f32');
      const lat = model.encode(x);
      expect(lat.shape).toEqual([1, 4, 8, 8]);
      const etol = caseJson.outputs['out.taesd_py_encoder']!.suggested;
      const ec = expectClose(await lat.readF32(), (await io.read('out.taesd_py_encoder', 'f32')) as Float32Array, etol, 'taesd .pth encode');
      console.log(`taesd .pth: decode max abs ${dc.maxAbs.toExponential(2)} (atol ${(2 * dtol.atol).toExponential(2)}), encode max abs ${ec.maxAbs.toExponential(2)} (atol ${etol.atol.toExponential(2)})`);
      for (const t of [z, img, x, lat]) t.dispose();
    } finally {
      model.dispose();
      await io.close();
    }
  });

  it('fewstep run on a folder holding only taesd_encoder.pth + taesd_decoder.pth (no config.json) decodes like taesd.py', async () => {
    const io = await SafetensorsFile.open(nodeFiles, join(G, 'io.safetensors'));
    const [dir, cleanup] = folderWith(['taesd_encoder.pth', 'taesd_decoder.pth']);
    const tmp = mkdtempSync(join(tmpdir(), 'fewstep-taesd-run-'));
    const out = join(tmp, 'out.safetensors'), inputs = join(tmp, 'in.safetensors');
    try {
      writeFileSync(inputs, encodeSafetensors({ z: { dtype: 'F32', shape: io.info('in.latent').shape, data: (await io.read('in.latent', 'f32')) as Float32Array } }));
      const err: string[] = [];
      const code = await main(['run', dir, '--method', 'decode', '--inputs', inputs, '--out', out], { stdout: () => {}, stderr: (s) => void err.push(s), isTTY: false });
      expect(code, err.join('')).toBe(0);
      const r = await SafetensorsFile.open(nodeFiles, out);
      const ref01 = (await io.read('out.taesd_py_decoder', 'f32')) as Float32Array;
      const dtol = caseJson.outputs['out.taesd_py_decoder']!.suggested;
      expectClose((await r.read('sample', 'f32')) as Float32Array, ref01.map((v) => v * 2 - 1), { atol: 2 * dtol.atol, rtol: dtol.rtol }, 'run taesd .pth decode');
      await r.close();
    } finally {
      cleanup();
      rmSync(tmp, { recursive: true, force: true });
      await io.close();
    }
  });

  it('fromOriginalFiles with explicit paths (and a config.json beside the .pth files) loads the same weights; half a pair is a clear error', async () => {
    const d = await gpuDevice();
    const model = await AutoencoderTiny.fromOriginalFiles(nodeFiles, [join(G, 'taesd_decoder.pth'), join(G, 'taesd_encoder.pth')], d);
    expect(model.spatialScaleFactor).toBe(8);
    model.dispose();
    const [dir, cleanup] = folderWith(['taesd_encoder.pth', 'taesd_decoder.pth']);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'AutoencoderTiny', latent_channels: 4 }));
    const m2 = await AutoencoderTiny.fromFolder(nodeFiles, dir, d);
    expect(m2.config.latent_channels).toBe(4);
    m2.dispose();
    cleanup();

    // madebyollin also ships the original keys as taesd_*.safetensors: a folder with only those loads the same model.
    const stDir = mkdtempSync(join(tmpdir(), 'fewstep-taesd-st-'));
    for (const part of ['encoder', 'decoder']) {
      const t = await TorchCheckpointFile.open(nodeFiles, join(G, `taesd_${part}.pth`));
      const tensors: Record<string, TensorToWrite> = {};
      for (const [k, info] of t.tensors) tensors[k] = { dtype: info.dtype, shape: info.shape, data: await t.readBytes(k) };
      await t.close();
      writeFileSync(join(stDir, `taesd_${part}.safetensors`), encodeSafetensors(tensors));
    }
    const fromSt = await AutoencoderTiny.fromFolder(nodeFiles, stDir, d);
    const fromPth = await AutoencoderTiny.fromOriginalFiles(nodeFiles, [join(G, 'taesd_encoder.pth'), join(G, 'taesd_decoder.pth')], d);
    rmSync(stDir, { recursive: true, force: true });
    const z = Tensor.from(d, Float32Array.from({ length: 4 * 2 * 2 }, (_, i) => Math.sin(i)), [1, 4, 2, 2], 'f32');
    const [a, b] = [fromSt.decode(z), fromPth.decode(z)];
    expect(await a.readF32()).toEqual(await b.readF32());
    for (const t of [z, a, b]) t.dispose();
    fromSt.dispose();
    fromPth.dispose();

    const [half, cleanHalf] = folderWith(['taesd_decoder.pth']);
    try {
      await expect(AutoencoderTiny.fromFolder(nodeFiles, half, d)).rejects.toThrow(`${half}: has taesd_decoder.pth but no taesd_encoder file (AutoencoderTiny needs both halves)`);
    } finally {
      cleanHalf();
    }
    await expect(AutoencoderTiny.fromOriginalFiles(nodeFiles, [join(G, 'taesd_decoder.pth')], d)).rejects.toThrow('no TAESD encoder weights');
    await expect(AutoencoderTiny.fromOriginalFiles(nodeFiles, [join(G, 'diffusion_pytorch_model.bin')], d)).rejects.toThrow('not an original TAESD encoder or decoder state dict');
    await expect(AutoencoderTiny.fromOriginalFiles(nodeFiles, [join(G, 'evil.bin')], d)).rejects.toThrow('unsafe pickle refused: global "os system"');
  });
});
