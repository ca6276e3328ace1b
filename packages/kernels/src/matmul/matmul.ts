import { Tensor, shapeStr, type Device, type DType } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams, sameDType, type ParamSchema } from '../runtime';
import { GEMM_PARAMS, a4Fits, matmulPieces, naiveGemmWGSL, tiledGemmWGSL, type GemmPieces, type RegTile } from './matmul.wgsl';

/** naive: one thread per output (the oracle). tiled: shared-memory tiles with register tiles. */
export type GemmVariant = 'naive' | 'tiled';

/** Tiling of the shared-memory GEMM (used by matmul and conv2d). Threads TX×TY, tile (TY·TM)×(TX·TN)×BK. */
export interface GemmTiling extends RegTile {
  TX: number;
  TY: number;
  BK: number;
}

/** Real GPUs: 64×64 tiles, 16×16 threads with a 4×4 register tile each, K step 16. */
export const GPU_TILING: GemmTiling = { TX: 16, TY: 16, TM: 4, TN: 4, BK: 16 };
/**
 * CPU adapters (llvmpipe): every lane's shared-memory access costs a scalar loop, so fewer, fatter
 * threads (8×8, 8×8 each, same 64×64 tile) reuse each loaded vec4 8 times; measured ~1.8× faster.
 */
export const CPU_TILING: GemmTiling = { TX: 8, TY: 8, TM: 8, TN: 8, BK: 16 };

/** Process-wide knobs for tests (force the oracle) and benchmarks (try tilings); null = per adapter. */
export const gemmConfig: { variant: GemmVariant; tiling: GemmTiling | null } = { variant: 'tiled', tiling: null };

/** True for software adapters, where invocations are SIMD lanes on CPU cores. */
export function isCpuAdapter(device: Device): boolean {
  const a = device.adapter;
  return /llvmpipe|lavapipe|swiftshader|softpipe/i.test(`${a.name} ${a.description} ${a.device} ${a.vendor}`);
}

/**
 * GPUs, small problems: 32×32 tiles (8×8 threads, 4×4 each) give 4× the workgroups. A text encoder's
 * [77, 1024] × [1024, 1024] makes only 32 tiles of 64×64 — a fraction of an H200's 132 SMs (measured:
 * ~1.5 TFLOP/s there against ~20 at 4096 rows).
 */
export const GPU_SMALL_TILING: GemmTiling = { TX: 8, TY: 8, TM: 4, TN: 4, BK: 16 };
const GPU_SMALL_BELOW = 256; // 64×64 tiles in the whole dispatch

/** The tiling for a [batch × M × N] product on this device (a CPU adapter always takes CPU_TILING). */
export function gemmTiling(device: Device, batch = 1, M = Infinity, N = Infinity): GemmTiling {
  if (gemmConfig.tiling) return gemmConfig.tiling;
  if (isCpuAdapter(device)) return CPU_TILING;
  return batch * ceilDiv(M, 64) * ceilDiv(N, 64) < GPU_SMALL_BELOW ? GPU_SMALL_TILING : GPU_TILING;
}

export interface MatmulOptions {
  /** Treat a's last two dims as [K, M] (use aᵀ). */
  transA?: boolean;
  /** Treat b's last two dims as [N, K] (use bᵀ) — PyTorch Linear weights are [out, in]. */
  transB?: boolean;
  /** Added per output column: shape [N]. */
  bias?: Tensor;
  /** Scales the product before the bias. */
  alpha?: number;
  /** Kernel choice; defaults to `gemmConfig.variant` (tiled). */
  variant?: GemmVariant;
}

export interface GemmDispatch {
  device: Device;
  dtype: DType;
  /** Pipeline family name; must change whenever `pieces` would generate different code. */
  family: string;
  pieces: GemmPieces;
  schema: ParamSchema;
  /** Values for `schema`; tiles_m/tiles_n are filled in here. */
  params: Record<string, number>;
  M: number;
  N: number;
  batch: number;
  storage: ('read' | 'rw')[];
  buffers: GPUBufferBinding[];
  variant: GemmVariant;
  label: string;
}

