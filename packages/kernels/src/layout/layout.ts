import { InvalidArgumentError, ShapeError, Tensor, UnsupportedError, shapeStr, type Device, type DType, type Shape } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams, sameDType } from '../runtime.js';
import { kernelSettings } from '../settings.js';
import { CHUNK, chunkedLanes } from '../streaming.js';
import {
  CAST_FROM_HALF_WGSL, CAST_PARAMS, CAST_TO_HALF_WGSL, COPY_PARAMS, TRANSPOSE_PARAMS, castFromHalfChunkedWGSL, castToHalfChunkedWGSL, transpose4ChunkedWGSL, upsample4ChunkedWGSL, PERMUTE_PARAMS, PERMUTE_WGSL, UPSAMPLE4_WGSL, UPSAMPLE_PARAMS, UPSAMPLE_WGSL, copyWgsl,
} from './layout.wgsl.js';

const CAST_TO_HALF_CHUNKED = castToHalfChunkedWGSL(CHUNK);
const CAST_FROM_HALF_CHUNKED = castFromHalfChunkedWGSL(CHUNK);
const UPSAMPLE4_CHUNKED = upsample4ChunkedWGSL(CHUNK);
// 4×4 blocks per chunked transpose workgroup: as many values as CHUNK vec4s of a copy.
const TRANSPOSE_CHUNK = CHUNK / 4;
const TRANSPOSE4_CHUNKED = transpose4ChunkedWGSL(TRANSPOSE_CHUNK);

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Data movement never does arithmetic, so i32 reuses the sources with T = i32 (bit-exact moves). */
function source(code: string, dtype: DType): string {
  return dtype === 'i32' ? code.replace('alias T = f32;', 'alias T = i32;') : code;
}

/** PyTorch-style axis (negative counts from the end), checked against the rank. */
export function normalizeAxis(op: string, axis: number, shape: Shape): number {
  const r = shape.length;
  if (!Number.isInteger(axis) || axis < -r || axis >= r) throw new InvalidArgumentError(`${op}: axis ${axis} is out of range for shape ${shapeStr(shape)}`, 'axis');
  return axis < 0 ? axis + r : axis;
}

/** Whole-buffer byte copy when the range is 4-byte aligned (copyBufferToBuffer needs that). */
function tryBufferCopy(device: Device, src: Tensor, srcByte: number, dst: Tensor, dstByte: number, bytes: number): boolean {
  if (srcByte % 4 || dstByte % 4) return false;
  // A ragged tail is fine only when it runs to the end of dst (the pool rounds buffers up to 4 bytes).
  const padded = Math.ceil(bytes / 4) * 4;
  if (padded !== bytes && dstByte + bytes !== dst.byteLength) return false;
  if (srcByte + padded > src.buffer.size) return false;
  if (padded) device.copy(src.buffer, srcByte, dst.buffer, dstByte, padded);
  return true;
}

const ROW_COPY_MAX_RUNS = 16;
const ROW_COPY_MIN_BYTES = 4096;

/**
 * dst[o·dstStride + dstOff + j] = src[o·srcStride + srcOff + j], o < outer, j < inner (elements).
 * Uses buffer copies for one contiguous run or a few long ones, else a kernel (vec4 moves when
 * every extent and offset is a multiple of 4).
 */
function blockCopy(op: string, src: Tensor, dst: Tensor, outer: number, inner: number, srcStride: number, srcOff: number, dstStride: number, dstOff: number): void {
  const n = outer * inner;
  if (n === 0) return;
  const device = src.device;
  const bpe = dst.dtype === 'f16' ? 2 : 4;
  const contiguous = outer === 1 || (inner === srcStride && inner === dstStride);
  if (contiguous && tryBufferCopy(device, src, srcOff * bpe, dst, dstOff * bpe, n * bpe)) return;
  // A few long runs (batch-2 skip concats): one buffer copy per run is a memcpy on lavapipe and a
  // copy-engine blit elsewhere, far cheaper than a thread per element.
  if (outer <= ROW_COPY_MAX_RUNS && inner * bpe >= ROW_COPY_MIN_BYTES && [inner, srcStride, srcOff, dstStride, dstOff].every((v) => (v * bpe) % 4 === 0)) {
    for (let o = 0; o < outer; o++) device.copy(src.buffer, (o * srcStride + srcOff) * bpe, dst.buffer, (o * dstStride + dstOff) * bpe, inner * bpe);
    return;
  }
  const v4 = [inner, srcStride, srcOff, dstStride, dstOff].every((v) => v % 4 === 0);
  const k = v4 ? 4 : 1;
  const entry = v4 ? 'copy4' : 'copy';
  const pipe = getPipeline(device, { family: 'layout', entry, dtype: dst.dtype, code: source(copyWgsl(v4), dst.dtype), storage: ['read', 'rw'] });
  const params = { n: n / k, inner: inner / k, src_stride: srcStride / k, src_off: srcOff / k, dst_stride: dstStride / k, dst_off: dstOff / k };
  device.dispatch(pipe, packParams(COPY_PARAMS, params), [src.binding(`${op} input`), dst.binding(`${op} output`)], grid1d(ceilDiv(n / k, 256)), op);
}

