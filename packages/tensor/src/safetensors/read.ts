import type { FileSource, RandomAccessFile } from '../io.js';
import { f16BitsToF32, f32ToF16Bits, bf16BitsToF32 } from '../dtype.js';
import { ST_DTYPE_BYTES, SafetensorsError, type StDType, type TensorInfo } from './format.js';
import { numel } from '../tensor.js';
import { ResourceLimitError, UnsupportedError } from '../errors.js';
import { TENSOR_FILE_LIMITS as LIMITS, previewJson, quoteName } from '../tensor_file_limits.js';

/** Where a JSON text first nests deeper than `max` (outside strings), or -1. A linear scan: no recursion, no parse. */
function tooDeep(b: Uint8Array, max: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/** Throws a ResourceLimitError naming `what` when one tensor of `bytes` would exceed TENSOR_FILE_LIMITS.tensorBytes. */
export function checkTensorBytes(bytes: number, what: string): void {
  if (bytes > LIMITS.tensorBytes) throw new ResourceLimitError(`${what}: ${bytes} bytes in memory is more than one tensor may take (TENSOR_FILE_LIMITS.tensorBytes = ${LIMITS.tensorBytes})`);
}

export type TargetDType = 'f32' | 'f16' | 'i32';
/** f32 → Float32Array, f16 → Uint16Array of half bits, i32 → Int32Array. */
export type TensorData = Float32Array | Uint16Array | Int32Array;

/**
 * A validated safetensors file. The header is parsed and checked once at open; tensor data is read
 * one tensor at a time, so a 1.3 GB file never sits in one ArrayBuffer.
 */
export class SafetensorsFile {
  readonly format = 'safetensors' as const;

  private constructor(
    readonly file: RandomAccessFile,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  get name(): string {
    return this.file.name;
  }

  static async open(source: FileSource, path: string): Promise<SafetensorsFile> {
    const file = await source.open(path);
    try {
      return await SafetensorsFile.fromFile(file);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  static async fromFile(file: RandomAccessFile): Promise<SafetensorsFile> {
    const fail = (p: string): never => {
      throw new SafetensorsError(file.name, p);
    };
    if (file.size < 8) fail(`not a safetensors file: ${file.size} bytes, shorter than the 8-byte header length`);
    const lenBytes = await file.read(0, 8);
    const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
    const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
    if (n === 0) fail('header length is 0');
    if (n > LIMITS.safetensorsHeaderBytes) fail(`header length ${n} is larger than the ${LIMITS.safetensorsHeaderBytes}-byte limit (not a safetensors file?)`);
    if (8 + n > file.size) fail(`header length ${n} runs past the end of the file (${file.size} bytes): truncated or not a safetensors file`);
    const headerBytes = await file.read(8, n);
    // A valid header nests 3 deep; refuse deep nesting before parsing it (JSON.parse of 10^7 brackets takes seconds and GBs).
    const deep = tooDeep(headerBytes, LIMITS.safetensorsHeaderDepth);
    if (deep >= 0) fail(`header nests deeper than ${LIMITS.safetensorsHeaderDepth} levels at byte ${8 + deep}: not a safetensors header`);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (e) {
      fail(`header is not valid JSON (${(e as Error).message.slice(0, 200)})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
    const dataStart = 8 + n;
    const dataSize = file.size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    let entries = 0;
    let nameChars = 0;
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('__metadata__ is not an object');
        for (const [k, s] of Object.entries(v as object)) if (typeof s !== 'string') fail(`__metadata__.${quoteName(k).slice(1, -1)} is not a string`);
        metadata = v as Record<string, string>;
        continue;
      }
      const q = quoteName(name);
      if (++entries > LIMITS.entries) throw new ResourceLimitError(`${file.name}: more than ${LIMITS.entries} tensors (TENSOR_FILE_LIMITS.entries)`);
      if ((nameChars += name.length) > LIMITS.nameChars) throw new ResourceLimitError(`${file.name}: tensor names longer than ${LIMITS.nameChars} characters in all (TENSOR_FILE_LIMITS.nameChars)`);
      const e = v as { dtype?: unknown | undefined; shape?: unknown | undefined; data_offsets?: unknown | undefined };
      if (typeof e !== 'object' || e === null) fail(`tensor ${q}: entry is not an object`);
      if (typeof e.dtype !== 'string' || !Object.hasOwn(ST_DTYPE_BYTES, e.dtype)) fail(`tensor ${q}: unknown dtype ${previewJson(e.dtype)}`);
      const dtype = e.dtype as StDType;
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${q}: shape ${previewJson(e.shape)} is not a list of non-negative integers`);
      const shape = e.shape as number[];
      if (shape.length > LIMITS.rank) fail(`tensor ${q}: rank ${shape.length} is higher than ${LIMITS.rank} (TENSOR_FILE_LIMITS.rank)`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${q}: data_offsets ${previewJson(off)} is not [begin, end]`);
      const [b, en] = off as [number, number];
      if (en < b) fail(`tensor ${q}: data_offsets [${b}, ${en}] end before they begin`);
      const want = numel(shape) * ST_DTYPE_BYTES[dtype];
      if (en - b !== want) fail(`tensor ${q}: ${dtype} [${shape.join(',')}] needs ${want} bytes but data_offsets [${b}, ${en}] hold ${en - b}`);
      if (en > dataSize) fail(`tensor ${q}: data_offsets [${b}, ${en}] run past the end of the data (${dataSize} bytes): file truncated?`);
      tensors.set(name, { name, dtype, shape, begin: dataStart + b, end: dataStart + en });
    }
    const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < sorted.length; i++) {
      const p = sorted[i - 1]!, c = sorted[i]!;
      if (c.begin < p.end) fail(`tensors ${quoteName(p.name)} and ${quoteName(c.name)} overlap in the file`);
    }
    return new SafetensorsFile(file, tensors, metadata);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.file.name, `no tensor named ${quoteName(name)}`);
    return t;
  }

  /** Raw little-endian bytes of one tensor. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    checkTensorBytes(t.end - t.begin, `${this.file.name}: tensor ${quoteName(name)}`);
    return this.file.read(t.begin, t.end - t.begin);
  }

  /** Reads one tensor converted to `target` (default: f32 for floats, i32 for integers). */
  async read(name: string, target?: TargetDType): Promise<TensorData> {
    const t = this.info(name);
    return convert(await this.readBytes(name), t.dtype, target ?? defaultTarget(t.dtype), `${this.file.name}: tensor ${quoteName(name)}`);
  }

  /**
   * As `read`, but through the file's reused buffer when it has one (RandomAccessFile.readTransient): the
   * result may view that buffer and is valid only until the next read of this file. For uploads.
   */
  async readTransient(name: string, target?: TargetDType): Promise<TensorData> {
    if (!this.file.readTransient) return this.read(name, target);
    const t = this.info(name);
    checkTensorBytes(t.end - t.begin, `${this.file.name}: tensor ${quoteName(name)}`);
    const raw = await this.file.readTransient(t.begin, t.end - t.begin);
    return convert(raw, t.dtype, target ?? defaultTarget(t.dtype), `${this.file.name}: tensor ${quoteName(name)}`, true);
  }

  /**
   * Reads one tensor synchronously, in pieces of at most `maxBytes` stored bytes, each converted to `target`
   * and handed to `sink` with the index of its first element. A piece views a reused buffer: valid only
   * inside `sink`. Throws UnsupportedError when the file cannot be read synchronously (see
   * `RandomAccessFile.readTransientSync`). For streamed weights: memory is bounded by the piece, not the tensor.
   */
  readPiecesSync(name: string, target: TargetDType, sink: (piece: TensorData, firstElement: number) => void, maxBytes = 8 * 2 ** 20): void {
    if (!this.file.readTransientSync) throw new UnsupportedError(`${this.file.name}: this file cannot be read synchronously (streamed weights need a local file)`);
    const t = this.info(name);
    const es = ST_DTYPE_BYTES[t.dtype];
    const what = `${this.file.name}: tensor ${quoteName(name)}`;
    // A multiple of 4 elements: every piece but the last starts and ends 4-byte aligned in any target dtype.
    const step = Math.max(1, Math.floor(maxBytes / (es * 4))) * es * 4;
    for (let at = t.begin; at < t.end; at += step) {
      const raw = this.file.readTransientSync(at, Math.min(step, t.end - at));
      sink(convert(raw, t.dtype, target, what, true), (at - t.begin) / es);
    }
  }

  /** Whether `readPiecesSync` can read this file. */
  get syncReadable(): boolean {
    return this.file.readTransientSync !== undefined;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/** What a tensor reads as by default: f32 for floats, i32 for integers. */
function defaultTarget(dtype: StDType): TargetDType {
  return dtype.startsWith('F') || dtype === 'BF16' ? 'f32' : 'i32';
}

/**
 * An ArrayBuffer holding exactly `raw`'s bytes, at an offset a `bytes`-wide typed array can view: `raw`'s own
 * buffer when `raw` is all of it (a fresh read — no copy: a copy of every weight was a tenth of a cold load),
 * else a copy (a view into a larger buffer is never aliased, so the result may be changed freely) — unless
 * `borrow` (a transient read): then an aligned view of it.
 */
function aligned(raw: Uint8Array, bytes: number, borrow = false): ArrayBuffer | { buffer: ArrayBuffer; offset: number } {
  if (raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.buffer instanceof ArrayBuffer) return raw.buffer;
  if (borrow && raw.byteOffset % bytes === 0 && raw.buffer instanceof ArrayBuffer) return { buffer: raw.buffer, offset: raw.byteOffset };
  if (raw.byteOffset % bytes === 0) return raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
  return raw.slice().buffer as ArrayBuffer;
}

/** Converts raw safetensors bytes of dtype `from` to a compute array of dtype `to`. */
export function convert(raw: Uint8Array, from: StDType, to: TargetDType, what: string, borrow = false): TensorData {
  const n = raw.byteLength / ST_DTYPE_BYTES[from];
  // Typed arrays of n elements over raw's bytes when they can be had without a copy (see aligned).
  const view = <A>(bytes: number, make: (b: ArrayBuffer, offset: number, n: number) => A): A => {
    const a = aligned(raw, bytes, borrow);
    return a instanceof ArrayBuffer ? make(a, 0, n) : make(a.buffer, a.offset, n);
  };
  checkTensorBytes(n * (to === 'f16' ? 2 : 4), what);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (to === 'i32') {
    const out = new Int32Array(n);
    switch (from) {
      case 'I32': return view(4, (b, o, k) => new Int32Array(b, o, k));
      case 'I64':
        for (let i = 0; i < n; i++) {
          const v = dv.getBigInt64(i * 8, true);
          if (v > 2147483647n || v < -2147483648n) throw new UnsupportedError(`${what}: I64 value ${v} does not fit in i32`);
          out[i] = Number(v);
        }
        return out;
      case 'I16': for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true); return out;
      case 'I8': for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); return out;
      case 'U8': case 'BOOL': for (let i = 0; i < n; i++) out[i] = dv.getUint8(i); return out;
      case 'U16': for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true); return out;
      default: throw new UnsupportedError(`${what}: cannot read ${from} as i32`);
    }
  }
  // Float targets: go through f32 values unless the source already is the target.
  if (to === 'f16' && from === 'F16') return view(2, (b, o, k) => new Uint16Array(b, o, k));
  let f: Float32Array;
  switch (from) {
    case 'F32': f = view(4, (b, o, k) => new Float32Array(b, o, k)); break;
    case 'F16': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = f16BitsToF32(dv.getUint16(i * 2, true)); break; }
    case 'BF16': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = bf16BitsToF32(dv.getUint16(i * 2, true)); break; }
    case 'F64': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = dv.getFloat64(i * 8, true); break; }
    case 'I64': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = Number(dv.getBigInt64(i * 8, true)); break; }
    case 'I32': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = dv.getInt32(i * 4, true); break; }
    case 'I16': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = dv.getInt16(i * 2, true); break; }
    case 'I8': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = dv.getInt8(i); break; }
    case 'U8': case 'BOOL': { f = new Float32Array(n); for (let i = 0; i < n; i++) f[i] = dv.getUint8(i); break; }
    default: throw new UnsupportedError(`${what}: cannot read ${from} as ${to}`);
  }
  if (to === 'f32') return f;
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) h[i] = f32ToF16Bits(f[i]!);
  return h;
}
