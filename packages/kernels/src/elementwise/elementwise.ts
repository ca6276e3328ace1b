import { ShapeError, Tensor, UnsupportedError, shapeStr, type Shape } from '@fewstep/tensor';
import { checkDType, getPipeline, grid1d, packParams, sameDType, ceilDiv } from '../runtime.js';
import {
  BINARY_CHUNKED_PARAMS, BINARY_PARAMS, BINARY_WGSL, ELEMENTWISE_WGSL, GEGLU_CHUNKED_PARAMS, GEGLU_PARAMS, GEGLU_WGSL, UNARY_PARAMS,
  binaryChunkedWGSL, gegluChunkedWGSL, unaryChunkedWGSL,
} from './elementwise.wgsl.js';
import { CHUNK, chunkedLanes } from '../streaming.js';

const UNARY_CHUNKED = unaryChunkedWGSL(CHUNK);
const GEGLU_CHUNKED = gegluChunkedWGSL(CHUNK);
const BINARY_CHUNKED = new Map<string, string>();
const binaryChunked = (avec: boolean, bvec: boolean) => {
  const key = `${avec ? 'v' : 's'}${bvec ? 'v' : 's'}`;
  let code = BINARY_CHUNKED.get(key);
  if (!code) BINARY_CHUNKED.set(key, (code = binaryChunkedWGSL(CHUNK, avec, bvec)));
  return [key, code] as const;
};

export type UnaryOp = 'scale' | 'silu' | 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'tanh' | 'relu';
const UNARY_CODES: Record<UnaryOp, number> = { scale: 0, silu: 1, gelu: 2, gelu_tanh: 3, quick_gelu: 4, tanh: 5, relu: 6 };

/** y = op(x). For 'scale', y = x·alpha + beta. */
export function unary(op: UnaryOp, x: Tensor, alpha = 1, beta = 0): Tensor {
  checkDType(x.device, `unary.${op}`, x.dtype);
  if (x.dtype === 'i32') throw new UnsupportedError(`unary.${op}: i32 is not supported`);
  const y = Tensor.empty(x.device, x.shape, x.dtype);
  const lanes = chunkedLanes(x.device);
  if (lanes !== null && x.size > 0 && x.size % 4 === 0) {
    const pipe = getPipeline(x.device, { family: 'elementwise/chunked', entry: 'unary4', dtype: x.dtype, code: UNARY_CHUNKED, storage: ['read', 'rw'], overrides: { WG: lanes } });
    const n4 = x.size / 4;
    x.device.dispatch(pipe, packParams(UNARY_PARAMS, { n: n4, op: UNARY_CODES[op], alpha, beta }), [x.binding(), y.binding()], grid1d(ceilDiv(n4, CHUNK)), `unary.${op}`);
    return y;
  }
  const pipe = getPipeline(x.device, { family: 'elementwise', entry: 'unary', dtype: x.dtype, code: ELEMENTWISE_WGSL, storage: ['read', 'rw'] });
  x.device.dispatch(pipe, packParams(UNARY_PARAMS, { n: x.size, op: UNARY_CODES[op], alpha, beta }), [x.binding(), y.binding()], grid1d(ceilDiv(x.size, 256)), `unary.${op}`);
  return y;
}

export const silu = (x: Tensor) => unary('silu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const geluTanh = (x: Tensor) => unary('gelu_tanh', x);
export const quickGelu = (x: Tensor) => unary('quick_gelu', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const relu = (x: Tensor) => unary('relu', x);
export const scale = (x: Tensor, alpha: number, beta = 0) => unary('scale', x, alpha, beta);

/** numpy broadcast of two shapes; throws naming both. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ShapeError(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function bcastStrides(shape: Shape, out: Shape): number[] {
  const r = out.length;
  const s = new Array<number>(r).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const oi = r - shape.length + i;
    s[oi] = shape[i] === 1 && out[oi] !== 1 ? 0 : acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Merges adjacent dims that are contiguous in out, a and b alike, so any rank fits in 6. */
function collapse(out: number[], sa: number[], sb: number[]): [number[], number[], number[]] {
  const d: number[] = [], A: number[] = [], B: number[] = [];
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 1) continue;
    const k = d.length - 1;
    if (k >= 0 && A[k] === sa[i]! * out[i]! && B[k] === sb[i]! * out[i]!) {
      d[k]! *= out[i]!;
      A[k] = sa[i]!;
      B[k] = sb[i]!;
    } else {
      d.push(out[i]!);
      A.push(sa[i]!);
      B.push(sb[i]!);
    }
  }
  if (!d.length) return [[1], [0], [0]];
  return [d, A, B];
}

export type BinaryOp = 'add' | 'mul' | 'div';
const BINARY_CODES: Record<BinaryOp, number> = { add: 0, mul: 1, div: 2 };

