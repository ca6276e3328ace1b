// Exit 0 when Dawn finds a WebGPU adapter (prints its name), 1 otherwise. Used by .ci/run and the README.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.error('no WebGPU adapter');
  process.exit(1);
}
const i = adapter.info;
console.log(`WebGPU adapter: ${i.description || i.device || i.vendor}`);
process.exit(0);
