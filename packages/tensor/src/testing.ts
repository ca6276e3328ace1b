// @fewstep/tensor/testing: helpers for tests and benchmarks, not for applications. The CPU reference
// implementation of every kernel (plain TypeScript, float64 math) and the checkpoint reader's parts.

// CPU reference ops, as the `cpu` namespace (cpu.cpuMatmul, cpu.cpuConv2d, cpu.erf, …).
export * as cpu from './cpu/index.js';

// The buffer pool's size classes (to predict pool statistics).
export { sizeClass } from './pool.js';

// PyTorch checkpoint internals: the zip reader and the whitelist unpickler.
export { ZipArchive, crc32, type ZipEntry } from './torch/zip.js';
export { unpickle, describePy, isAllowedGlobal, PyTuple, PyList, PyDict, PyGlobal, StorageRef, TensorRef, type PyValue, type UnpickleContext } from './torch/pickle.js';
