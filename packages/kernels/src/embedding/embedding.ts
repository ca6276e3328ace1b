import { InvalidArgumentError, ResourceLimitError, ShapeError, Tensor, UnsupportedError, shapeStr, type Device } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams } from '../runtime.js';
import { GATHER_PARAMS, TIMESTEP_PARAMS, TIMESTEP_WGSL, gatherWgsl } from './embedding.wgsl.js';

export interface EmbeddingOptions {
  /**
   * Internal/testing: rows per table window (rounded up to the offset alignment). By default the
   * window is as large as one storage binding allows, so tables that fit take a single dispatch.
   */
  windowRows?: number | undefined;
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);

/** Row windows [row0, row0 + rows) whose byte offsets meet minStorageBufferOffsetAlignment. */
export function tableWindows(device: Device, V: number, rowBytes: number, windowRows?: number): { row0: number; rows: number }[] {
  const align = device.limits.minStorageBufferOffsetAlignment;
  const rowAlign = align / gcd(align, rowBytes);
  const maxRows = Math.floor(device.maxBinding / rowBytes);
  let step = V * rowBytes <= device.maxBinding ? V : Math.floor(maxRows / rowAlign) * rowAlign;
  if (windowRows !== undefined) step = Math.min(step, Math.max(rowAlign, Math.ceil(windowRows / rowAlign) * rowAlign));
  if (step <= 0) throw new ResourceLimitError(`embedding: a ${rowAlign}-row aligned window of ${rowBytes}-byte rows exceeds maxStorageBufferBindingSize (${device.maxBinding})`);
  const out: { row0: number; rows: number }[] = [];
  for (let r = 0; r < V; r += step) out.push({ row0: r, rows: Math.min(step, V - r) });
  return out;
}

/**
 * Token embedding gather (+ optional position embedding rows 0..L-1):
 * ids i32 [B, L], table [V, D], positions [P ≥ L, D] → [B, L, D].
 * The table may be larger than one storage binding (CLIP's 49408×1024 f32 is 202 MB): it is bound in
 * row windows, one dispatch each. Ids live on the GPU, so they are not checked here: an id outside
 * [0, V) reads a zero row (the position row is still added).
 */
export function embedding(ids: Tensor, table: Tensor, positions?: Tensor, opts: EmbeddingOptions = {}): Tensor {
  const what = `ids ${shapeStr(ids.shape)} ${ids.dtype}, table ${shapeStr(table.shape)} ${table.dtype}` + (positions ? `, positions ${shapeStr(positions.shape)} ${positions.dtype}` : '');
  if (ids.dtype !== 'i32') throw new ShapeError(`embedding: ids must be i32 (${what})`, 'ids');
  if (ids.rank !== 2 || table.rank !== 2) throw new ShapeError(`embedding: expected ids [B, L] and table [V, D] (${what})`);
  if (table.dtype === 'i32') throw new UnsupportedError(`embedding: table must be f32 or f16 (${what})`);
  checkDType(table.device, 'embedding', table.dtype);
  const [B, L] = ids.shape as [number, number];
  const [V, D] = table.shape as [number, number];
  if (positions && (positions.rank !== 2 || positions.shape[1] !== D || positions.shape[0]! < L || positions.dtype !== table.dtype)) {
    throw new ShapeError(`embedding: positions must be [P ≥ ${L}, ${D}] in ${table.dtype} (${what})`);
  }
  const device = table.device;
  const y = Tensor.empty(device, [B, L, D], table.dtype);
  const n = B * L * D;
  if (n === 0) return y;
  if (V === 0) throw new ShapeError(`embedding: empty table (${what})`, 'table');
  const entry = positions ? 'gather_pos' : 'gather';
  const pipe = getPipeline(device, {
    family: 'embedding', entry, dtype: table.dtype, code: gatherWgsl(!!positions),
    storage: positions ? ['read', 'read', 'read', 'rw'] : ['read', 'read', 'rw'],
  });
  const bpe = table.dtype === 'f16' ? 2 : 4;
  const rowBytes = D * bpe;
  const windows = tableWindows(device, V, rowBytes, opts.windowRows);
  windows.forEach(({ row0, rows }, w) => {
    const offset = row0 * rowBytes;
    // Round the window up to 4 bytes; the pool's buffers are padded to 4 so this stays in bounds.
    const size = Math.min(Math.ceil((rows * rowBytes) / 4) * 4, table.buffer.size - offset);
    const buffers: GPUBufferBinding[] = [ids.binding('embedding ids'), { buffer: table.buffer, offset, size }];
    if (positions) buffers.push(positions.binding('embedding positions'));
    buffers.push(y.binding('embedding output'));
    const params = { n, D, L, V, row0, rows, first: w === 0 ? 1 : 0 };
    device.dispatch(pipe, packParams(GATHER_PARAMS, params), buffers, grid1d(ceilDiv(n, 256)), 'embedding');
  });
  return y;
}

