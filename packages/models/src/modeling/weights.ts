/**
 * Weights by name. A module's property path is its checkpoint key path (diffusers names), so building a
 * model is one walk: `Conv2d.build(w.pp('down_blocks').pp(0).pp('conv1'), …)` asks the scope for
 * `down_blocks.0.conv1.weight` of shape [O, C, 3, 3]. The same walk serves two purposes:
 *  - a loading scope (`WeightScope.create(source, device, dtype)`) hands out GPU tensors, checks every key and
 *    shape against the source, `finish()` rejects keys the model never asked for, and `materialize()` reads
 *    the data into the tensors;
 *  - a recording scope (`WeightScope.recording()`) only records key → shape (a model's `describe(config)`:
 *    parameter counts, random-weight benchmarks, checks against real checkpoints' key maps).
 * Modules never know which one they are given.
 */
import { Tensor, UnsupportedError, f32ArrayToF16, numel, openTensorFile, shapeStr, type DType, type Device, type FileSource, type ParameterCache, type StreamedParameter, type TensorData, type TensorFile } from '@fewstep/tensor';
import { WeightsError } from '../errors.js';

/** Where tensors come from: one or more safetensors files / PyTorch checkpoints (or anything with the same face). */
export interface TensorSource {
  readonly name: string;
  keys(): string[];
  has(key: string): boolean;
  shape(key: string): number[];
  read(key: string, dtype: 'f32' | 'f16'): Promise<TensorData>;
  /** Optional: as `read`, valid only until the source's next read (uploads; see RandomAccessFile.readTransient). */
  readTransient?(key: string, dtype: 'f32' | 'f16'): Promise<TensorData>;
  /**
   * Optional, for streamed weights: whether `key` can be read synchronously, `readPiecesSync` to read it (see
   * SafetensorsFile.readPiecesSync), and `retain` to keep the files open while a streamed weight may still read
   * them (the returned function lets go; the files close when the opener's `close` and every retain have).
   */
  syncReadable?(key: string): boolean;
  readPiecesSync?(key: string, dtype: 'f32' | 'f16', sink: (piece: TensorData, firstElement: number) => void): void;
  retain?(): () => void;
}

/**
 * Tensors of one or more weight files: safetensors or PyTorch checkpoints (`.bin`/`.pth`/`.pt`, read
 * through the whitelist unpickler), chosen per file by `openTensorFile`. Shards may mix formats.
 */
export class SafetensorsSource implements TensorSource {
  private owner = new Map<string, TensorFile>();
  /** The opener's reference plus one per `retain` not yet let go; the files close at zero. */
  private refs = 1;
  private openerClosed = false;
  constructor(readonly files: TensorFile[]) {
    for (const f of files) for (const k of f.tensors.keys()) this.owner.set(k, f);
  }
  static async open(io: FileSource, paths: string[]): Promise<SafetensorsSource> {
    const files: TensorFile[] = [];
    try {
      for (const p of paths) files.push(await openTensorFile(io, p));
    } catch (e) {
      for (const f of files) await f.close();
      throw e;
    }
    return new SafetensorsSource(files);
  }
  get name(): string {
    return this.files.map((f) => f.name).join(', ');
  }
  keys(): string[] {
    return [...this.owner.keys()];
  }
  has(key: string): boolean {
    return this.owner.has(key);
  }
  shape(key: string): number[] {
    return this.file(key).info(key).shape;
  }
  read(key: string, dtype: 'f32' | 'f16'): Promise<TensorData> {
    return this.file(key).read(key, dtype);
  }
  readTransient(key: string, dtype: 'f32' | 'f16'): Promise<TensorData> {
    const f = this.file(key);
    return f.readTransient ? f.readTransient(key, dtype) : f.read(key, dtype);
  }
  syncReadable(key: string): boolean {
    const f = this.owner.get(key);
    return !!f?.readPiecesSync && f.syncReadable === true;
  }
  readPiecesSync(key: string, dtype: 'f32' | 'f16', sink: (piece: TensorData, firstElement: number) => void): void {
    const f = this.file(key);
    if (!f.readPiecesSync) throw new UnsupportedError(`${f.name}: ${f.format} files cannot be read synchronously (streamed weights need safetensors)`);
    f.readPiecesSync(key, dtype, sink);
  }
  retain(): () => void {
    if (this.refs === 0) throw new UnsupportedError(`${this.name}: retained after its files were closed`);
    this.refs++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.unref().catch(() => {}); // read-only files: nothing is lost if a close fails
    };
  }
  private async unref(): Promise<void> {
    if (--this.refs === 0) for (const f of this.files) await f.close();
  }
  private file(key: string): TensorFile {
    const f = this.owner.get(key);
    if (!f) throw new WeightsError(`${this.name}: missing tensor "${key}"`, this.name, key);
    return f;
  }
  /** Closes the files, or — while streamed weights retain them — lets them close when the last one is freed. */
  async close(): Promise<void> {
    if (this.openerClosed) return;
    this.openerClosed = true;
    await this.unref();
  }
}

