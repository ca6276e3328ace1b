/// <reference types="@webgpu/types" preserve="true" />
// @fewstep/tensor: tensors on WebGPU and the weight files they load from. Browser-safe; the Node helpers
// (file system, Dawn) are under `@fewstep/tensor/node`, the CPU reference ops under `@fewstep/tensor/testing`.

// Errors: everything fewstep throws on purpose, each class with a stable `code`.
export {
  FewstepError, InvalidArgumentError, ShapeError, UnsupportedError, FileFormatError, ResourceLimitError, DeviceError, AbortError,
  throwIfAborted, isAbortError, type ErrorCode,
} from './errors.js';

// Device: one WebGPU device (limits, features, buffer pool, pipelines, scopes, cancellation, kernel settings).
export { Device, NO_ADAPTER_HELP, type DeviceOptions, type AdapterDescription, type KernelSettings, type ScopedResource } from './device.js';
export type { BufferPool, PoolStats } from './pool.js';
export type { ProfileEntry } from './profiler.js';

// Tensors and their element types (f16 as half bits on the host).
export { Tensor, numel, shapeStr, type Shape } from './tensor.js';
// Streamed weights (low-memory mode): uploaded from their file when a kernel binds them.
export { ParameterCache, type StreamedParameter, type ParameterCacheStats } from './parameter_cache.js';
export { bytesPerElement, f16BitsToF32, f32ToF16Bits, bf16BitsToF32, roundToF16, f32ArrayToF16, f16ArrayToF32, type DType } from './dtype.js';

// File IO seam: every read goes through a FileSource (Node's is `nodeFiles` in @fewstep/tensor/node).
export { MemoryFile, type FileSource, type RandomAccessFile } from './io.js';

// safetensors: validated reading one tensor at a time, and writing.
export { SafetensorsFile, type TargetDType, type TensorData } from './safetensors/read.js';
export { SafetensorsError, ST_DTYPE_BYTES, type StDType, type TensorInfo } from './safetensors/format.js';
export { encodeSafetensors, safetensorsHeader, type TensorToWrite, type TensorHeaderEntry } from './safetensors/write.js';

// PyTorch checkpoints (torch.save zip archives), read as data: the pickle is never executed.
export { TorchCheckpointFile, type TorchTensorInfo, type TorchStorageInfo } from './torch/checkpoint.js';
export { TorchCheckpointError } from './torch/errors.js';

// Either format behind one face.
export {
  openTensorFile, tensorFileFrom, tensorFileFormat, TORCH_EXTENSIONS, TENSOR_FILE_LIMITS, type TensorFile, type TensorFileInfo, type TensorFileFormat, type TensorFileLimits,
} from './tensor_file.js';
