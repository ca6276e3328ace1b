// Compile-only: the README's sketch-to-image (ControlNet) example must type-check against the public API (never executed).
export {};

import { readFile, writeFile } from 'node:fs/promises';
import { Device } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node';
import { Pipeline, decodePng, encodePng, invertControlImage } from '@fewstep/models';
import { hubResolver, snapshotDownload } from '@fewstep/weights-tools';

const device = await Device.open({ gpu: await nodeGPU() });
const pipe = await Pipeline.fromPretrained('IDKiro/sdxs-512-dreamshaper', {
  device, io: nodeFiles, resolve: hubResolver(),
  controlnet: 'IDKiro/sdxs-512-dreamshaper-sketch',
  // A ControlNet repo is one component, not a pipeline: fetch its config.json and weights into the HF cache.
  resolveControlNet: (id) => snapshotDownload(id, { allowPatterns: ['config.json', 'diffusion_pytorch_model.*'] }),
});
const sketch = await decodePng(new Uint8Array(await readFile('sketch.png'))); // 512×512, black strokes on white
const { images, seed } = await pipe.generate({
  prompt: 'a cat sitting on a chair, highly detailed', seed: 7,
  control: { image: invertControlImage(sketch), scale: 1 }, // white on black, as IDKiro's demo_sketch.py feeds it
});
await writeFile('cat.png', await encodePng(images[0]!, { parameters: `a cat sitting on a chair\nSeed: ${seed}` }));
pipe.dispose();
device.destroy();
