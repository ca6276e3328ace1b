/**
 * A whitelist unpickler for PyTorch state dicts. It interprets the pickle opcodes as a data format and
 * never calls or imports anything: the few callables a state dict needs (OrderedDict, _rebuild_tensor_v2,
 * _rebuild_parameter) are modelled as plain data builders, storages become references to zip records,
 * and every other global, or an opcode that constructs arbitrary objects (INST, OBJ, NEWOBJ, EXT*, …),
 * stops the read with one error naming the file, the global or opcode and its byte offset — at the
 * opcode itself, before anything after it is looked at.
 */
import type { StDType } from '../safetensors/format.js';
import { TorchCheckpointError } from './errors.js';

/** A Python tuple (immutable; distinct from a list). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
export class PyList {
  constructor(readonly items: PyValue[]) {}
}
/** dict or collections.OrderedDict; keys are primitives (or tuple objects, compared by identity). */
export class PyDict {
  readonly map = new Map<unknown, PyValue>();
  constructor(readonly ordered: boolean) {}
}
/** A whitelisted global (`module name`), never resolved to anything callable. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}
/** A torch storage: the zip record `<folder>/data/<key>` holding `numel` elements of `dtype`. */
export class StorageRef {
  constructor(readonly key: string, readonly storageType: string, readonly dtype: StDType, readonly numel: number, readonly location: string) {}
}
/** torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, …), as data. */
export class TensorRef {
  constructor(readonly storage: StorageRef, readonly storageOffset: number, readonly shape: number[], readonly stride: number[]) {}
}
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyTuple | PyList | PyDict | PyGlobal | StorageRef | TensorRef;

/** torch.<Type>Storage → safetensors dtype. */
export const STORAGE_DTYPES: Readonly<Record<string, StDType>> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const ALLOWED_CALLABLES = new Set(['collections OrderedDict', 'torch._utils _rebuild_tensor_v2', 'torch._utils _rebuild_parameter']);

export function isAllowedGlobal(module: string, name: string): boolean {
  return ALLOWED_CALLABLES.has(`${module} ${name}`) || (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name));
}

const OPNAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND',
  0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET',
  0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT',
  0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Opcodes whose only purpose is building arbitrary objects or calling code; never needed by a state dict. */
const CODE_OPCODES = new Set(['INST', 'OBJ', 'NEWOBJ', 'NEWOBJ_EX', 'EXT1', 'EXT2', 'EXT4', 'PERSID']);

const MARK: unique symbol = Symbol('mark');
type Slot = PyValue | typeof MARK;

export interface UnpickleContext {
  /** The checkpoint file (every message starts with it). */
  file: string;
  /** The record being read, e.g. `archive/data.pkl`. */
  entry: string;
}

