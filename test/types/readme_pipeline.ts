// Compile-only: the README's library example must type-check against the public API (never executed).
export {};

import { writeFile } from 'node:fs/promises';
import { Device } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node'; // in a browser: Device.open({ gpu: navigator.gpu }) and your own FileSource
import { Pipeline, encodePng } from '@fewstep/models';
import { hubResolver } from '@fewstep/weights-tools';      // Node: hub ids → the Hugging Face cache

const device = await Device.open({ gpu: await nodeGPU() });
const pipe = await Pipeline.fromPretrained('IDKiro/sdxs-512-0.9', {
  device, io: nodeFiles, dtype: 'f32', vae: 'tiny', resolve: hubResolver(),
});
const { images, latents, seed } = await pipe.generate({
  prompt: 'a photo of a corgi in a forest', seed: 42,           // steps/guidance/size: the model's own
  onProgress: (e) => e.type === 'stage' && e.status === 'end' && console.error(e.stage, e.step ?? '', `${e.ms.toFixed(0)} ms`),
});
await writeFile('corgi.png', await encodePng(images[0]!, { parameters: `a photo of a corgi in a forest\nSeed: ${seed}` }));
pipe.dispose();
device.destroy();
