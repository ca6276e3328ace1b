import type { Device, ScopedResource } from './device.js';
import { bytesPerElement, f16ArrayToF32, f32ArrayToF16, type DType } from './dtype.js';
import { InvalidArgumentError, ResourceLimitError, ShapeError } from './errors.js';
import type { ParameterCache, StreamedParameter } from './parameter_cache.js';

/** A GPU buffer shared by a tensor and its views; returned to the pool when the last one is disposed. */
class Storage {
  refs = 1;
  constructor(readonly device: Device, private readonly buf: GPUBuffer) {}
  get buffer(): GPUBuffer {
    return this.buf;
  }
  release(): void {
    if (--this.refs === 0) this.device.pool.release(this.buf);
  }
}

/** A streamed parameter's storage: its buffer comes from the cache (filled on demand), and may change between uses. */
class StreamedStorage extends Storage {
  constructor(device: Device, private readonly cache: ParameterCache, private readonly param: StreamedParameter) {
    super(device, undefined as unknown as GPUBuffer);
  }
  override get buffer(): GPUBuffer {
    return this.cache.buffer(this.param);
  }
  override release(): void {
    if (--this.refs !== 0) return;
    this.cache.forget(this.param);
    this.param.release?.();
  }
}

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A dense, contiguous, row-major tensor in GPU memory. Views (`reshape`) share storage;
 * `dispose()` returns the buffer to the device's pool once no view uses it.
 */
export class Tensor implements ScopedResource {
  readonly __isTensor = true;
  private _disposed = false;

  private constructor(
    readonly device: Device,
    private readonly storage: Storage,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {
    device.track(this);
  }

  get size(): number {
    return numel(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }
  get buffer(): GPUBuffer {
    if (this._disposed) throw new InvalidArgumentError(`tensor ${shapeStr(this.shape)} ${this.dtype} used after dispose()`);
    return this.storage.buffer;
  }
  get disposed(): boolean {
    return this._disposed;
  }

  /** The whole tensor as one binding (checked against maxStorageBufferBindingSize). */
  binding(what = 'tensor'): GPUBufferBinding {
    const size = Math.max(4, Math.ceil(this.byteLength / 4) * 4);
    if (size > this.device.maxBinding) {
      throw new ResourceLimitError(`${what} ${shapeStr(this.shape)} ${this.dtype} is ${size} bytes, more than this adapter's maxStorageBufferBindingSize (${this.device.maxBinding}); this kernel cannot split it`);
    }
    return { buffer: this.buffer, offset: 0, size };
  }

  static empty(device: Device, shape: Shape, dtype: DType = 'f32', label?: string): Tensor {
    for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new InvalidArgumentError(`invalid tensor shape ${shapeStr(shape)}`, 'shape');
    const bytes = Math.max(4, numel(shape) * bytesPerElement(dtype));
    return new Tensor(device, new Storage(device, device.pool.acquire(bytes, label)), [...shape], dtype);
  }

  /**
   * An uninitialised tensor in a buffer of exactly its size that is destroyed, not pooled, when freed: for
   * weights (see BufferPool.acquireExact).
   */
  static parameter(device: Device, shape: Shape, dtype: DType = 'f32', label?: string): Tensor {
    for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new InvalidArgumentError(`invalid tensor shape ${shapeStr(shape)}`, 'shape');
    const bytes = Math.max(4, numel(shape) * bytesPerElement(dtype));
    return new Tensor(device, new Storage(device, device.pool.acquireExact(bytes, label)), [...shape], dtype);
  }

  /**
   * A weight whose bytes stay in its source until a kernel binds it (see ParameterCache): each read of
   * `buffer` gets it from `cache`, filled by `param` when it is not resident. Not tracked by scopes.
   */
  static streamed(cache: ParameterCache, shape: Shape, dtype: DType, param: StreamedParameter): Tensor {
    for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new InvalidArgumentError(`invalid tensor shape ${shapeStr(shape)}`, 'shape');
    const bytes = numel(shape) * bytesPerElement(dtype);
    if (param.byteLength !== bytes) throw new InvalidArgumentError(`streamed parameter ${param.label}: ${param.byteLength} bytes for ${shapeStr(shape)} ${dtype} (${bytes})`, 'param');
    return new Tensor(cache.device, new StreamedStorage(cache.device, cache, param), [...shape], dtype).keep();
  }

  /**
   * Uploads host data. For f16, pass either a Float32Array/number[] (rounded to half) or a
   * Uint16Array of half bits.
   */
  static from(device: Device, data: ArrayLike<number> | Float32Array | Int32Array | Uint16Array, shape: Shape, dtype: DType = 'f32'): Tensor {
    const n = numel(shape);
    if (data.length !== n) throw new ShapeError(`Tensor.from: ${data.length} values do not fill shape ${shapeStr(shape)} (${n})`, 'data');
    let view: ArrayBufferView;
    if (dtype === 'f16') view = data instanceof Uint16Array ? data : f32ArrayToF16(data);
    else if (dtype === 'i32') view = data instanceof Int32Array ? data : Int32Array.from(data);
    else view = data instanceof Float32Array ? data : Float32Array.from(data);
    const t = Tensor.empty(device, shape, dtype);
    try {
      if (n) device.write(t.buffer, 0, view);
    } catch (e) {
      t.dispose(); // e.g. an aborted signal: the buffer goes straight back to the pool
      throw e;
    }
    return t;
  }

  /** A view with a new shape over the same storage (one dim may be -1). */
  reshape(shape: Shape): Tensor {
    const s = [...shape];
    const neg = s.indexOf(-1);
    if (neg >= 0) {
      const rest = numel(s.filter((_, i) => i !== neg));
      s[neg] = rest ? this.size / rest : 0;
    }
    if (numel(s) !== this.size || !s.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new ShapeError(`cannot reshape ${shapeStr(this.shape)} to ${shapeStr(shape)}`, 'shape');
    }
    if (this._disposed) throw new InvalidArgumentError(`tensor ${shapeStr(this.shape)} ${this.dtype} used after dispose()`);
    this.storage.refs++;
    return new Tensor(this.device, this.storage, s, this.dtype);
  }

  /** Excludes this tensor from the enclosing scope (it lives until disposed by hand). */
  keep(): this {
    this.device.untrack(this);
    return this;
  }

  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.storage.release();
    this.device.untrack(this);
  }

  /** Values as numbers: f32/f16 → Float32Array, i32 → Int32Array. */
  async read(): Promise<Float32Array | Int32Array> {
    const raw = await this.readRaw();
    return raw instanceof Uint16Array ? f16ArrayToF32(raw) : raw;
  }

  /** Float values (throws for i32). */
  async readF32(): Promise<Float32Array> {
    const v = await this.read();
    if (!(v instanceof Float32Array)) throw new ShapeError('readF32 on an i32 tensor');
    return v;
  }

  /** Stored values: f16 as Uint16Array half bits. */
  async readRaw(): Promise<Float32Array | Int32Array | Uint16Array> {
    const bytes = await this.device.read(this.buffer, 0, this.byteLength);
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    if (this.dtype === 'f16') return new Uint16Array(buf);
    if (this.dtype === 'i32') return new Int32Array(buf);
    return new Float32Array(buf);
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype})`;
  }
}