/** Nearest-neighbour ×2 upsample of x [N, C, H, W] → [N, C, 2H, 2W]. */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.rank !== 4) throw new ShapeError(`upsampleNearest2x: expected x [N, C, H, W], got ${shapeStr(x.shape)}`);
  checkDType(x.device, 'upsampleNearest2x', x.dtype);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = Tensor.empty(x.device, [N, C, 2 * H, 2 * W], x.dtype);
  if (x.size === 0) return y;
  const v4 = W % 4 === 0 && kernelSettings(x.device).upsample.vec4;
  const lanes = chunkedLanes(x.device);
  if (v4 && lanes !== null) {
    const pipe = getPipeline(x.device, { family: 'layout/chunked', entry: 'upsample2x4c', dtype: x.dtype, code: source(UPSAMPLE4_CHUNKED, x.dtype), storage: ['read', 'rw'], overrides: { WG: lanes } });
    const n4 = x.size / 4;
    x.device.dispatch(pipe, packParams(UPSAMPLE_PARAMS, { n: n4, W: W / 4 }), [x.binding('upsampleNearest2x input'), y.binding('upsampleNearest2x output')], grid1d(ceilDiv(n4, CHUNK)), 'upsampleNearest2x');
    return y;
  }
  const k = v4 ? 4 : 1;
  const pipe = getPipeline(x.device, {
    family: 'layout', entry: v4 ? 'upsample2x4' : 'upsample2x', dtype: x.dtype, code: source(v4 ? UPSAMPLE4_WGSL : UPSAMPLE_WGSL, x.dtype), storage: ['read', 'rw'],
  });
  x.device.dispatch(pipe, packParams(UPSAMPLE_PARAMS, { n: x.size / k, W: W / k }), [x.binding('upsampleNearest2x input'), y.binding('upsampleNearest2x output')], grid1d(ceilDiv(x.size / k, 256)), 'upsampleNearest2x');
  return y;
}

/** Concatenates along `axis` (shapes must agree elsewhere). */
export function concat(tensors: Tensor[], axis: number): Tensor {
  if (!tensors.length) throw new InvalidArgumentError('concat: needs at least one tensor', 'tensors');
  const first = tensors[0]!;
  const dtype = sameDType('concat', ...tensors);
  checkDType(first.device, 'concat', dtype);
  const ax = normalizeAxis('concat', axis, first.shape);
  const ok = tensors.every((t) => t.rank === first.rank && t.shape.every((d, i) => i === ax || d === first.shape[i]));
  if (!ok) throw new ShapeError(`concat: shapes ${tensors.map((t) => shapeStr(t.shape)).join(', ')} differ outside axis ${ax}`);
  const outShape = [...first.shape];
  outShape[ax] = tensors.reduce((a, t) => a + t.shape[ax]!, 0);
  const y = Tensor.empty(first.device, outShape, dtype);
  const outer = prod(first.shape.slice(0, ax));
  const post = prod(first.shape.slice(ax + 1));
  const innerOut = outShape[ax]! * post;
  let off = 0;
  for (const t of tensors) {
    const inner = t.shape[ax]! * post;
    blockCopy('concat', t, y, outer, inner, inner, 0, innerOut, off);
    off += inner;
  }
  return y;
}

/** Merges output dims that stay adjacent and in order in the input, dropping size-1 dims. */
function collapsePermute(shape: Shape, perm: number[]): [number[], number[]] {
  const inStride: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    inStride[i] = acc;
    acc *= shape[i]!;
  }
  const d: number[] = [], s: number[] = [];
  for (const p of perm) {
    const size = shape[p]!, st = inStride[p]!;
    if (size === 1) continue;
    const k = d.length - 1;
    if (k >= 0 && s[k] === st * size) {
      d[k]! *= size;
      s[k] = st;
    } else {
      d.push(size);
      s.push(st);
    }
  }
  return d.length ? [d, s] : [[1], [1]];
}

/**
 * The chunked batched transpose when the merged permute is y[n, a, b] = x[n, b, a] with A and B multiples
 * of 4 (NCHW ↔ NHWC and 2-D transposes) on an adapter that takes chunked kernels; false otherwise.
 */
function transposeChunked(x: Tensor, y: Tensor, d: number[], s: number[]): boolean {
  const lanes = chunkedLanes(x.device);
  if (lanes === null) return false;
  const r = d.length;
  if (r !== 2 && r !== 3) return false;
  const A = d[r - 2]!, B = d[r - 1]!;
  if (s[r - 2] !== 1 || s[r - 1] !== A || (r === 3 && s[0] !== A * B) || A % 4 || B % 4) return false;
  const rows = x.size / (A * 4), chunks = ceilDiv(A / 4, TRANSPOSE_CHUNK);
  const pipe = getPipeline(x.device, { family: 'layout/chunked', entry: 'transpose4', dtype: x.dtype, code: source(TRANSPOSE4_CHUNKED, x.dtype), storage: ['read', 'rw'], overrides: { WG: lanes } });
  x.device.dispatch(pipe, packParams(TRANSPOSE_PARAMS, { rows, chunks, A, B, A4: A / 4, B4: B / 4 }), [x.binding('permute input'), y.binding('permute output')], grid1d(rows * chunks), 'permute');
  return true;
}

