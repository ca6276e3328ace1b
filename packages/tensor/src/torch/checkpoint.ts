/**
 * PyTorch checkpoints (`torch.save` zip format: .bin / .pth / .pt / .ckpt) with the face of
 * SafetensorsFile. Opening reads only the zip directory and `<folder>/data.pkl` (through the
 * whitelist unpickler); each `read` then fetches just the byte range of the one storage a tensor
 * views, honouring storage_offset and strides, so tensors stream one at a time.
 *
 * Opening also bounds what the file can cost (TENSOR_FILE_LIMITS): the pickle's size and work, the state
 * dict's entries and name lengths, and the bytes its views materialize — a view may repeat storage elements
 * only along broadcast (stride-0) dims, and all tensors together may not expand the file more than
 * viewExpansionFactor × its size + viewExpansionBytes.
 */
import type { FileSource, RandomAccessFile } from '../io.js';
import { ST_DTYPE_BYTES, type StDType } from '../safetensors/format.js';
import { checkTensorBytes, convert, type TargetDType, type TensorData } from '../safetensors/read.js';
import { numel } from '../tensor.js';
import { ResourceLimitError } from '../errors.js';
import { TENSOR_FILE_LIMITS as LIMITS, oneLine, quoteName } from '../tensor_file_limits.js';
import { TorchCheckpointError } from './errors.js';
import { PyDict, TensorRef, describePy, unpickle, type PyValue } from './pickle.js';
import { ZipArchive, type ZipEntry } from './zip.js';

export interface TorchStorageInfo {
  /** Persistent-id key: the record is `<folder>/data/<key>`. */
  key: string;
  /** torch storage class, e.g. "FloatStorage". */
  type: string;
  dtype: StDType;
  numel: number;
  entry: string;
}

export interface TorchTensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  /** In elements, as torch stores them. */
  stride: number[];
  storageOffset: number;
  storage: TorchStorageInfo;
  /** Row-major with no gaps: the tensor's bytes are one range of its storage. */
  contiguous: boolean;
  /** Number of tensors in this file reading the same storage (1 = not shared). */
  storageUsers: number;
}

export class TorchCheckpointFile {
  readonly format = 'pytorch' as const;
  /** safetensors-compatible face; torch checkpoints carry no string metadata. */
  readonly metadata: Record<string, string> = {};

  private constructor(
    readonly file: RandomAccessFile,
    private readonly zip: ZipArchive,
    /** The archive's top-level folder (taken from the `<folder>/data.pkl` record). */
    readonly folder: string,
    readonly tensors: ReadonlyMap<string, TorchTensorInfo>,
    readonly bigEndian: boolean,
    /** Keys of non-tensor values in the state dict (ints, strings, …), which are skipped. */
    readonly skipped: readonly string[],
  ) {}

  get name(): string {
    return this.file.name;
  }

