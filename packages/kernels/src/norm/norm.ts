import { ShapeError, Tensor, UnsupportedError, shapeStr } from '@fewstep/tensor';
import { checkDType, getPipeline, grid1d, packParams } from '../runtime.js';
import { kernelSettings } from '../settings.js';
import {
  GROUPNORM_CHUNKED_PARAMS, GROUPNORM_CHUNKED_WGSL, GROUPNORM_PARAMS, GROUPNORM_WGSL, LAYERNORM_CHUNKED_PARAMS, LAYERNORM_CHUNKED_WGSL, LAYERNORM_WGSL, LN_ROWS,
  ROW_PARAMS, SM_ROWS, SOFTMAX_CHUNKED_WGSL, SOFTMAX_WGSL,
} from './norm.wgsl.js';
import { chunkedSubgroup } from '../streaming.js';
import { ceilDiv } from '../runtime.js';
import { GROUPNORM_SPLIT_MIN, groupNormSplit } from './groupnorm_split.js';
import { isCpuAdapter } from '../matmul/matmul.js';

function checkFloat(op: string, x: Tensor): void {
  if (x.dtype === 'i32') throw new UnsupportedError(`${op}: i32 input ${shapeStr(x.shape)} is not supported`);
  checkDType(x.device, op, x.dtype);
}

/** gamma/beta must be [n] in x's dtype (they bind as the same storage type). */
function checkAffine(op: string, x: Tensor, name: string, t: Tensor | null, n: number): void {
  if (!t) return;
  if (t.size !== n) throw new ShapeError(`${op}: ${name} ${shapeStr(t.shape)} does not match ${n} features of x ${shapeStr(x.shape)}`);
  if (t.dtype !== x.dtype) throw new ShapeError(`${op}: ${name} is ${t.dtype} but x ${shapeStr(x.shape)} is ${x.dtype}`);
}

/** GroupNorm over x [N, C, ...spatial] with per-channel gamma/beta [C]; optional fused SiLU. */
export function groupNorm(x: Tensor, groups: number, gamma: Tensor | null, beta: Tensor | null, eps: number, opts: { silu?: boolean | undefined } = {}): Tensor {
  const op = 'groupNorm';
  checkFloat(op, x);
  if (x.rank < 2) throw new ShapeError(`${op}: x ${shapeStr(x.shape)} needs rank ≥ 2 ([N, C, ...spatial])`);
  const [n, c] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups < 1 || c % groups) throw new ShapeError(`${op}: ${c} channels of x ${shapeStr(x.shape)} are not divisible by ${groups} groups`, 'groups');
  checkAffine(op, x, 'gamma', gamma, c);
  checkAffine(op, x, 'beta', beta, c);
  const spatial = x.size / (n * c || 1);
  const y = Tensor.empty(x.device, x.shape, x.dtype);
  if (!x.size) return y;
  const units = n * groups;
  // Which kernel: 'auto' = the split one for large groups on real GPUs (the device's kernels.groupNorm.split forces either).
  const split = kernelSettings(x.device).groupNorm.split;
  if (split === 'always' || (split === 'auto' && !isCpuAdapter(x.device) && x.size / units >= GROUPNORM_SPLIT_MIN)) {
    groupNormSplit(x, groups, gamma, beta, eps, !!opts.silu, y);
    return y;
  }
  const flags = (gamma ? 1 : 0) | (beta ? 2 : 0) | (opts.silu ? 4 : 0);
  const xb = x.binding('groupNorm x');
  const SG = chunkedSubgroup(x.device);
  if (SG !== null && spatial % 4 === 0) {
    const pipe = getPipeline(x.device, { family: 'norm/chunked', entry: 'groupnorm4', dtype: x.dtype, code: GROUPNORM_CHUNKED_WGSL, storage: ['read', 'read', 'read', 'rw'], overrides: { WG: SG }, enables: ['subgroups'] });
    const params = packParams(GROUPNORM_CHUNKED_PARAMS, { units, groups, cpg: c / groups, sp4: spatial / 4, eps, flags });
    x.device.dispatch(pipe, params, [xb, gamma?.binding('groupNorm gamma') ?? xb, beta?.binding('groupNorm beta') ?? xb, y.binding('groupNorm y')], grid1d(units), op);
    return y;
  }
  const pipe = getPipeline(x.device, { family: 'norm', entry: 'groupnorm', dtype: x.dtype, code: GROUPNORM_WGSL, storage: ['read', 'read', 'read', 'rw'] });
  const params = packParams(GROUPNORM_PARAMS, { units, groups, cpg: c / groups, spatial, eps, flags });
  // Absent gamma/beta bind x as a stand-in (never read: the flags say so).
  x.device.dispatch(pipe, params, [xb, gamma?.binding('groupNorm gamma') ?? xb, beta?.binding('groupNorm beta') ?? xb, y.binding('groupNorm y')], grid1d(units), op);
  return y;
}

