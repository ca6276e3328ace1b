import { ShapeError, Tensor, UnsupportedError, shapeStr } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams, sameDType } from '../runtime.js';
import { kernelSettings } from '../settings.js';
import { ATTENTION_PARAMS, attentionWGSL, subgroupAttentionWGSL, type AttentionTiles, type SgAttentionTile } from './attention.wgsl.js';
import { fixedSubgroupSize, isCpuAdapter } from '../matmul/matmul.js';
import { attentionMaterialized } from './attention_materialized.js';

export interface AttentionOptions {
  /** Defaults to 1/sqrt(headDim). */
  scale?: number | undefined;
  /** Causal mask: query i attends keys 0..i (CLIP). */
  causal?: boolean | undefined;
  /** Optional key padding mask [B, Lk] (1 = keep, 0 = masked out), as transformers' attention_mask. */
  keyMask?: Tensor | undefined;
}

/** Largest head dim the flash kernel takes (registers: 2·D floats per thread); larger ones go through GEMMs. */
export const ATTENTION_MAX_HEAD_DIM = 256;
const NT = 64;
const sources = new Map<string, string>();

/**
 * Subgroup kernel, queries per lane: as many as keep TQ·DC (the size of the written-out block body)
 * near SG_BODY, at most 8. Cold compile on lavapipe grows faster than linearly with it: TQ·DC = 64–100
 * compiles in 2–4 s (D=80: TQ=4 2.3 s, 5 3.0 s, 8 6.2 s; D=160: TQ=2 2.8 s, 4 7.1 s; D=256, TQ=1: 4.1 s),
 * while more queries per lane cut the K/V loads per FMA (8 heads, 1024×1024×80, f32, medians of
 * interleaved runs: TQ=2 129 ms, 4 75–91, 5 60–68, 8 77; D=40, TQ=4 → 8: 15.7 → 12.9 ms).
 */
const SG_BODY = 100;

/**
 * The subgroup kernel's tile on CPU adapters with a fixed subgroup size (or when the device's
 * `kernels.attention.variant` forces it), else null.
 */
function sgTile(device: Tensor['device'], d: number, dc: number): SgAttentionTile | null {
  const SG = fixedSubgroupSize(device);
  const cfg = kernelSettings(device).attention;
  if (cfg.variant === 'subgroup') {
    if (SG === null) throw new UnsupportedError(`kernels.attention.variant: the subgroup attention needs subgroups of one fixed size; adapter ${device.adapter.name} has none`);
  } else if (cfg.variant === 'shared' || SG === null || !isCpuAdapter(device)) return null;
  const tq = cfg.tq ?? Math.min(8, Math.max(1, Math.floor(SG_BODY / dc)));
  return { dc, sg: SG, tq, vec: d % 4 === 0 };
}

/**
 * Tile configuration of the shared-memory kernel. GPUs: one query per thread (2·D accumulator floats
 * in registers). CPU rasterisers without a fixed subgroup size (with one: sgTile) run a workgroup as
 * SIMD lanes where every shared-memory read costs a gather, so there each thread takes several queries
 * to reuse each K/V read (measured on lavapipe, CPU time: D=40 ~2× faster with 4 queries per thread;
 * D=80 best with 2); register spills are cheap there.
 * Keys per tile: as many as fit K and V tiles (f32 vec4) plus the BK×BQ scores in 16 KiB, at most 32;
 * the budget leaves real GPUs room for several workgroups per core.
 */
function tiles(device: Tensor['device'], dc: number): AttentionTiles {
  const tq = !isCpuAdapter(device) ? 1 : dc <= 10 ? 4 : dc <= 20 ? 2 : 1;
  const budget = Math.min(16384, device.limits.maxComputeWorkgroupStorageSize);
  let bk = 32;
  while (bk > 1 && 2 * bk * dc * 16 + bk * NT * tq * 4 + bk * 4 > budget) bk /= 2;
  return { dc, nt: NT, tq, bk };
}