/** The same class under a format-neutral name. */
export const TensorFileSource = SafetensorsSource;
export type TensorFileSource = SafetensorsSource;

/**
 * Tensors seen under other key names, possibly from several sources: each entry maps the name a model asks
 * for → (source, key there). Original TAESD `.pth` keys → diffusers names use this (encoder and decoder
 * files both have a "1.conv.0.weight", so one flat key space would not do). Keys not mapped are hidden.
 */
export class RenamedSource implements TensorSource {
  private readonly map = new Map<string, { src: TensorSource; key: string }>();
  constructor(readonly name: string, entries: Iterable<readonly [string, TensorSource, string]>) {
    for (const [k, src, key] of entries) this.map.set(k, { src, key });
  }
  /** One source, renamed: `names` maps new key → key in `inner`. */
  static of(inner: TensorSource, names: ReadonlyMap<string, string>): RenamedSource {
    return new RenamedSource(inner.name, [...names].map(([k, v]) => [k, inner, v] as const));
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  shape(key: string): number[] {
    const e = this.entry(key);
    return e.src.shape(e.key);
  }
  read(key: string, dtype: 'f32' | 'f16'): Promise<TensorData> {
    const e = this.entry(key);
    return e.src.read(e.key, dtype);
  }
  readTransient(key: string, dtype: 'f32' | 'f16'): Promise<TensorData> {
    const e = this.entry(key);
    return e.src.readTransient ? e.src.readTransient(e.key, dtype) : e.src.read(e.key, dtype);
  }
  private entry(key: string): { src: TensorSource; key: string } {
    const e = this.map.get(key);
    if (!e) throw new WeightsError(`${this.name}: missing tensor "${key}"`, this.name, key);
    return e;
  }
}

/** A CPU-side transform applied to a weight as it loads (LoRA fusion uses this). */
export type WeightTransform = (key: string, values: Float32Array, shape: number[]) => Float32Array | Promise<Float32Array>;

/** Float dtypes weights load as. */
export type WeightDType = 'f32' | 'f16';

interface LoadingRoot {
  readonly kind: 'load';
  readonly source: TensorSource;
  readonly device: Device;
  readonly dtype: WeightDType;
  readonly transform: WeightTransform | undefined;
  /** Set: weights the source can read synchronously stream through this cache instead of being read at load. */
  readonly stream: ParameterCache | undefined;
  /** key → shape of every parameter handed out, in walk order. */
  readonly shapes: Map<string, number[]>;
  /** Source keys consumed without a tensor (`skip`). */
  readonly skipped: Set<string>;
  /** Tensors handed out but not yet filled (`materialize` fills them). */
  pending: { key: string; tensor: Tensor }[];
  readonly loaded: Tensor[];
}

interface RecordingRoot {
  readonly kind: 'record';
  readonly dtype: WeightDType;
  readonly shapes: Map<string, number[]>;
}

export class WeightScope {
  private constructor(private readonly root: LoadingRoot | RecordingRoot, readonly prefix: string) {}

  /**
   * A loading scope: the tensors of `source`, uploaded in `dtype` (through `transform` when given, e.g. LoRA
   * fusion). With `stream`, every weight the source can read synchronously is a streamed tensor instead (see
   * ParameterCache): nothing is read at load, the weight is read from its file whenever a kernel needs it and is
   * not resident, and the source's files stay open until the last such tensor is freed. Not with a transform:
   * a LoRA is fused once, at load, not at every read.
   */
  static create(source: TensorSource, device: Device, dtype: DType, transform?: WeightTransform, stream?: ParameterCache): WeightScope {
    if (dtype !== 'f32' && dtype !== 'f16') throw new UnsupportedError(`weights load as f32 or f16, not ${dtype}`);
    if (stream && stream.device !== device) throw new UnsupportedError('WeightScope.create: the ParameterCache belongs to another device');
    return new WeightScope({ kind: 'load', source, device, dtype, transform, stream, shapes: new Map(), skipped: new Set(), pending: [], loaded: [] }, '');
  }