export interface TimestepEmbeddingOptions {
  flipSinToCos: boolean;
  downscaleFreqShift: number;
  scale?: number | undefined;
  maxPeriod?: number | undefined;
}

/**
 * exp(-ln(maxPeriod)·i/(half − shift)) rounded the way torch's f32 CPU ops round it: the Python scalars
 * are cast to f32, then f32 mul, f32 div, f32 exp. (CUDA torch divides by multiplying with the
 * reciprocal, which can differ by 1 ulp.) Computed on the host because WGSL's exp is only good to
 * 3 + 2|x| ulp.
 */
export function timestepFrequencies(half: number, shift: number, maxPeriod: number): Float32Array {
  const f = Math.fround;
  const a = f(-Math.log(maxPeriod));
  const div = f(half - shift);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f(Math.exp(f(f(a * i) / div)));
  return out;
}

// Frequency tables are tiny and reused every step: cache one per device and settings.
const freqCache = new WeakMap<Device, Map<string, Tensor>>();

function frequencyTensor(device: Device, half: number, shift: number, maxPeriod: number): Tensor {
  let m = freqCache.get(device);
  if (!m) freqCache.set(device, (m = new Map()));
  const key = `${half}|${shift}|${maxPeriod}`;
  let t = m.get(key);
  if (!t || t.disposed) {
    // dim = 1 has no frequencies; keep a 1-element table so the binding is never empty.
    const f = half ? timestepFrequencies(half, shift, maxPeriod) : new Float32Array(1);
    t = Tensor.from(device, f, [f.length], 'f32').keep();
    m.set(key, t);
  }
  return t;
}

/**
 * diffusers `get_timestep_embedding`: timesteps f32 [B] → [B, dim] (computed in f32, output in `dtype`).
 * half = dim/2; exponent = -ln(maxPeriod)·i/(half − shift); emb = t·exp(exponent)·scale; [sin, cos] (or [cos, sin]).
 * The frequency table is built on the host (f32, torch rounding); sin/cos use an in-shader range
 * reduction so arguments up to ~1e4 rad (t ≤ 999 gives ≤ 999) stay accurate to ~3e-7.
 */
export function timestepEmbedding(timesteps: Tensor, dim: number, opts: TimestepEmbeddingOptions, dtype: 'f32' | 'f16' = 'f32'): Tensor {
  if (timesteps.rank !== 1 || timesteps.dtype !== 'f32') {
    throw new ShapeError(`timestepEmbedding: timesteps must be f32 [B], got ${shapeStr(timesteps.shape)} ${timesteps.dtype}`);
  }
  if (!Number.isInteger(dim) || dim < 1) throw new InvalidArgumentError(`timestepEmbedding: dim must be a positive integer, got ${dim}`, 'dim');
  checkDType(timesteps.device, 'timestepEmbedding', dtype);
  const device = timesteps.device;
  const B = timesteps.shape[0]!;
  const half = Math.floor(dim / 2);
  const y = Tensor.empty(device, [B, dim], dtype);
  const n = B * dim;
  if (n === 0) return y;
  const freqs = frequencyTensor(device, half, opts.downscaleFreqShift, opts.maxPeriod ?? 10000);
  const pipe = getPipeline(device, { family: 'embedding', entry: 'timestep', dtype, code: TIMESTEP_WGSL, storage: ['read', 'read', 'rw'] });
  const params = { n, dim, half, flip: opts.flipSinToCos ? 1 : 0, scale: opts.scale ?? 1 };
  device.dispatch(pipe, packParams(TIMESTEP_PARAMS, params), [timesteps.binding('timestepEmbedding timesteps'), freqs.binding('timestepEmbedding freqs'), y.binding('timestepEmbedding output')], grid1d(ceilDiv(n, 256)), 'timestepEmbedding');
  return y;
}