/**
 * Multi-head scaled dot-product attention in the projection layout:
 * q [B, Lq, H·D], k [B, Lk, H·D], v [B, Lk, H·D] → [B, Lq, H·D]. Online softmax (flash style):
 * the Lq×Lk score matrix is never materialised.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, opts: AttentionOptions = {}): Tensor {
  const op = 'attention';
  const shapes = () => `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}, heads=${heads}`;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) throw new ShapeError(`${op}: expected rank-3 [B, L, H·D] inputs, got ${shapes()}`);
  const [b, lq, hd] = q.shape as [number, number, number];
  const lk = k.shape[1]!;
  if (k.shape[0] !== b || v.shape[0] !== b || k.shape[2] !== hd || v.shape[2] !== hd || v.shape[1] !== lk) {
    throw new ShapeError(`${op}: q/k/v shapes do not match (${shapes()})`);
  }
  if (!Number.isInteger(heads) || heads < 1 || hd % heads) throw new ShapeError(`${op}: H·D = ${hd} is not divisible by heads (${shapes()})`, 'heads');
  const d = hd / heads;
  const dtype = sameDType(op, q, k, v);
  if (dtype === 'i32') throw new UnsupportedError(`${op}: i32 inputs are not supported (${shapes()})`);
  checkDType(q.device, op, dtype);
  const mask = opts.keyMask;
  if (mask) {
    if (mask.size !== b * lk || mask.shape[0] !== b) throw new ShapeError(`${op}: keyMask ${shapeStr(mask.shape)} is not [B, Lk] = [${b}, ${lk}] (${shapes()})`);
    if (mask.dtype !== 'f32' && mask.dtype !== dtype) throw new ShapeError(`${op}: keyMask must be f32 or ${dtype}, got ${mask.dtype} (${shapes()})`);
  }
  if (lk === 0 && lq > 0) throw new ShapeError(`${op}: no keys to attend (${shapes()})`);
  if (d > ATTENTION_MAX_HEAD_DIM) {
    if (opts.causal || mask) throw new UnsupportedError(`${op}: head dim ${d} > ${ATTENTION_MAX_HEAD_DIM} supports neither causal nor keyMask (${shapes()})`);
    return attentionMaterialized(q, k, v, heads, opts.scale ?? 1 / Math.sqrt(d));
  }

  const out = Tensor.empty(q.device, [b, lq, hd], dtype);
  if (!out.size) return out;
  const dc = Math.ceil(d / 4);
  const sg = sgTile(q.device, d, dc);
  let pipe: GPUComputePipeline, nqb: number;
  if (sg) {
    nqb = ceilDiv(lq, sg.sg * sg.tq);
    const family = `attention_sg.dc${dc}.sg${sg.sg}.tq${sg.tq}${sg.vec ? '.v' : ''}`;
    let code = sources.get(family);
    if (!code) sources.set(family, (code = subgroupAttentionWGSL(sg)));
    pipe = getPipeline(q.device, { family, entry: 'attention_sg', dtype, code, storage: ['read', 'read', 'read', 'read', 'rw'], enables: ['subgroups'] });
  } else {
    const t = tiles(q.device, dc);
    nqb = ceilDiv(lq, t.nt * t.tq);
    // The source is generated per tile configuration, so it is part of the family name (pipeline key).
    const family = `attention.dc${t.dc}.nt${t.nt}.tq${t.tq}.bk${t.bk}`;
    let code = sources.get(family);
    if (!code) sources.set(family, (code = attentionWGSL(t)));
    pipe = getPipeline(q.device, {
      family, entry: 'attention', dtype, code,
      storage: ['read', 'read', 'read', 'read', 'rw'],
    });
  }
  const units = b * heads * nqb;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const flags = (opts.causal ? 1 : 0) | (mask ? 2 : 0) | (mask?.dtype === 'f16' ? 4 : 0);
  const params = packParams(ATTENTION_PARAMS, { units, nqb, heads, lq, lk, d, hd, scale: scale * Math.LOG2E, flags });
  const qb = q.binding('attention q');
  q.device.dispatch(pipe, params, [qb, k.binding('attention k'), v.binding('attention v'), mask?.binding('attention keyMask') ?? qb, out.binding('attention out')], grid1d(units), `${op} ${b}×${heads}h ${lq}×${lk}×${d}`);
  return out;
}