/** General permute (like torch.permute), materialised contiguous. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const r = x.rank;
  const norm = perm.map((p) => (Number.isInteger(p) && p < 0 ? p + r : p));
  const valid = perm.length === r && norm.every((p) => Number.isInteger(p) && p >= 0 && p < r) && new Set(norm).size === r;
  if (!valid) throw new InvalidArgumentError(`permute: [${perm.join(', ')}] is not a permutation of the ${r} dims of ${shapeStr(x.shape)}`, 'perm');
  checkDType(x.device, 'permute', x.dtype);
  const y = Tensor.empty(x.device, norm.map((p) => x.shape[p]!), x.dtype);
  if (x.size === 0) return y;
  const [d, s] = collapsePermute(x.shape, norm);
  if (d.length === 1 && s[0] === 1) {
    blockCopy('permute', x, y, 1, x.size, x.size, 0, x.size, 0);
    return y;
  }
  if (transposeChunked(x, y, d, s)) return y;
  if (d.length > 6) throw new UnsupportedError(`permute: [${perm.join(', ')}] of ${shapeStr(x.shape)} needs ${d.length} dims after merging; at most 6 are supported`);
  const params: Record<string, number> = { n: x.size, rank: d.length };
  for (let i = 0; i < 6; i++) {
    params[`d${i}`] = d[i] ?? 1;
    params[`s${i}`] = s[i] ?? 0;
  }
  const pipe = getPipeline(x.device, { family: 'layout', entry: 'permute', dtype: x.dtype, code: source(PERMUTE_WGSL, x.dtype), storage: ['read', 'rw'] });
  x.device.dispatch(pipe, packParams(PERMUTE_PARAMS, params), [x.binding('permute input'), y.binding('permute output')], grid1d(ceilDiv(x.size, 256)), 'permute');
  return y;
}

/** x[..., start:end, ...] along `axis`, contiguous copy. Negative start/end count from the end; no clamping. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normalizeAxis('slice', axis, x.shape);
  const dim = x.shape[ax]!;
  const s = start < 0 ? start + dim : start, e = end < 0 ? end + dim : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > dim || s > e) {
    throw new InvalidArgumentError(`slice: [${start}, ${end}) is out of range for axis ${ax} (size ${dim}) of ${shapeStr(x.shape)}`, 'start');
  }
  checkDType(x.device, 'slice', x.dtype);
  const outShape = [...x.shape];
  outShape[ax] = e - s;
  const y = Tensor.empty(x.device, outShape, x.dtype);
  const post = prod(x.shape.slice(ax + 1));
  blockCopy('slice', x, y, prod(x.shape.slice(0, ax)), (e - s) * post, dim * post, s * post, (e - s) * post, 0);
  return y;
}

/** Converts between f32 and f16 (and copies when the dtype already matches). f32 → f16 overflows to ±inf like torch. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype !== dtype && (x.dtype === 'i32' || dtype === 'i32')) {
    throw new UnsupportedError(`cast: ${x.dtype} → ${dtype} of ${shapeStr(x.shape)} is not supported; only f32 ↔ f16 convert (i32 holds ids)`);
  }
  const y = Tensor.empty(x.device, x.shape, dtype);
  if (x.size === 0) return y;
  if (x.dtype === dtype) {
    x.device.copy(x.buffer, 0, y.buffer, 0, Math.ceil(x.byteLength / 4) * 4);
    return y;
  }
  checkDType(x.device, 'cast', 'f16');
  const toHalf = dtype === 'f16';
  const lanes = chunkedLanes(x.device);
  if (lanes !== null && x.size % 4 === 0) {
    const entry = toHalf ? 'cast_to_half4' : 'cast_from_half4';
    const pipe = getPipeline(x.device, { family: 'layout/chunked', entry, dtype: 'f16', code: toHalf ? CAST_TO_HALF_CHUNKED : CAST_FROM_HALF_CHUNKED, storage: ['read', 'rw'], overrides: { WG: lanes } });
    const n4 = x.size / 4;
    x.device.dispatch(pipe, packParams(CAST_PARAMS, { n: n4 }), [x.binding('cast input'), y.binding('cast output')], grid1d(ceilDiv(n4, CHUNK)), 'cast');
    return y;
  }
  const entry = toHalf ? 'cast_to_half' : 'cast_from_half';
  const pipe = getPipeline(x.device, { family: 'layout', entry, dtype: 'f16', code: toHalf ? CAST_TO_HALF_WGSL : CAST_FROM_HALF_WGSL, storage: ['read', 'rw'] });
  x.device.dispatch(pipe, packParams(CAST_PARAMS, { n: x.size }), [x.binding('cast input'), y.binding('cast output')], grid1d(ceilDiv(x.size, 256)), 'cast');
  return y;
}
