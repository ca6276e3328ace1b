// One device per test file, opened lazily; GPU tests skip cleanly only when FEWSTEP_NO_GPU is set,
// otherwise a missing adapter fails loudly (CI installs lavapipe).
import { Device } from '@fewstep/tensor';
import { nodeGPU } from '@fewstep/tensor/node';

let dev: Promise<Device> | null = null;

export function gpuDevice(): Promise<Device> {
  dev ??= nodeGPU().then((gpu) => Device.open({ gpu }));
  return dev;
}

export async function closeDevice(): Promise<void> {
  if (dev) (await dev).destroy();
  dev = null;
}