  /**
   * A recording scope: `get` records key → shape and hands out a shape-only placeholder (any use of its data
   * throws), `has` is false (so layout detection falls back to the config), `finish` and `materialize` do
   * nothing. After a model's walk, `shapes` is its parameter map.
   */
  static recording(dtype: WeightDType = 'f32'): WeightScope {
    return new WeightScope({ kind: 'record', dtype, shapes: new Map() }, '');
  }

  /** True for a recording scope (`describe`): no source, no device, no data. */
  get recording(): boolean {
    return this.root.kind === 'record';
  }

  get device(): Device {
    if (this.root.kind === 'record') throw new UnsupportedError('a recording WeightScope has no device (it only records parameter shapes)');
    return this.root.device;
  }

  get dtype(): WeightDType {
    return this.root.dtype;
  }

  /** Child scope: `pp('down_blocks').pp(0)` → prefix "down_blocks.0.". */
  pp(name: string | number): WeightScope {
    return new WeightScope(this.root, `${this.prefix}${name}.`);
  }

  key(name: string): string {
    return this.prefix + name;
  }

  /** Whether the source holds `name` (always false while recording). */
  has(name: string): boolean {
    return this.root.kind === 'load' && this.root.source.has(this.key(name));
  }

  /** Stored shape of a tensor (for models that detect layout from rank, e.g. proj_in); check `has` first. */
  shape(name: string): number[] {
    const k = this.key(name);
    if (this.root.kind === 'record' || !this.root.source.has(k)) throw new WeightsError(`${this.sourceName}: missing tensor "${k}"`, this.sourceName, k);
    return this.root.source.shape(k);
  }

  /**
   * The parameter `name` of shape `shape`. Loading: a GPU tensor in the scope's dtype, checked against the
   * source (missing key, wrong shape), whose data arrives with `materialize()`. Recording: a placeholder.
   */
  get(name: string, shape: readonly number[]): Tensor {
    const k = this.key(name);
    const root = this.root;
    if (root.shapes.has(k)) throw new WeightsError(`${this.sourceName}: the model asks for tensor "${k}" twice`, this.sourceName, k);
    if (root.kind === 'record') {
      root.shapes.set(k, [...shape]);
      return shapeOnlyTensor(k, shape, root.dtype);
    }
    const got = this.checkShape(root, k, shape);
    root.shapes.set(k, got);
    const src = root.source;
    if (root.stream && !root.transform && src.readPiecesSync && src.retain && src.syncReadable?.(k)) {
      const t = Tensor.streamed(root.stream, got, root.dtype, streamedParameter(root, k, got, src.retain()));
      root.loaded.push(t);
      return t;
    }
    const t = Tensor.parameter(root.device, got, root.dtype).keep();
    root.loaded.push(t);
    root.pending.push({ key: k, tensor: t });
    return t;
  }

  /** `get` when the source holds `name`, else undefined (always undefined while recording). */
  getOptional(name: string, shape: readonly number[]): Tensor | undefined {
    return this.has(name) ? this.get(name, shape) : undefined;
  }

  /**
   * Marks a stored tensor the model does not need as used, after checking its shape (old CLIP checkpoints'
   * `position_ids` buffer). Not a parameter: recording scopes ignore it.
   */
  skip(name: string, shape: readonly number[]): void {
    if (this.root.kind === 'record') return;
    const k = this.key(name);
    this.checkShape(this.root, k, shape);
    this.root.skipped.add(k);
  }

  private checkShape(root: LoadingRoot, k: string, shape: readonly number[]): number[] {
    const src = root.source;
    if (!src.has(k)) throw new WeightsError(`${src.name}: missing tensor "${k}" (expected shape ${shapeStr(shape)})`, src.name, k);
    const got = src.shape(k);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new WeightsError(`${src.name}: tensor "${k}" has shape ${shapeStr(got)} but the model expects ${shapeStr(shape)}`, src.name, k);
    }
    return got;
  }

  private get sourceName(): string {
    return this.root.kind === 'load' ? this.root.source.name : 'recording scope';
  }

  /** Throws naming every source key the model did not use (nothing while recording). */
  finish(modelName: string): void {
    const root = this.root;
    if (root.kind === 'record') return;
    const extra = root.source.keys().filter((k) => !root.shapes.has(k) && !root.skipped.has(k));
    if (extra.length) {
      const shown = extra.slice(0, 8).map((k) => `"${k}"`).join(', ');
      throw new WeightsError(
        `${root.source.name}: ${extra.length} unexpected tensor(s) not used by ${modelName}: ${shown}${extra.length > 8 ? `, … (${extra.length - 8} more)` : ''}`,
        root.source.name,
        extra[0],
      );
    }
  }

