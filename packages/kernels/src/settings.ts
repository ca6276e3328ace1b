/**
 * Kernel tuning per Device. @fewstep/tensor declares an empty `KernelSettings` that a Device carries
 * (`Device.open({ gpu, kernels })`, `device.kernels`); this module declares its fields and is the one
 * place that fills in defaults and checks values. Every field is optional: left out (or null) means
 * "chosen per adapter". Whatever a setting changes in the generated WGSL is part of the pipeline-cache
 * key (family, entry, overrides), and `getPipeline` refuses a key reused for different code.
 */
import { InvalidArgumentError, type Device, type KernelSettings } from '@fewstep/tensor';
import type { RegTile, SgTile } from './matmul/matmul.wgsl.js';

export type { SgTile };

/** Tiling of the shared-memory GEMM (used by matmul and conv2d). Threads TX×TY, tile (TY·TM)×(TX·TN)×BK. */
export interface GemmTiling extends RegTile {
  TX: number;
  TY: number;
  BK: number;
}

/**
 * When split-K kicks in on GPUs: fewer than `below` workgroups and K ≥ `minK`; the splits aim at
 * `target` workgroups.
 */
export interface SplitKTuning {
  below: number;
  target: number;
  minK: number;
}

/** GEMM (matmul, linear, conv2d). */
export interface GemmSettings {
  /** Forces the shared-memory GEMM with this tiling (TM, TN multiples of 4). */
  tiling?: GemmTiling | null | undefined;
  /** Forces the subgroup GEMM with this tile (needs a fixed subgroup size); ignored when `tiling` is set. */
  sg?: SgTile | null | undefined;
  /** Forces this many K chunks on the shared-memory GEMM (1 = never split). */
  splitK?: number | null | undefined;
  /** When split-K is chosen automatically (GPUs); `fewstep bench --split-k` tunes it. */
  splitKTuning?: Partial<SplitKTuning> | undefined;
}

/** Convolution. */
export interface ConvSettings {
  /**
   * Winograd F(m×m, 3×3) for 3×3 stride-1 convs: 4 or 2 forces that tile, 'off' the implicit GEMM;
   * null or absent: chosen per adapter and shape (see conv2d's useWinograd).
   */
  winograd?: 2 | 4 | 'off' | null | undefined;
  /** Output tiles per Winograd chunk (null: as many as keep each f32 intermediate ≤ 32 MiB). */
  winogradChunkTiles?: number | null | undefined;
  /** Output channels per Winograd chunk (null: as many as keep the transformed filter ≤ 64 MiB). */
  winogradChunkChannels?: number | null | undefined;
}

/** Flash attention. */
export interface AttentionSettings {
  /** Forces the shared-memory kernel, or the subgroup kernel (needs a fixed subgroup size). */
  variant?: 'shared' | 'subgroup' | null | undefined;
  /** Forces the subgroup kernel's queries per lane (1–8). */
  tq?: number | null | undefined;
}

/** GroupNorm: 'auto' takes the split kernel for large groups on real GPUs. */
export interface GroupNormSettings {
  split?: 'auto' | 'always' | 'never' | undefined;
}

/** Nearest-neighbour upsampling. */
export interface UpsampleSettings {
  /** Uses the vec4 kernel when W is a multiple of 4 (default true). */
  vec4?: boolean | undefined;
}

/**
 * Memory-bound kernels (elementwise, casts, GroupNorm, LayerNorm): 'chunked' = workgroups of a few
 * invocations (the adapter's fixed subgroup size, else 8) each walking a chunk of vec4s, reductions by
 * subgroup ops — the default on CPU adapters, where invocations are SIMD lanes; 'flat' = one element
 * per invocation in workgroups of 256 (reductions through workgroup memory) — the default on GPUs, and
 * what runs when a shape or the adapter does not fit the chunked kernels.
 */
export interface StreamingSettings {
  variant?: 'chunked' | 'flat' | null | undefined;
}

declare module '@fewstep/tensor' {
  interface KernelSettings {
    streaming?: StreamingSettings | undefined;
    gemm?: GemmSettings | undefined;
    conv?: ConvSettings | undefined;
    attention?: AttentionSettings | undefined;
    groupNorm?: GroupNormSettings | undefined;
    upsample?: UpsampleSettings | undefined;
  }
}

/** Settings with every default filled in (what the dispatchers read). */
export interface ResolvedKernelSettings {
  readonly gemm: { readonly tiling: GemmTiling | null; readonly sg: SgTile | null; readonly splitK: number | null; readonly splitKTuning: SplitKTuning };
  readonly conv: { readonly winograd: 2 | 4 | 'off' | null; readonly winogradChunkTiles: number | null; readonly winogradChunkChannels: number | null };
  readonly attention: { readonly variant: 'shared' | 'subgroup' | null; readonly tq: number | null };
  readonly groupNorm: { readonly split: 'auto' | 'always' | 'never' };
  readonly upsample: { readonly vec4: boolean };
  readonly streaming: { readonly variant: 'chunked' | 'flat' | null };
}