/** y = a (op) b with numpy broadcasting. `alpha` scales b for 'add' (a + alpha·b). */
export function binary(op: BinaryOp, a: Tensor, b: Tensor, alpha = 1): Tensor {
  const dtype = sameDType(op, a, b);
  checkDType(a.device, op, dtype);
  const out = broadcastShapes(op, a.shape, b.shape);
  const [d, sa, sb] = collapse(out, bcastStrides(a.shape, out), bcastStrides(b.shape, out));
  if (d.length > 6) throw new UnsupportedError(`${op}: broadcast of ${shapeStr(a.shape)} and ${shapeStr(b.shape)} needs more than 6 dims`);
  const y = Tensor.empty(a.device, out, dtype);
  if (binaryChunkedDispatch(op, a, b, y, d, sa, sb, alpha)) return y;
  const params: Record<string, number> = { n: y.size, op: BINARY_CODES[op], rank: d.length, alpha };
  for (let i = 0; i < 6; i++) {
    params[`d${i}`] = d[i] ?? 1;
    params[`sa${i}`] = sa[i] ?? 0;
    params[`sb${i}`] = sb[i] ?? 0;
  }
  const pipe = getPipeline(a.device, { family: 'elementwise', entry: 'binary', dtype, code: BINARY_WGSL, storage: ['read', 'read', 'rw'] });
  a.device.dispatch(pipe, packParams(BINARY_PARAMS, params), [a.binding(), b.binding(), y.binding()], grid1d(ceilDiv(y.size, 256)), op);
  return y;
}

/**
 * The chunked kernel when the broadcast collapses to rows × inner (inner % 4 == 0) with each operand
 * contiguous along the row or constant along it; false when it does not fit (the general kernel runs).
 */
function binaryChunkedDispatch(op: BinaryOp, a: Tensor, b: Tensor, y: Tensor, d: number[], sa: number[], sb: number[], alpha: number): boolean {
  const lanes = chunkedLanes(a.device);
  const r = d.length;
  if (lanes === null || r > 2 || !y.size) return false;
  const inner = d[r - 1]!, ia = sa[r - 1]!, ib = sb[r - 1]!;
  if (inner % 4 || ia > 1 || ib > 1) return false;
  const rows = r === 2 ? d[0]! : 1, rowA = r === 2 ? sa[0]! : 0, rowB = r === 2 ? sb[0]! : 0;
  const avec = ia === 1, bvec = ib === 1;
  if ((avec && rowA % 4) || (bvec && rowB % 4)) return false;
  const [key, code] = binaryChunked(avec, bvec);
  const pipe = getPipeline(a.device, { family: `elementwise/chunked-${key}`, entry: 'binary4', dtype: y.dtype, code, storage: ['read', 'read', 'rw'], overrides: { WG: lanes } });
  const chunks = ceilDiv(inner / 4, CHUNK);
  const params = packParams(BINARY_CHUNKED_PARAMS, { rows, inner4: inner / 4, chunks, op: BINARY_CODES[op], alpha, sa: rowA, sb: rowB });
  a.device.dispatch(pipe, params, [a.binding(), b.binding(), y.binding()], grid1d(rows * chunks), op);
  return true;
}

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('add', a, b, -1);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);

/** GEGLU on the last dim: x [..., 2D] → [..., D] = x[..., :D] · gelu(x[..., D:]). */
export function geglu(x: Tensor): Tensor {
  checkDType(x.device, 'geglu', x.dtype);
  const last = x.shape[x.rank - 1]!;
  if (last % 2) throw new ShapeError(`geglu: last dim ${last} of ${shapeStr(x.shape)} is odd`);
  const half = last / 2;
  const y = Tensor.empty(x.device, [...x.shape.slice(0, -1), half], x.dtype);
  const lanes = chunkedLanes(x.device);
  if (lanes !== null && y.size > 0 && half % 4 === 0) {
    const pipe = getPipeline(x.device, { family: 'elementwise/chunked', entry: 'geglu4', dtype: x.dtype, code: GEGLU_CHUNKED, storage: ['read', 'rw'], overrides: { WG: lanes } });
    const rows = y.size / half, chunks = ceilDiv(half / 4, CHUNK);
    x.device.dispatch(pipe, packParams(GEGLU_CHUNKED_PARAMS, { rows, half4: half / 4, chunks }), [x.binding(), y.binding()], grid1d(rows * chunks), 'geglu');
    return y;
  }
  const pipe = getPipeline(x.device, { family: 'elementwise', entry: 'geglu', dtype: x.dtype, code: GEGLU_WGSL, storage: ['read', 'rw'] });
  x.device.dispatch(pipe, packParams(GEGLU_PARAMS, { n: y.size, half }), [x.binding(), y.binding()], grid1d(ceilDiv(y.size, 256)), 'geglu');
  return y;
}