  /**
   * Reads the data of every tensor handed out since the last call, one at a time (f32 through the transform
   * when there is one, else straight in the scope's dtype), into its GPU tensor. Nothing while recording.
   */
  async materialize(): Promise<void> {
    const root = this.root;
    if (root.kind === 'record') return;
    const pending = root.pending;
    root.pending = [];
    for (const { key, tensor } of pending) {
      let data: TensorData;
      if (root.transform) data = await root.transform(key, (await root.source.read(key, 'f32')) as Float32Array, [...tensor.shape]);
      // Uploaded at once (writeBuffer copies it), so the source may hand out its reused read buffer.
      else data = await (root.source.readTransient ? root.source.readTransient(key, root.dtype) : root.source.read(key, root.dtype));
      if (data.length !== tensor.size) {
        throw new WeightsError(`${root.source.name}: tensor "${key}" read ${data.length} values for shape ${shapeStr(tensor.shape)}`, root.source.name, key);
      }
      let view: ArrayBufferView;
      if (root.dtype === 'f16') view = data instanceof Uint16Array ? data : f32ArrayToF16(data);
      else view = data instanceof Float32Array ? data : Float32Array.from(data);
      if (tensor.size) root.device.write(tensor.buffer, 0, view);
    }
  }

  /** Every tensor this scope's root handed out (so a model can free its weights; empty while recording). */
  get loaded(): readonly Tensor[] {
    return this.root.kind === 'load' ? this.root.loaded : [];
  }

  /** key → shape of every parameter asked for so far, in walk order (a model's parameter map). */
  get shapes(): Map<string, number[]> {
    return this.root.shapes;
  }
}

/** A streamed weight: read in pieces, straight in the scope's dtype, into its buffer whenever it is filled. */
function streamedParameter(root: LoadingRoot, key: string, shape: number[], release: () => void): StreamedParameter {
  const { source, device, dtype } = root;
  const bpe = dtype === 'f16' ? 2 : 4;
  return {
    byteLength: numel(shape) * bpe,
    label: key,
    release,
    fill(buffer) {
      // Pieces come converted to the scope's dtype (f16: half bits).
      source.readPiecesSync!(key, dtype, (piece, first) => {
        if (piece.length) device.write(buffer, first * bpe, piece);
      });
    },
  };
}

/**
 * A stand-in for a parameter while recording: it has the shape and dtype (and size, rank) but no device or
 * data; touching anything else throws, so a model built for `describe` cannot run by mistake.
 */
function shapeOnlyTensor(key: string, shape: readonly number[], dtype: DType): Tensor {
  const known: Record<string | symbol, unknown> = { __isTensor: true, shape: [...shape], dtype, size: numel(shape), rank: shape.length };
  return new Proxy(known, {
    get(target, prop) {
      if (prop in target) return target[prop];
      if (typeof prop === 'symbol' || prop === 'then' || prop === 'toJSON') return undefined;
      throw new UnsupportedError(`tensor "${key}" ${shapeStr(shape)} belongs to a model built with a recording WeightScope (describe): it has a shape but no data (.${prop})`);
    },
  }) as unknown as Tensor;
}

/** The parameter map (key → shape, walk order) of whatever `build` builds: one walk with a recording scope. */
export function recordParameters(build: (w: WeightScope) => unknown): Map<string, number[]> {
  const w = WeightScope.recording();
  build(w);
  return w.shapes;
}

/**
 * Loads a model through a loading scope: `build` walks it (every key and shape checked, GPU tensors handed
 * out), `finish(what)` rejects keys the model did not use — before any data is read — unless `what` is null,
 * then `materialize` reads the weights. A failure frees every tensor handed out.
 */
export async function loadModel<M>(w: WeightScope, what: string | null, build: (w: WeightScope) => M): Promise<M> {
  try {
    const m = build(w);
    if (what !== null) w.finish(what);
    await w.materialize();
    return m;
  } catch (e) {
    disposeAll(w.loaded);
    throw e;
  }
}

/** Number of parameters in a key → shape map (a model's `describe`). */
export function countParameters(shapes: ReadonlyMap<string, readonly number[]>): number {
  let n = 0;
  for (const s of shapes.values()) n += numel(s);
  return n;
}

/** Frees weights; models call this from their `dispose()`. */
export function disposeAll(ts: readonly Tensor[]): void {
  for (const t of ts) t.dispose();
}
