// Builders for hostile (and well-formed) weight files, shared by hostile-*.test.ts and fuzz-*.test.ts: a
// small pickle assembler, a stored-only zip writer, torch.save-shaped checkpoints and raw safetensors files.
// Everything is generated in memory; nothing large is committed.
import { crc32 } from '@fewstep/tensor/testing';

const utf8 = new TextEncoder();

/** A growable byte buffer. */
export class Bytes {
  private buf = new Uint8Array(256);
  length = 0;
  push(...bytes: number[]): this {
    this.reserve(bytes.length);
    for (const b of bytes) this.buf[this.length++] = b;
    return this;
  }
  append(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  u32(v: number): this {
    return this.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
  private reserve(n: number) {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}

/** A protocol-2 pickle assembler (the opcodes torch.save emits, and a few it never does). */
export class Pickle extends Bytes {
  constructor(proto = 2) {
    super();
    this.push(0x80, proto);
  }
  stop() { return this.push(0x2e); }
  mark() { return this.push(0x28); }
  pop() { return this.push(0x30); }
  dup() { return this.push(0x32); }
  none() { return this.push(0x4e); }
  bool(v: boolean) { return this.push(v ? 0x88 : 0x89); }
  emptyDict() { return this.push(0x7d); }
  emptyList() { return this.push(0x5d); }
  emptyTuple() { return this.push(0x29); }
  tuple() { return this.push(0x74); }
  tuple1() { return this.push(0x85); }
  tuple2() { return this.push(0x86); }
  setitem() { return this.push(0x73); }
  setitems() { return this.push(0x75); }
  append_() { return this.push(0x61); }
  appends() { return this.push(0x65); }
  reduce() { return this.push(0x52); }
  persid() { return this.push(0x51); }
  build() { return this.push(0x62); }
  put(i: number) { return i < 256 ? this.push(0x71, i) : this.push(0x72).u32(i); }
  get(i: number) { return i < 256 ? this.push(0x68, i) : this.push(0x6a).u32(i); }
  int(n: number) {
    if (n >= 0 && n < 256) return this.push(0x4b, n);
    if (n >= 0 && n < 65536) return this.push(0x4d, n & 255, n >> 8);
    return this.push(0x4a).u32(n >>> 0);
  }
  str(s: string) {
    const b = utf8.encode(s);
    return b.length < 256 ? this.push(0x8c, b.length).append(b) : this.push(0x58).u32(b.length).append(b);
  }
  global(module: string, name: string) {
    return this.push(0x63).append(utf8.encode(`${module}\n${name}\n`));
  }
  intTuple(xs: readonly number[]) {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  /** `_rebuild_tensor_v2(persid(('storage', torch.<type>, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`. */
  tensor(t: { type?: string; key: string; numel: number; offset?: number; size: readonly number[]; stride: readonly number[] }) {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', t.type ?? 'FloatStorage').str(t.key).str('cpu').int(t.numel).tuple().persid();
    this.int(t.offset ?? 0).intTuple(t.size).intTuple(t.stride).bool(false);
    this.global('collections', 'OrderedDict').emptyTuple().reduce();
    return this.tuple().reduce();
  }
}

export interface ZipRecord {
  name: string;
  data: Uint8Array;
  /** The CRC-32 to record instead of computing it (a record the reader refuses before reading it). */
  crc?: number;
}

/** A stored (uncompressed) zip archive, as torch.save writes. */
export function makeZip(records: readonly ZipRecord[]): Uint8Array {
  const out = new Bytes();
  const central = new Bytes();
  for (const r of records) {
    const name = utf8.encode(r.name);
    const crc = r.crc ?? crc32(r.data);
    const at = out.length;
    out.u32(0x04034b50).push(20, 0, 0, 0, 0, 0, 0, 0, 0, 0).u32(crc).u32(r.data.length).u32(r.data.length).push(name.length & 255, name.length >> 8, 0, 0).append(name).append(r.data);
    central.u32(0x02014b50).push(20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0).u32(crc).u32(r.data.length).u32(r.data.length);
    central.push(name.length & 255, name.length >> 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).u32(at).append(name);
  }
  const cdOffset = out.length;
  const cd = central.bytes();
  out.append(cd);
  const n = records.length;
  out.u32(0x06054b50).push(0, 0, 0, 0, n & 255, n >> 8, n & 255, n >> 8).u32(cd.length).u32(cdOffset).push(0, 0);
  return out.bytes();
}

/** A torch.save-shaped checkpoint: `<folder>/data.pkl`, one `<folder>/data/<key>` record per storage, a version record. */
export function checkpoint(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, folder = 'archive'): Uint8Array {
  return makeZip([
    { name: `${folder}/data.pkl`, data: pickle },
    ...Object.entries(storages).map(([k, data]) => ({ name: `${folder}/data/${k}`, data })),
    { name: `${folder}/version`, data: utf8.encode('3\n') },
  ]);
}

/** A safetensors file from a header value (serialised as is, or a raw JSON string) and data bytes. */
export function safetensorsBytes(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = utf8.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

// ------------------------------------------------------------------------ the hostile files of the probe

/**
 * "Billion laughs" of memoized dicts: d0 = {'x': a tensor}, d(i) = {k1: d(i-1), …, k(width): d(i-1)},
 * each level fetched from the memo `width` times. Some hundreds of bytes describe width^levels entries.
 */
export function memoDictBomb(width: number, levels: number): Uint8Array {
  const p = new Pickle();
  p.emptyDict().put(0).str('x').tensor({ key: '0', numel: 1, size: [1], stride: [1] }).setitem().pop();
  for (let l = 1; l <= levels; l++) {
    p.emptyDict().mark();
    for (let i = 0; i < width; i++) p.str(String.fromCharCode(97 + (i % 26)) + (i >= 26 ? String(i) : '')).get(l - 1);
    p.setitems().put(l).pop();
  }
  p.get(levels).stop();
  return checkpoint(p.bytes(), { '0': new Uint8Array(4) });
}

/** One dict that holds itself under `width` keys: a few dozen bytes, an unbounded tree to whoever walks it. */
export function selfNestedDict(width: number): Uint8Array {
  const p = new Pickle();
  p.emptyDict().put(0).mark();
  for (let i = 0; i < width; i++) p.str(`k${i}`).get(0);
  p.setitems().str('w').tensor({ key: '0', numel: 1, size: [1], stride: [1] }).setitem().stop();
  return checkpoint(p.bytes(), { '0': new Uint8Array(4) });
}

/**
 * The memo-reuse counter's blind spot: the nested dicts are memoized empty and referenced from their parents
 * while still empty, then filled from the innermost out, so each GET fetches an empty dict.
 */
export function lateFilledDictBomb(width: number, levels: number): Uint8Array {
  const p = new Pickle();
  for (let l = 0; l <= levels; l++) p.emptyDict().put(l).pop();
  for (let l = levels; l >= 1; l--) {
    p.get(l).mark();
    for (let i = 0; i < width; i++) p.str(`k${i}`).get(l - 1);
    p.setitems().pop();
  }
  p.get(0).str('w').tensor({ key: '0', numel: 1, size: [1], stride: [1] }).setitem().pop();
  p.get(levels).stop();
  return checkpoint(p.bytes(), { '0': new Uint8Array(4) });
}

/** OrderedDict(list of n pairs) called `calls` times on the same memoized list: n × calls copies. */
export function orderedDictAmplification(n: number, calls: number): Uint8Array {
  const p = new Pickle();
  p.global('collections', 'OrderedDict').put(0).pop();
  p.emptyList().put(1).mark();
  for (let i = 0; i < n; i++) p.mark().int(i).none().tuple();
  p.appends().pop();
  p.emptyList().put(2).pop();
  for (let i = 0; i < calls; i++) p.get(0).get(1).tuple1().reduce().pop();
  p.emptyDict().stop();
  return p.bytes();
}

/**
 * The same, past the memo counter: `calls` pending OrderedDict(L) calls take the list L while it is still
 * empty, then L is filled with n pairs, then every call copies it: n × calls items from a file of ~10 × (n + calls) bytes.
 */
export function lateFilledOrderedDict(n: number, calls: number): Uint8Array {
  const p = new Pickle();
  p.global('collections', 'OrderedDict').put(0).pop();
  p.emptyList().put(1).pop();
  for (let i = 0; i < calls; i++) p.get(0).get(1).tuple1();
  p.get(1).mark();
  for (let i = 0; i < n; i++) p.mark().int(i).none().tuple();
  p.appends().pop();
  for (let i = 0; i < calls; i++) p.reduce().pop();
  return p.emptyDict().stop().bytes();
}

/** One APPENDS of n items (a spread of n arguments in a naive reader). */
export function bigAppends(n: number): Uint8Array {
  const p = new Pickle();
  p.emptyList().mark();
  for (let i = 0; i < n; i++) p.bool(true);
  return p.appends().stop().bytes();
}

/** A LONG4 integer of n bytes (quadratic for a byte-at-a-time BigInt decoder). */
export function hugeLong(n: number): Uint8Array {
  const p = new Pickle();
  p.emptyDict().str('n').push(0x8b).u32(n).append(new Uint8Array(n).fill(0x11)).setitem();
  return p.stop().bytes();
}

/** A tensor of `size` viewing a 1-element FloatStorage with all strides 0 (a broadcast of one value). */
export function strideZeroCheckpoint(size: readonly number[], name = 'w'): Uint8Array {
  const p = new Pickle();
  p.emptyDict().str(name).tensor({ key: '0', numel: 1, size, stride: size.map(() => 0) }).setitem().stop();
  return checkpoint(p.bytes(), { '0': new Uint8Array(Float32Array.of(1.5).buffer) });
}

/** A valid safetensors file of `count` empty tensors (names t0, t1, …). */
export function manyTensorsSafetensors(count: number): Uint8Array {
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
  return safetensorsBytes(`{${parts.join(',')}}`);
}

/** A safetensors header whose tensor's dtype is an array nested `depth` deep. */
export function deepHeaderSafetensors(depth: number, key: 'dtype' | 'shape' | 'data_offsets' = 'dtype'): Uint8Array {
  const entry = key === 'dtype' ? `{"dtype":${'['.repeat(depth)}${']'.repeat(depth)},"shape":[],"data_offsets":[0,0]}` : `{"dtype":"F32","shape":[1],"${key}":${'['.repeat(depth)}${']'.repeat(depth)}}`;
  return safetensorsBytes(`{"w":${entry}}`);
}

/** A valid one-tensor safetensors file whose header length's low byte is 0x80 (the first byte of a pickle). */
export function safetensorsStartingWith0x80(): Uint8Array {
  const values = Float32Array.of(1, 2, 3);
  for (let pad = 0; pad < 512; pad++) {
    const header = JSON.stringify({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, __metadata__: { pad: ' '.repeat(pad) } });
    if (utf8.encode(header).length % 256 === 0x80) return safetensorsBytes(header, new Uint8Array(values.buffer));
  }
  throw new Error('unreachable');
}
