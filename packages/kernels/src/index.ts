// @fewstep/kernels: hand-written WGSL kernels and their dispatchers, on @fewstep/tensor. Every op takes
// and returns Tensors on one Device and records its dispatches there. Oracles and internals for tests
// are under `@fewstep/kernels/testing`.

// Kernel settings per Device: `Device.open({ gpu, kernels: { gemm: { splitK: 4 } } })`, `device.kernels = …`;
// `kernelSettings(device)` reads them with the per-adapter defaults filled in.
export {
  kernelSettings, resolveKernelSettings, DEFAULT_SPLIT_K_TUNING,
  type GemmSettings, type AttentionSettings, type GroupNormSettings, type UpsampleSettings, type StreamingSettings, type ResolvedKernelSettings,
  type GemmTiling, type SgTile, type SplitKTuning,
} from './settings.js';
// The built-in GEMM tilings (values for `kernels.gemm.tiling` / `kernels.gemm.sg`).
export { GPU_TILING, GPU_SMALL_TILING, CPU_TILING, CPU_SG_TILE } from './matmul/matmul.js';

// Elementwise: activations, scaling, broadcasting binary ops, GEGLU.
export {
  unary, silu, gelu, geluTanh, quickGelu, tanh, relu, scale, binary, add, sub, mul, div, geglu, broadcastShapes,
  type UnaryOp, type BinaryOp,
} from './elementwise/elementwise.js';

// GEMM: batched matmul and nn.Linear; NCHW convolution as an implicit GEMM.
export { matmul, linear, type MatmulOptions } from './matmul/matmul.js';
export { conv2d, type Conv2dOptions } from './conv2d/conv2d.js';

// Normalisation: GroupNorm (optional fused SiLU), LayerNorm, softmax.
export { groupNorm, layerNorm, softmax } from './norm/norm.js';

// Multi-head scaled dot-product attention (flash style; large head dims through GEMMs).
export { attention, ATTENTION_MAX_HEAD_DIM, type AttentionOptions } from './attention/attention.js';

// Data movement: concat, permute, slice, dtype casts, nearest ×2 upsampling.
export { concat, permute, slice, cast, upsampleNearest2x } from './layout/layout.js';

// Embeddings: token (+ position) gather, diffusers' timestep embedding.
export { embedding, timestepEmbedding, timestepFrequencies, type EmbeddingOptions, type TimestepEmbeddingOptions } from './embedding/embedding.js';