  static async open(source: FileSource, path: string): Promise<TorchCheckpointFile> {
    const file = await source.open(path);
    try {
      return await TorchCheckpointFile.fromFile(file);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  static async fromFile(file: RandomAccessFile): Promise<TorchCheckpointFile> {
    const fail = (p: string): never => {
      throw new TorchCheckpointError(file.name, p);
    };
    if (file.size >= 2) {
      const head = await file.read(0, 2);
      // The pre-1.6 format is a bare pickle stream (protocol 2: 0x80 0x02), not a zip.
      if (head[0] === 0x80) fail('legacy PyTorch format (a bare pickle, torch < 1.6 or _use_new_zipfile_serialization=False) is not supported; re-save it with a current torch.save or convert it to safetensors');
      if (head[0] !== 0x50 || head[1] !== 0x4b) fail('not a PyTorch checkpoint: not a zip archive (torch.save has written zip files since torch 1.6)');
    }
    const zip = await ZipArchive.read(file);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length === 0) fail('no <folder>/data.pkl record: a zip archive, but not a PyTorch checkpoint');
    if (pkls.length > 1) fail(`several data.pkl records (${pkls.slice(0, 4).join(', ')}${pkls.length > 4 ? ', …' : ''}): not a single PyTorch checkpoint`);
    const folder = pkls[0]!.slice(0, -'/data.pkl'.length);
    const entry = (name: string) => zip.entries.get(`${folder}/${name}`);

    let bigEndian = false;
    const bo = entry('byteorder');
    if (bo) {
      if (bo.size > 64) fail(`${bo.name} is ${bo.size} bytes, expected "little" or "big"`);
      const v = new TextDecoder().decode(await zip.readAll(bo)).trim();
      if (v !== 'little' && v !== 'big') fail(`${bo.name} says "${v.slice(0, 20)}", expected "little" or "big"`);
      bigEndian = v === 'big';
    }
    const pklEntry = zip.entries.get(pkls[0]!)!;
    if (pklEntry.size > LIMITS.pickleBytes) throw new ResourceLimitError(`${file.name}: ${oneLine(pklEntry.name)} is ${pklEntry.size} bytes, more than a state dict pickle may have (TENSOR_FILE_LIMITS.pickleBytes = ${LIMITS.pickleBytes})`);
    const root = unpickle(await zip.readAll(pklEntry), { file: file.name, entry: pklEntry.name });
    if (!(root instanceof PyDict)) fail(`the checkpoint holds a ${describePy(root)}, not a state dict (a dict of tensors)`);

    // Flatten nested dicts ("state_dict" → {...}) with dotted keys; tensors are kept, other leaves skipped.
    // Memo references make the dicts a graph: a dict inside itself is refused, and every entry reached (again)
    // counts against TENSOR_FILE_LIMITS.entries and nameChars, so shared dicts cannot multiply into millions.
    const found: [string, TensorRef][] = [];
    const skipped: string[] = [];
    const onPath = new Set<PyDict>();
    let entries = 0;
    let nameChars = 0;
    const walk = (d: PyDict, prefix: string, depth: number) => {
      if (onPath.has(d)) fail(`the state dict holds itself under ${quoteName(prefix.slice(0, -1))}: not a state dict`);
      onPath.add(d);
      for (const [k, v] of d.map) {
        if (++entries > LIMITS.entries) throw new ResourceLimitError(`${file.name}: the state dict has more than ${LIMITS.entries} entries (TENSOR_FILE_LIMITS.entries; nested dicts reached through the memo count each time)`);
        const ks = typeof k === 'string' ? k : typeof k === 'number' || typeof k === 'bigint' ? String(k) : fail(`state dict key is a ${describePy(k as PyValue)}, not a string`);
        if ((nameChars += prefix.length + ks.length) > LIMITS.nameChars) throw new ResourceLimitError(`${file.name}: the state dict's keys are longer than ${LIMITS.nameChars} characters in all (TENSOR_FILE_LIMITS.nameChars)`);
        const key = prefix + ks;
        if (v instanceof TensorRef) found.push([key, v]);
        else if (v instanceof PyDict && depth < LIMITS.stateDictDepth) walk(v, `${key}.`, depth + 1);
        else skipped.push(key);
      }
      onPath.delete(d);
    };
    walk(root as PyDict, '', 0);

    const users = new Map<string, number>();
    for (const [, t] of found) users.set(t.storage.key, (users.get(t.storage.key) ?? 0) + 1);
    const tensors = new Map<string, TorchTensorInfo>();
    const budget = LIMITS.viewExpansionFactor * file.size + LIMITS.viewExpansionBytes;
    let materialized = 0;
    for (const [name, t] of found) {
      const q = quoteName(name);
      if (tensors.has(name)) fail(`tensor ${q} appears twice`);
      const s = t.storage;
      const recName = `${folder}/data/${s.key}`;
      const rec = zip.entries.get(recName);
      if (!rec) fail(`tensor ${q}: its storage record ${quoteName(recName).slice(1, -1)} is missing (truncated or corrupt checkpoint)`);
      const es = ST_DTYPE_BYTES[s.dtype];
      if (rec!.size < s.numel * es) fail(`tensor ${q}: storage ${recName} holds ${rec!.size} bytes but ${s.numel} ${s.storageType} elements need ${s.numel * es}`);
      const n = numel(t.shape);
      if (n > 0) {
        const view = `size [${t.shape.join(',')}], stride [${t.stride.join(',')}] at offset ${t.storageOffset}`;
        const last = t.storageOffset + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i]!, 0);
        if (last >= s.numel) fail(`tensor ${q}: ${view} reaches element ${last} of a ${s.numel}-element storage`);
        // Storage elements may repeat only along broadcast (stride-0) dims: the other dims must fit in the storage.
        let distinct = 1;
        for (let i = 0; i < t.shape.length; i++) if (t.stride[i] !== 0) distinct *= t.shape[i]!;
        if (distinct > s.numel - t.storageOffset) fail(`tensor ${q}: ${view} has ${distinct} elements outside broadcast (stride-0) dims but its storage holds ${s.numel - t.storageOffset} from that offset: an overlapping view`);
        if ((materialized += n * es) > budget) {
          throw new ResourceLimitError(
            `${file.name}: tensor ${q}: ${s.dtype} [${t.shape.join(', ')}] (${n * es} bytes${n > distinct ? `, broadcast from ${distinct * es}` : ''}) takes the checkpoint's tensors past ${budget} bytes, ` +
              `more than ${LIMITS.viewExpansionFactor}× its ${file.size} bytes + ${LIMITS.viewExpansionBytes} (TENSOR_FILE_LIMITS.viewExpansionFactor, viewExpansionBytes): its views repeat storage too often`,
          );
        }
      }
      tensors.set(name, {
        name,
        dtype: s.dtype,
        shape: t.shape,
        stride: t.stride,
        storageOffset: t.storageOffset,
        storage: { key: s.key, type: s.storageType, dtype: s.dtype, numel: s.numel, entry: recName },
        contiguous: isContiguous(t.shape, t.stride),
        storageUsers: users.get(s.key)!,
      });
    }
    return new TorchCheckpointFile(file, zip, folder, tensors, bigEndian, skipped);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TorchTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new TorchCheckpointError(this.file.name, `no tensor named ${quoteName(name)}`);
    return t;
  }

  /** One tensor as contiguous little-endian bytes of its own dtype (what a safetensors file would store). */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const es = ST_DTYPE_BYTES[t.dtype];
    const n = numel(t.shape);
    if (n === 0) return new Uint8Array(0);
    checkTensorBytes(n * es, `${this.file.name}: tensor ${quoteName(name)}`);
    // Only the span from the first to the last element this view touches.
    const span = 1 + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i]!, 0);
    const entry = this.zip.entries.get(t.storage.entry) as ZipEntry;
    const raw = await this.zip.readRange(entry, t.storageOffset * es, span * es);
    let out = t.contiguous ? raw : gather(raw, t.shape, t.stride, es);
    if (this.bigEndian && es > 1) out = byteswap(out, es);
    return out;
  }

  /** Reads one tensor converted to `target` (default: f32 for floats, i32 for integers). */
  async read(name: string, target?: TargetDType): Promise<TensorData> {
    const t = this.info(name);
    const raw = await this.readBytes(name);
    const to = target ?? (t.dtype.startsWith('F') || t.dtype === 'BF16' ? 'f32' : 'i32');
    return convert(raw, t.dtype, to, `${this.file.name}: tensor ${quoteName(name)}`);
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue; // a size-1 dim's stride is never used
    if (stride[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}

/** Copies a strided view (element strides, starting at element 0 of `src`) into row-major order. */
function gather(src: Uint8Array, shape: number[], stride: number[], es: number): Uint8Array {
  const n = numel(shape);
  const out = new Uint8Array(n * es);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const inner = shape[rank - 1]!, innerStride = stride[rank - 1]! * es;
  let base = 0; // byte offset in src of the current row start
  for (let o = 0; o < n * es; ) {
    for (let j = 0, p = base; j < inner; j++, p += innerStride) for (let b = 0; b < es; b++) out[o++] = src[p + b]!;
    // Odometer over the outer dims.
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]!++;
      base += stride[d]! * es;
      if (idx[d]! < shape[d]!) break;
      base -= stride[d]! * es * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

function byteswap(src: Uint8Array, es: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += es) for (let b = 0; b < es; b++) out[i + b] = src[i + es - 1 - b]!;
  return out;
}