/** LayerNorm over the last dim with gamma/beta [D]. */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps: number): Tensor {
  const op = 'layerNorm';
  checkFloat(op, x);
  if (x.rank < 1) throw new ShapeError(`${op}: x ${shapeStr(x.shape)} needs rank ≥ 1`);
  const d = x.shape[x.rank - 1]!;
  checkAffine(op, x, 'gamma', gamma, d);
  checkAffine(op, x, 'beta', beta, d);
  const y = Tensor.empty(x.device, x.shape, x.dtype);
  if (!x.size) return y;
  const rows = x.size / d;
  const SG = chunkedSubgroup(x.device);
  if (SG !== null && d % 4 === 0) {
    const pipe = getPipeline(x.device, { family: 'norm/chunked', entry: 'layernorm4', dtype: x.dtype, code: LAYERNORM_CHUNKED_WGSL, storage: ['read', 'read', 'read', 'rw'], overrides: { WG: SG }, enables: ['subgroups'] });
    const params = packParams(LAYERNORM_CHUNKED_PARAMS, { rows, d4: d / 4, eps, flags: (gamma ? 1 : 0) | (beta ? 2 : 0) });
    const xb = x.binding('layerNorm x');
    x.device.dispatch(pipe, params, [xb, gamma?.binding('layerNorm gamma') ?? xb, beta?.binding('layerNorm beta') ?? xb, y.binding('layerNorm y')], grid1d(ceilDiv(rows, LN_ROWS)), op);
    return y;
  }
  const pipe = getPipeline(x.device, { family: 'norm', entry: 'layernorm', dtype: x.dtype, code: LAYERNORM_WGSL, storage: ['read', 'read', 'read', 'rw'] });
  const params = packParams(ROW_PARAMS, { rows, d, eps, flags: (gamma ? 1 : 0) | (beta ? 2 : 0) });
  const xb = x.binding('layerNorm x');
  x.device.dispatch(pipe, params, [xb, gamma?.binding('layerNorm gamma') ?? xb, beta?.binding('layerNorm beta') ?? xb, y.binding('layerNorm y')], grid1d(rows), op);
  return y;
}

/** Softmax over the last dim. */
export function softmax(x: Tensor): Tensor {
  const op = 'softmax';
  checkFloat(op, x);
  if (x.rank < 1) throw new ShapeError(`${op}: x ${shapeStr(x.shape)} needs rank ≥ 1`);
  const d = x.shape[x.rank - 1]!;
  const y = Tensor.empty(x.device, x.shape, x.dtype);
  if (!x.size) return y;
  const rows = x.size / d;
  const SG = chunkedSubgroup(x.device);
  if (SG !== null) {
    const pipe = getPipeline(x.device, { family: 'norm/chunked', entry: 'softmax_sg', dtype: x.dtype, code: SOFTMAX_CHUNKED_WGSL, storage: ['read', 'rw'], overrides: { WG: SG }, enables: ['subgroups'] });
    x.device.dispatch(pipe, packParams(ROW_PARAMS, { rows, d, eps: 0, flags: 0 }), [x.binding('softmax x'), y.binding('softmax y')], grid1d(ceilDiv(rows, SM_ROWS)), op);
    return y;
  }
  const pipe = getPipeline(x.device, { family: 'norm', entry: 'softmax', dtype: x.dtype, code: SOFTMAX_WGSL, storage: ['read', 'rw'] });
  x.device.dispatch(pipe, packParams(ROW_PARAMS, { rows, d, eps: 0, flags: 0 }), [x.binding('softmax x'), y.binding('softmax y')], grid1d(rows), op);
  return y;
}