/** Interprets a pickle as data. Returns the top-level value. */
export function unpickle(bytes: Uint8Array, ctx: UnpickleContext): PyValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  const storages = new Map<string, StorageRef>();
  let pos = 0;
  let opAt = 0;
  let op = '';

  const corrupt = (p: string): never => {
    throw new TorchCheckpointError(ctx.file, `${ctx.entry}: ${p} (${op || 'start'} at byte ${opAt}): corrupt pickle`);
  };
  const refuse = (p: string): never => {
    throw new TorchCheckpointError(ctx.file, `unsafe pickle refused: ${p} at byte ${opAt} of ${ctx.entry} is not allowed in a tensor checkpoint (only collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage are); nothing was executed`, 'unsafe_pickle');
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length) corrupt(`needs ${n} more bytes but the pickle ends at ${bytes.length}`);
  };
  const u8 = () => (need(1), bytes[pos++]!);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getUint32(pos, true) + dv.getUint32(pos + 4, true) * 2 ** 32;
    pos += 8;
    if (!Number.isSafeInteger(v)) corrupt(`length ${v} is too large`);
    return v;
  };
  const take = (n: number) => (need(n), (pos += n), bytes.subarray(pos - n, pos));
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) corrupt('unterminated text argument');
    const s = latin1(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (b: Uint8Array) => {
    try {
      return utf8.decode(b);
    } catch {
      return corrupt('invalid UTF-8 string');
    }
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) corrupt('stack underflow');
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) corrupt('stack underflow');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) corrupt('no MARK on the stack');
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const dictOf = (v: PyValue): PyDict => (v instanceof PyDict ? v : corrupt(`SETITEM(S) on a ${describePy(v)}`));
  const listOf = (v: PyValue): PyList => (v instanceof PyList ? v : corrupt(`APPEND(S) on a ${describePy(v)}`));
  const setKey = (d: PyDict, k: PyValue, v: PyValue) => {
    if (k instanceof PyList || k instanceof PyDict) corrupt('unhashable dict key');
    d.map.set(k, v);
  };
  const global = (module: string, name: string): PyGlobal => {
    // The whole point: a global is checked the moment it is named, before any REDUCE could use it.
    if (!isAllowedGlobal(module, name)) refuse(`global "${module} ${name}" (${module}.${name})`);
    return new PyGlobal(module, name);
  };
  const int = (v: PyValue, what: string): number => {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'boolean') return v ? 1 : 0;
    return corrupt(`${what} is a ${describePy(v)}, not an integer`);
  };
  const intTuple = (v: PyValue, what: string): number[] => {
    if (!(v instanceof PyTuple)) return corrupt(`${what} is a ${describePy(v)}, not a tuple`);
    return v.items.map((x) => int(x, what));
  };
  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return refuse(`REDUCE on a ${describePy(fn)}`);
    if (!(args instanceof PyTuple)) return corrupt(`REDUCE arguments are a ${describePy(args)}, not a tuple`);
    const a = args.items;
    switch (`${fn.module} ${fn.name}`) {
      case 'collections OrderedDict': {
        const d = new PyDict(true);
        if (a.length > 1) corrupt('OrderedDict() takes at most one argument');
        if (a.length === 1 && a[0] !== null) {
          const src = a[0]!;
          const pairs = src instanceof PyList || src instanceof PyTuple ? src.items : src instanceof PyDict ? [...src.map].map(([k, v]) => new PyTuple([k as PyValue, v])) : corrupt(`OrderedDict(${describePy(src)})`);
          for (const p of pairs) {
            if (!(p instanceof PyTuple || p instanceof PyList) || p.items.length !== 2) corrupt('OrderedDict item is not a (key, value) pair');
            setKey(d, (p as PyTuple).items[0]!, (p as PyTuple).items[1]!);
          }
        }
        return d;
      }
      case 'torch._utils _rebuild_tensor_v2': {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.length < 4 || a.length > 7) corrupt(`_rebuild_tensor_v2 with ${a.length} arguments`);
        const s = a[0]!;
        if (!(s instanceof StorageRef)) return corrupt(`_rebuild_tensor_v2 storage is a ${describePy(s)}`);
        const offset = int(a[1]!, 'storage_offset');
        const shape = intTuple(a[2]!, 'size');
        const stride = intTuple(a[3]!, 'stride');
        if (shape.length !== stride.length) corrupt(`size ${JSON.stringify(shape)} and stride ${JSON.stringify(stride)} differ in rank`);
        if (offset < 0 || shape.some((d) => d < 0) || stride.some((d) => d < 0)) corrupt('negative size, stride or storage_offset');
        return new TensorRef(s, offset, shape, stride);
      }
      case 'torch._utils _rebuild_parameter': {
        // (data, requires_grad, backward_hooks): a Parameter is its tensor here.
        if (a.length !== 3 || !(a[0] instanceof TensorRef)) corrupt('_rebuild_parameter arguments are not (tensor, requires_grad, hooks)');
        return a[0]!;
      }
      default:
        return refuse(`calling ${fn.module}.${fn.name}`);
    }
  };
  const persistentLoad = (pid: PyValue): StorageRef => {
    // ('storage', torch.<Type>Storage, key, location, numel) — torch.serialization's own layout.
    if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage') return refuse(`persistent id ${describePy(pid)} (only ('storage', …) records)`);
    const [, type, key, location, n] = pid.items;
    if (pid.items.length !== 5 || !(type instanceof PyGlobal) || typeof key !== 'string' || typeof location !== 'string') return corrupt('malformed storage persistent id');
    if (type.module !== 'torch' || !Object.hasOwn(STORAGE_DTYPES, type.name)) return refuse(`storage type ${type}`);
    const numel = int(n!, 'storage numel');
    const dtype = STORAGE_DTYPES[type.name]!;
    const seen = storages.get(key);
    if (seen) {
      if (seen.dtype !== dtype) corrupt(`storage "${key}" is used as both ${seen.storageType} and ${type.name}`);
      return seen;
    }
    const s = new StorageRef(key, type.name, dtype, numel, location);
    storages.set(key, s);
    return s;
  };

  while (true) {
    opAt = pos;
    if (pos >= bytes.length) corrupt('ends without STOP (truncated)');
    const code = bytes[pos++]!;
    op = OPNAMES[code] ?? `0x${code.toString(16).padStart(2, '0')}`;
    switch (code) {
      case 0x80: { // PROTO
        const v = u8();
        if (v > 5) corrupt(`unknown pickle protocol ${v}`);
        break;
      }
      case 0x95: u64(); break; // FRAME: a length prefix only (framing is transparent to us)
      case 0x2e: { // STOP
        const v = pop();
        return v;
      }
      case 0x28: stack.push(MARK); break;
      case 0x30: pop(); break;
      case 0x31: popMark(); break;
      case 0x32: stack.push(top()); break;
      case 0x4e: stack.push(null); break;
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4a: stack.push(i32()); break;
      case 0x4b: stack.push(u8()); break;
      case 0x4d: stack.push(u16()); break;
      case 0x49: { // INT (text); "I01"/"I00" are True/False in protocol 0
        const s = line().trim();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else stack.push(textInt(s, corrupt));
        break;
      }
      case 0x4c: stack.push(textInt(line().trim().replace(/L$/, ''), corrupt)); break; // LONG (text)
      case 0x8a: stack.push(longLE(take(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) corrupt('negative LONG4 length');
        stack.push(longLE(take(n)));
        break;
      }
      case 0x47: need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x46: { // FLOAT (text)
        const v = Number(line().trim());
        if (Number.isNaN(v)) corrupt('bad FLOAT');
        stack.push(v);
        break;
      }
      case 0x58: stack.push(str(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(str(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(str(take(u64()))); break; // BINUNICODE8
      case 0x54: { // BINSTRING (py2 str): latin-1, as python3's default encoding for them does
        const n = i32();
        if (n < 0) corrupt('negative BINSTRING length');
        stack.push(latin1(take(n)));
        break;
      }
      case 0x55: stack.push(latin1(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(take(u64()).slice()); break; // BINBYTES8
      case 0x29: stack.push(new PyTuple([])); break;
      case 0x74: stack.push(new PyTuple(popMark())); break;
      case 0x85: { const a = pop(); stack.push(new PyTuple([a])); break; }
      case 0x86: { const b = pop(), a = pop(); stack.push(new PyTuple([a, b])); break; }
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push(new PyTuple([a, b, c])); break; }
      case 0x5d: stack.push(new PyList([])); break;
      case 0x6c: stack.push(new PyList(popMark())); break;
      case 0x61: { const v = pop(); listOf(top()).items.push(v); break; }
      case 0x65: { const items = popMark(); listOf(top()).items.push(...items); break; }
      case 0x7d: stack.push(new PyDict(false)); break;
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) corrupt('DICT with an odd number of items');
        const d = new PyDict(false);
        for (let i = 0; i < items.length; i += 2) setKey(d, items[i]!, items[i + 1]!);
        stack.push(d);
        break;
      }
      case 0x73: { const v = pop(), k = pop(); setKey(dictOf(top()), k, v); break; }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) corrupt('SETITEMS with an odd number of items');
        const d = dictOf(top());
        for (let i = 0; i < items.length; i += 2) setKey(d, items[i]!, items[i + 1]!);
        break;
      }
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x70: memo.set(textInt(line().trim(), corrupt) as number, top()); break; // PUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: case 0x67: { // BINGET, LONG_BINGET, GET
        const k = code === 0x68 ? u8() : code === 0x6a ? u32() : (textInt(line().trim(), corrupt) as number);
        if (!memo.has(k)) corrupt(`memo key ${k} was never stored`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line(), name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL: same whitelist, names from the stack
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') corrupt('STACK_GLOBAL names are not strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID
      case 0x62: { // BUILD: only the state of a dict (OrderedDict._metadata) or a tensor, which a state dict ignores
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict || obj instanceof TensorRef)) refuse(`BUILD on a ${describePy(obj)}`);
        void state;
        break;
      }
      default:
        // Known opcodes outside the data subset (INST, OBJ, NEWOBJ, EXT*, sets, buffers, …) are refused by name.
        if (!OPNAMES[code]) corrupt('unknown opcode');
        refuse(`opcode ${op}${CODE_OPCODES.has(op) ? ' (builds arbitrary objects)' : ''}`);
    }
  }
}

/** True ISO-8859-1 (TextDecoder's 'latin1' is windows-1252, which remaps 0x80–0x9F). */
function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

function textInt(s: string, corrupt: (p: string) => never): number | bigint {
  if (!/^[-+]?\d+$/.test(s)) corrupt(`bad integer "${s.slice(0, 20)}"`);
  const b = BigInt(s);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** Little-endian two's-complement integer (LONG1 / LONG4). */
function longLE(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function describePy(v: PyValue | undefined): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (v instanceof PyGlobal) return `global ${v.module}.${v.name}`;
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyList) return 'list';
  if (v instanceof PyDict) return v.ordered ? 'OrderedDict' : 'dict';
  if (v instanceof StorageRef) return `storage ${v.key}`;
  if (v instanceof TensorRef) return 'tensor';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'bigint' ? 'int' : typeof v;
}
