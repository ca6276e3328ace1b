import { ShapeError, Tensor, UnsupportedError, shapeStr, type Device, type DType } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams, sameDType, type ParamSchema } from '../runtime.js';
import { kernelSettings, type GemmTiling, type SgTile } from '../settings.js';
import { GEMM_PARAMS, a4Fits, matmulPieces, naiveGemmWGSL, subgroupGemmWGSL, tiledGemmWGSL, type GemmPieces } from './matmul.wgsl.js';

/**
 * naive: one thread per output (the oracle, `matmulNaive` in @fewstep/kernels/testing). tiled: the fast
 * kernel for the adapter — shared-memory tiles with register tiles, or on CPU adapters the subgroup GEMM.
 */
export type GemmVariant = 'naive' | 'tiled';

/** Real GPUs: 64×64 tiles, 16×16 threads with a 4×4 register tile each, K step 16. */
export const GPU_TILING: GemmTiling = { TX: 16, TY: 16, TM: 4, TN: 4, BK: 16 };
/**
 * CPU adapters (llvmpipe) without a fixed subgroup size: every lane's shared-memory access costs a
 * scalar loop, so fewer, fatter threads (8×8, 8×8 each, same 64×64 tile) reuse each loaded vec4 8
 * times; measured ~1.8× faster than 16×16 threads of 4×4.
 */
export const CPU_TILING: GemmTiling = { TX: 8, TY: 8, TM: 8, TN: 8, BK: 16 };
/**
 * CPU adapters with subgroups of one fixed size (lavapipe: 8): the subgroup GEMM, 32 rows × 8·8 columns
 * per 8-lane workgroup, no workgroup memory. Against CPU_TILING on lavapipe (2 Zen 4 cores, f32, medians
 * of 5 interleaved runs): matmul 4096×320×2560 883 → 328 ms, 4096×1280×320 448 → 172, 1024×640×640
 * 121 → 47; conv 3×3 320 ch @ 64² 1153 → 327, 640 @ 32² 1164 → 341, 64 @ 512² 2958 → 941 (f16 alike).
 * Cold compile ~2 s per pipeline, as before. C = 12 or 16 ran no faster; R is capped at 32.
 */
export const CPU_SG_TILE: SgTile = { R: 32, C: 8 };

const cpuAdapters = new WeakMap<Device, boolean>();

/** True for software adapters, where invocations are SIMD lanes on CPU cores (asked per dispatch: cached per device). */
export function isCpuAdapter(device: Device): boolean {
  let cpu = cpuAdapters.get(device);
  if (cpu === undefined) {
    const a = device.adapter;
    cpu = /llvmpipe|lavapipe|swiftshader|softpipe/i.test(`${a.name} ${a.description} ${a.device} ${a.vendor}`);
    cpuAdapters.set(device, cpu);
  }
  return cpu;
}

/**
 * GPUs, small problems: 32×32 tiles (8×8 threads, 4×4 each) give 4× the workgroups. A text encoder's
 * [77, 1024] × [1024, 1024] makes only 32 tiles of 64×64 — a fraction of an H200's 132 SMs (measured:
 * ~1.5 TFLOP/s there against ~20 at 4096 rows).
 */
export const GPU_SMALL_TILING: GemmTiling = { TX: 8, TY: 8, TM: 4, TN: 4, BK: 16 };
const GPU_SMALL_BELOW = 256; // 64×64 tiles in the whole dispatch

/**
 * The subgroup size when the device has subgroups and the adapter's size is fixed (min = max), else
 * null: the subgroup GEMM relies on its workgroup being exactly one subgroup.
 */
export function fixedSubgroupSize(device: Device): number | null {
  if (!device.features.subgroups) return null;
  const info = device.gpu.adapterInfo as GPUAdapterInfo | undefined;
  const lo = info?.subgroupMinSize, hi = info?.subgroupMaxSize;
  return lo !== undefined && lo === hi && lo > 0 ? lo : null;
}

/** A tiled GEMM: the shared-memory kernel with a tiling, or the subgroup kernel with a tile. */
export type GemmKernel = { kind: 'shared'; tiling: GemmTiling } | { kind: 'subgroup'; tile: SgTile; SG: number };

