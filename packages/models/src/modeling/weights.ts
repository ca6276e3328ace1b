/**
 * Weight loading by name. A module's property path is its checkpoint key path (diffusers names), so
 * loading is a walk: `w.pp('down_blocks').pp(0).get('conv1.weight', [O, C, 3, 3])`. Every read is
 * shape-checked and recorded; `finish()` then fails on keys the model never asked for.
 */
import { Tensor, openTensorFile, shapeStr, type DType, type Device, type FileSource, type TensorData, type TensorFile } from '@fewstep/tensor';

/** Where tensors come from: one or more safetensors files / PyTorch checkpoints (or anything with the same face). */
export interface TensorSource {
  readonly name: string;
  keys(): string[];
  has(key: string): boolean;
  shape(key: string): number[];
  read(key: string, dtype: 'f32' | 'f16'): Promise<TensorData>;
}

/**
 * Tensors of one or more weight files: safetensors or PyTorch checkpoints (`.bin`/`.pth`/`.pt`, read
 * through the whitelist unpickler), chosen per file by `openTensorFile`. Shards may mix formats.
 */
export class SafetensorsSource implements TensorSource {
  private owner = new Map<string, TensorFile>();
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
  private file(key: string): TensorFile {
    const f = this.owner.get(key);
    if (!f) throw new Error(`${this.name}: missing tensor "${key}"`);
    return f;
  }
  async close(): Promise<void> {
    for (const f of this.files) await f.close();
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
  private entry(key: string): { src: TensorSource; key: string } {
    const e = this.map.get(key);
    if (!e) throw new Error(`${this.name}: missing tensor "${key}"`);
    return e;
  }
}

/** A CPU-side transform applied to a weight as it loads (LoRA fusion uses this). */
export type WeightTransform = (key: string, values: Float32Array, shape: number[]) => Float32Array | Promise<Float32Array>;

interface Root {
  source: TensorSource;
  device: Device;
  dtype: DType;
  used: Set<string>;
  loaded: Tensor[];
  transform?: WeightTransform | undefined;
}

export class WeightScope {
  private constructor(private readonly root: Root, readonly prefix: string) {}

  static create(source: TensorSource, device: Device, dtype: DType, transform?: WeightTransform): WeightScope {
    return new WeightScope({ source, device, dtype, used: new Set(), loaded: [], transform }, '');
  }

  get device(): Device {
    return this.root.device;
  }
  get dtype(): DType {
    return this.root.dtype;
  }

  /** Child scope: `pp('down_blocks').pp(0)` → prefix "down_blocks.0.". */
  pp(name: string | number): WeightScope {
    return new WeightScope(this.root, `${this.prefix}${name}.`);
  }

  key(name: string): string {
    return this.prefix + name;
  }

  has(name: string): boolean {
    return this.root.source.has(this.key(name));
  }

  /** Stored shape of a tensor (for models that detect layout from rank, e.g. proj_in). */
  shape(name: string): number[] {
    const k = this.key(name);
    if (!this.root.source.has(k)) throw new Error(`${this.root.source.name}: missing tensor "${k}"`);
    return this.root.source.shape(k);
  }

  /** Loads one tensor to the GPU in the model's dtype, checking its shape. */
  async get(name: string, shape?: readonly number[]): Promise<Tensor> {
    const k = this.key(name);
    const src = this.root.source;
    if (!src.has(k)) throw new Error(`${src.name}: missing tensor "${k}"${shape ? ` (expected shape ${shapeStr(shape)})` : ''}`);
    const got = src.shape(k);
    if (shape && (got.length !== shape.length || got.some((d, i) => d !== shape[i]))) {
      throw new Error(`${src.name}: tensor "${k}" has shape ${shapeStr(got)} but the model expects ${shapeStr(shape)}`);
    }
    this.root.used.add(k);
    const dtype = this.root.dtype === 'f16' ? 'f16' : 'f32';
    let data: TensorData;
    if (this.root.transform) {
      const f32 = (await src.read(k, 'f32')) as Float32Array;
      const t = await this.root.transform(k, f32, got);
      data = t;
    } else data = await src.read(k, dtype);
    const t = Tensor.from(this.root.device, data, got, dtype).keep();
    this.root.loaded.push(t);
    return t;
  }

  async getOptional(name: string, shape?: readonly number[]): Promise<Tensor | undefined> {
    return this.has(name) ? this.get(name, shape) : undefined;
  }

  /** Throws naming every checkpoint key the model did not use. */
  finish(modelName: string): void {
    const extra = this.root.source.keys().filter((k) => !this.root.used.has(k));
    if (extra.length) {
      const shown = extra.slice(0, 8).map((k) => `"${k}"`).join(', ');
      throw new Error(`${this.root.source.name}: ${extra.length} unexpected tensor(s) not used by ${modelName}: ${shown}${extra.length > 8 ? `, … (${extra.length - 8} more)` : ''}`);
    }
  }

  /** Every tensor loaded through this root (so a model can free its weights). */
  get loaded(): readonly Tensor[] {
    return this.root.loaded;
  }
}

/** Frees weights; models call this from their `dispose()`. */
export function disposeAll(ts: readonly Tensor[]): void {
  for (const t of ts) t.dispose();
}