/**
 * Split-K defaults, measured on an H200 (SDXS-512 f16, warm, medians of 10, A/B twice): 128/256 →
 * UNet 46 ms, image 71–72 ms; 512/1024 → UNet 35–36 ms, image 57–59 ms (≈17 images/s).
 */
export const DEFAULT_SPLIT_K_TUNING: Readonly<SplitKTuning> = Object.freeze({ below: 512, target: 1024, minK: 1024 });

const resolved = new WeakMap<object, ResolvedKernelSettings>();

/** The device's kernel settings with defaults filled in (checked once per settings object). */
export function kernelSettings(device: Device): ResolvedKernelSettings {
  const k = device.kernels;
  let r = resolved.get(k);
  if (!r) resolved.set(k, (r = resolveKernelSettings(k)));
  return r;
}

/** Fills in defaults and checks every value; throws InvalidArgumentError naming the field (`kernels.gemm.splitK`). */
export function resolveKernelSettings(k: KernelSettings): ResolvedKernelSettings {
  const g = k.gemm ?? {}, a = k.attention ?? {}, n = k.groupNorm ?? {}, u = k.upsample ?? {}, cv = k.conv ?? {}, st = k.streaming ?? {};
  const winograd = cv.winograd ?? null;
  if (winograd !== null && winograd !== 2 && winograd !== 4 && winograd !== 'off') throw new InvalidArgumentError(`kernels.conv.winograd: expected 2, 4, 'off' or null, got ${JSON.stringify(winograd)}`, 'kernels.conv.winograd');
  const winogradChunkTiles = cv.winogradChunkTiles ?? null;
  if (winogradChunkTiles !== null) posInt(winogradChunkTiles, 'kernels.conv.winogradChunkTiles');
  const winogradChunkChannels = cv.winogradChunkChannels ?? null;
  if (winogradChunkChannels !== null) posInt(winogradChunkChannels, 'kernels.conv.winogradChunkChannels');
  const tiling = g.tiling ?? null, sg = g.sg ?? null;
  if (tiling) {
    for (const f of ['TX', 'TY', 'TM', 'TN', 'BK'] as const) posInt(tiling[f], `kernels.gemm.tiling.${f}`);
    if (tiling.TM % 4 || tiling.TN % 4) throw new InvalidArgumentError(`kernels.gemm.tiling: TM and TN must be multiples of 4, got TM=${tiling.TM}, TN=${tiling.TN}`, 'kernels.gemm.tiling');
  }
  if (sg) {
    posInt(sg.R, 'kernels.gemm.sg.R');
    posInt(sg.C, 'kernels.gemm.sg.C');
    if (sg.R > 32) throw new InvalidArgumentError(`kernels.gemm.sg.R: at most 32 rows, got ${sg.R}`, 'kernels.gemm.sg.R');
  }
  const splitK = g.splitK ?? null;
  if (splitK !== null) posInt(splitK, 'kernels.gemm.splitK');
  const splitKTuning = { ...DEFAULT_SPLIT_K_TUNING, ...definedOnly(g.splitKTuning ?? {}) };
  for (const f of ['below', 'target', 'minK'] as const) posInt(splitKTuning[f], `kernels.gemm.splitKTuning.${f}`);
  const variant = a.variant ?? null;
  if (variant !== null && variant !== 'shared' && variant !== 'subgroup') throw new InvalidArgumentError(`kernels.attention.variant: expected 'shared', 'subgroup' or null, got ${JSON.stringify(variant)}`, 'kernels.attention.variant');
  const tq = a.tq ?? null;
  if (tq !== null && (posInt(tq, 'kernels.attention.tq'), tq > 8)) throw new InvalidArgumentError(`kernels.attention.tq: at most 8 queries per lane, got ${tq}`, 'kernels.attention.tq');
  const split = n.split ?? 'auto';
  if (!['auto', 'always', 'never'].includes(split)) throw new InvalidArgumentError(`kernels.groupNorm.split: expected 'auto', 'always' or 'never', got ${JSON.stringify(split)}`, 'kernels.groupNorm.split');
  const vec4 = u.vec4 ?? true;
  if (typeof vec4 !== 'boolean') throw new InvalidArgumentError(`kernels.upsample.vec4: expected a boolean, got ${JSON.stringify(vec4)}`, 'kernels.upsample.vec4');
  const streaming = st.variant ?? null;
  if (streaming !== null && streaming !== 'chunked' && streaming !== 'flat') throw new InvalidArgumentError(`kernels.streaming.variant: expected 'chunked', 'flat' or null, got ${JSON.stringify(streaming)}`, 'kernels.streaming.variant');
  return Object.freeze({
    gemm: Object.freeze({ tiling: tiling && Object.freeze({ ...tiling }), sg: sg && Object.freeze({ ...sg }), splitK, splitKTuning: Object.freeze(splitKTuning) }),
    conv: Object.freeze({ winograd, winogradChunkTiles, winogradChunkChannels }),
    attention: Object.freeze({ variant, tq }),
    groupNorm: Object.freeze({ split }),
    upsample: Object.freeze({ vec4 }),
    streaming: Object.freeze({ variant: streaming }),
  });
}

function posInt(v: unknown, field: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${field}: expected a positive integer, got ${JSON.stringify(v)}`, field);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