/**
 * The tiled GEMM for a [batch × M × N] product on this device: the device's `kernels.gemm` tiling or
 * subgroup tile when set, else on CPU adapters the subgroup GEMM (CPU_TILING without a fixed subgroup
 * size), else GPU_TILING or, for few tiles, GPU_SMALL_TILING.
 */
export function gemmKernel(device: Device, batch = 1, M = Infinity, N = Infinity): GemmKernel {
  const { tiling, sg } = kernelSettings(device).gemm;
  if (tiling) return { kind: 'shared', tiling };
  if (sg) {
    const SG = fixedSubgroupSize(device);
    if (SG === null) throw new UnsupportedError(`kernels.gemm.sg: the subgroup GEMM needs subgroups of one fixed size; adapter ${device.adapter.name} has none`);
    return { kind: 'subgroup', tile: sg, SG };
  }
  if (isCpuAdapter(device)) {
    const SG = fixedSubgroupSize(device);
    return SG === null ? { kind: 'shared', tiling: CPU_TILING } : { kind: 'subgroup', tile: CPU_SG_TILE, SG };
  }
  return { kind: 'shared', tiling: batch * ceilDiv(M, 64) * ceilDiv(N, 64) < GPU_SMALL_BELOW ? GPU_SMALL_TILING : GPU_TILING };
}

export interface MatmulOptions {
  /** Treat a's last two dims as [K, M] (use aᵀ). */
  transA?: boolean | undefined;
  /** Treat b's last two dims as [N, K] (use bᵀ) — PyTorch Linear weights are [out, in]. */
  transB?: boolean | undefined;
  /** Added per output column: shape [N]. */
  bias?: Tensor | undefined;
  /** Scales the product before the bias. */
  alpha?: number | undefined;
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
    params['tiles_m'] = 1;
    params['tiles_n'] = 1;
    const pipe = getPipeline(g.device, { family: g.family, entry: 'gemm_naive', dtype: g.dtype, code: naiveGemmWGSL(g.pieces, 'gemm_naive'), storage: g.storage });
    g.device.dispatch(pipe, packParams(g.schema, params), g.buffers, grid1d(ceilDiv(g.batch * g.M * g.N, 256)), `${g.label} (naive)`);
    return;
  }
  const kernel = gemmKernel(g.device, g.batch, g.M, g.N);
  if (kernel.kind === 'subgroup') {
    const { SG } = kernel;
    // Few output columns (TAESD's last conv has 3): fewer columns per lane instead of a 64-wide tile of
    // which 61 are padding (lavapipe, conv 64→3 @ 512²: 588 → ~315 ms).
    const tile = kernelSettings(g.device).gemm.sg ? kernel.tile : { ...kernel.tile, C: Math.max(1, Math.min(kernel.tile.C, Math.ceil(g.N / SG))) };
    params['tiles_m'] = ceilDiv(g.M, tile.R);
    params['tiles_n'] = ceilDiv(g.N, SG * tile.C);
    const pipe = getPipeline(g.device, {
      family: `${g.family}/sg${SG}r${tile.R}c${tile.C}`, entry: 'gemm_sg', dtype: g.dtype,
      code: subgroupGemmWGSL(g.pieces, 'gemm_sg', { ...tile, SG }), storage: g.storage, enables: ['subgroups'],
    });
    g.device.dispatch(pipe, packParams(g.schema, params), g.buffers, grid1d(g.batch * params['tiles_m'] * params['tiles_n']), g.label);
    return;
  }
  const t = kernel.tiling;
  const useA4 = g.pieces.a4 !== undefined && !g.pieces.aKFast && a4Fits(t);
  const pieces = useA4 ? g.pieces : { ...g.pieces, a4: undefined };
  const tilesM = ceilDiv(g.M, t.TY * t.TM), tilesN = ceilDiv(g.N, t.TX * t.TN);
  params['tiles_m'] = tilesM;
  params['tiles_n'] = tilesN;
  const splits = splitKFor(g, t, tilesM * tilesN * g.batch);
  if (splits > 1) {
    dispatchSplitK(g, t, pieces, useA4, params, splits, tilesM * tilesN * g.batch);
    return;
  }
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
 * How many K chunks a shared-memory GEMM takes: the device's `kernels.gemm.splitK`, else on real GPUs
 * enough to give ~`splitKTuning.target` workgroups when there are few tiles and K is long.
 */