/** Records one GEMM-shaped dispatch (naive or tiled) for matmul and conv2d alike. */
export function dispatchGemm(g: GemmDispatch): void {
  const params: Record<string, number> = { ...g.params, batch: g.batch };
  if (g.variant === 'naive') {
    params.tiles_m = 1;
    params.tiles_n = 1;
    const pipe = getPipeline(g.device, { family: g.family, entry: 'gemm_naive', dtype: g.dtype, code: naiveGemmWGSL(g.pieces, 'gemm_naive'), storage: g.storage });
    g.device.dispatch(pipe, packParams(g.schema, params), g.buffers, grid1d(ceilDiv(g.batch * g.M * g.N, 256)), `${g.label} (naive)`);
    return;
  }
  const t = gemmTiling(g.device, g.batch, g.M, g.N);
  const useA4 = g.pieces.a4 !== undefined && !g.pieces.aKFast && a4Fits(t);
  const pieces = useA4 ? g.pieces : { ...g.pieces, a4: undefined };
  const tilesM = ceilDiv(g.M, t.TY * t.TM), tilesN = ceilDiv(g.N, t.TX * t.TN);
  params.tiles_m = tilesM;
  params.tiles_n = tilesN;
  const pipe = getPipeline(g.device, {
    family: `${g.family}/r${t.TM}x${t.TN}${useA4 ? '/a4' : ''}`,
    entry: 'gemm_tiled',
    dtype: g.dtype,
    code: tiledGemmWGSL(pieces, 'gemm_tiled', t),
    storage: g.storage,
    overrides: { TX: t.TX, TY: t.TY, BK: t.BK },
  });
  g.device.dispatch(pipe, packParams(g.schema, params), g.buffers, grid1d(g.batch * tilesM * tilesN), g.label);
}

/**
 * Batched matmul with f32 accumulation: a [...batch, M, K] × b [...batch, K, N] → [...batch, M, N].
 * b may have fewer batch dims (broadcast, e.g. a 2-D weight shared by every batch).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias, alpha = 1 } = opts;
  const desc = () => `a ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} × b ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new Error(`matmul: operands need at least 2 dims: ${desc()}`);
  const dtype = sameDType('matmul', a, b, ...(bias ? [bias] : []));
  if (dtype === 'i32') throw new Error('matmul: i32 is not supported');
  checkDType(a.device, 'matmul', dtype);
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const M = transA ? ca : ra, K = transA ? ra : ca;
  const Kb = transB ? cb : rb, N = transB ? rb : cb;
  if (K !== Kb) throw new Error(`matmul: inner dims differ (K=${K} vs ${Kb}): ${desc()}`);
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  if (batchB.length && shapeStr(batchA) !== shapeStr(batchB)) {
    throw new Error(`matmul: b's batch dims must equal a's or be absent: ${desc()}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new Error(`matmul: bias ${shapeStr(bias.shape)} must be [${N}]: ${desc()}`);
  const batch = batchA.reduce((x, y) => x * y, 1);
  const c = Tensor.empty(a.device, [...batchA, M, N], dtype);
  if (c.size === 0) return c;
  dispatchGemm({
    device: a.device, dtype, family: `matmul${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`, pieces: matmulPieces(transA, transB),
    schema: GEMM_PARAMS,
    params: { M, N, K, a_bs: M * K, b_bs: batchB.length ? K * N : 0, c_bs: M * N, alpha, has_bias: bias ? 1 : 0 },
    M, N, batch,
    storage: ['read', 'read', 'read', 'rw'],
    // Without a bias, a stands in for the unused binding (never read).
    buffers: [a.binding('matmul a'), b.binding('matmul b'), (bias ?? a).binding('matmul bias'), c.binding('matmul out')],
    variant: opts.variant ?? gemmConfig.variant,
    label: `matmul ${desc()}`,
  });
  return c;
}

/** PyTorch nn.Linear: x [..., in] · weightᵀ (weight [out, in]) + bias [out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return matmul(x, weight, { transB: true, bias });
}
