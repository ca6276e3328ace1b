// @fewstep/kernels/testing: oracles and internals for tests and benchmarks, not for applications.

// Oracle kernels (one thread per output) that the fast paths are checked against.
export { matmulNaive } from './matmul/matmul.js';
export { conv2dDirect, conv2dPath, WINOGRAD_MIN_TILES } from './conv2d/conv2d.js';
// The GEMM-based attention behind `attention` for head dims > ATTENTION_MAX_HEAD_DIM (with a score-block cap to force chunks).
export { attentionMaterialized } from './attention/attention_materialized.js';

// Adapter facts the dispatchers decide on.
export { fixedSubgroupSize, isCpuAdapter, gemmKernel, type GemmKernel } from './matmul/matmul.js';

// Kernel plumbing: the pipeline cache, params packing, the embedding table's binding windows.
export { getPipeline, packParams, paramsStruct, specialize, type KernelDef, type ParamSchema, type ScalarType } from './runtime.js';
export { tableWindows } from './embedding/embedding.js';