function splitKFor(g: GemmDispatch, t: GemmTiling, tiles: number): number {
  const K = g.params['K']!;
  const maxByMemory = (S: number) => S * g.batch * g.M * g.N * 4 <= g.device.maxBinding;
  const { splitK, splitKTuning } = kernelSettings(g.device).gemm;
  const { below, target, minK } = splitKTuning;
  let S = splitK ?? (isCpuAdapter(g.device) || tiles >= below || K < minK ? 1 : Math.min(8, Math.floor(K / 256), Math.ceil(target / tiles)));
  S = Math.min(S, Math.ceil(K / t.BK));
  while (S > 1 && !maxByMemory(S)) S--;
  return Math.max(1, S);
}
function dispatchSplitK(g: GemmDispatch, t: GemmTiling, pieces: GemmPieces, useA4: boolean, params: Record<string, number>, splits: number, tiles: number): void {
  const K = g.params['K']!;
  const KC = ceilDiv(ceilDiv(K, splits), t.BK) * t.BK;
  const S = ceilDiv(K, KC);
  const part = Tensor.empty(g.device, [S * g.batch * g.M * g.N], 'f32');
  try {
    const storage = [...g.storage, 'rw' as const];
    const buffers = [...g.buffers, part.binding('split-K partial sums')];
    const code = tiledGemmWGSL(pieces, 'gemm_tiled', t, { partBinding: storage.length });
    const family = `${g.family}/r${t.TM}x${t.TN}${useA4 ? '/a4' : ''}/splitk`;
    const packed = packParams(g.schema, params);
    const main = getPipeline(g.device, { family, entry: 'gemm_tiled', dtype: g.dtype, code, storage, overrides: { TX: t.TX, TY: t.TY, BK: t.BK, KC } });
    g.device.dispatch(main, packed, buffers, grid1d(S * tiles), `${g.label} (split-K ×${S})`);
    const reduce = getPipeline(g.device, { family, entry: 'gemm_reduce', dtype: g.dtype, code, storage, overrides: { KC } });
    g.device.dispatch(reduce, packed, buffers, grid1d(ceilDiv(g.batch * g.M * g.N, 256)), `${g.label} (split-K reduce)`);
  } finally {
    part.dispose(); // later work reuses the buffer only after these dispatches (queue order)
  }
}

/**
 * Batched matmul with f32 accumulation: a [...batch, M, K] × b [...batch, K, N] → [...batch, M, N].
 * b may have fewer batch dims (broadcast, e.g. a 2-D weight shared by every batch).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return matmulVariant(a, b, opts, 'tiled');
}

/** `matmul` through the naive kernel (one thread per output): the oracle tests compare the tiled GEMMs with. */
export function matmulNaive(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return matmulVariant(a, b, opts, 'naive');
}

function matmulVariant(a: Tensor, b: Tensor, opts: MatmulOptions, variant: GemmVariant): Tensor {
  const { transA = false, transB = false, bias, alpha = 1 } = opts;
  const desc = () => `a ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} × b ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`matmul: operands need at least 2 dims: ${desc()}`);
  const dtype = sameDType('matmul', a, b, ...(bias ? [bias] : []));
  if (dtype === 'i32') throw new UnsupportedError('matmul: i32 is not supported');
  checkDType(a.device, 'matmul', dtype);
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const M = transA ? ca : ra, K = transA ? ra : ca;
  const Kb = transB ? cb : rb, N = transB ? rb : cb;
  if (K !== Kb) throw new ShapeError(`matmul: inner dims differ (K=${K} vs ${Kb}): ${desc()}`);
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  if (batchB.length && shapeStr(batchA) !== shapeStr(batchB)) {
    throw new ShapeError(`matmul: b's batch dims must equal a's or be absent: ${desc()}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new ShapeError(`matmul: bias ${shapeStr(bias.shape)} must be [${N}]: ${desc()}`);
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
    variant,
    label: `matmul ${desc()}`,
  });
  return c;
}

/** PyTorch nn.Linear: x [..., in] · weightᵀ (weight [out, in]) + bias [out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return matmul(x, weight, { transB: true, bias });
}
