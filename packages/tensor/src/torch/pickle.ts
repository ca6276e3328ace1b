/**
 * A whitelist unpickler for PyTorch state dicts. It interprets the pickle opcodes as a data format and
 * never calls or imports anything: the few callables a state dict needs (OrderedDict, _rebuild_tensor_v2,
 * _rebuild_parameter) are modelled as plain data builders, storages become references to zip records,
 * and every other global, or an opcode that constructs arbitrary objects (INST, OBJ, NEWOBJ, EXT*, …),
 * stops the read with one error naming the file, the global or opcode and its byte offset — at the
 * opcode itself, before anything after it is looked at.
 *
 * Resources are bounded too (TENSOR_FILE_LIMITS): the values produced — a memo fetch of a container counting
 * its whole size, so nested memo references cannot expand exponentially —, the work (opcodes and items
 * moved or copied, so repeated OrderedDict(big list) cannot go quadratic) and the length of integers. No
 * spread or recursion takes a size from the input.
 */
import type { StDType } from '../safetensors/format.js';
import { ResourceLimitError } from '../errors.js';
import { TENSOR_FILE_LIMITS, oneLine, type TensorFileLimits } from '../tensor_file_limits.js';
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
  private m: Map<unknown, PyValue> | undefined;
  constructor(readonly ordered: boolean) {}
  /** Created on first use: a state dict pickle holds one empty OrderedDict (backward hooks) per tensor. */
  get map(): Map<unknown, PyValue> {
    return (this.m ??= new Map<unknown, PyValue>());
  }
  get size(): number {
    return this.m?.size ?? 0;
  }
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
  /** Tighter limits than TENSOR_FILE_LIMITS (tests). */
  limits?: Partial<Pick<TensorFileLimits, 'pickleNodes' | 'pickleWork' | 'pickleIntLength' | 'rank'>> | undefined;
}

/** Interprets a pickle as data. Returns the top-level value. */
export function unpickle(bytes: Uint8Array, ctx: UnpickleContext): PyValue {
  const LIMITS = { ...TENSOR_FILE_LIMITS, ...ctx.limits };
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
  const tooMuch = (p: string): never => {
    throw new ResourceLimitError(`${ctx.file}: ${oneLine(`${ctx.entry}: ${p} (${op || 'start'} at byte ${opAt}): a hostile or broken pickle; nothing was executed`)}`);
  };
  // Resource accounting. `weights` holds the size of each container as a tree (1 + its items' sizes, memo
  // references counted in full); primitives, storages, tensors and globals weigh 1.
  const weights = new WeakMap<object, number>();
  const weight = (v: Slot): number => (typeof v === 'object' && v !== null ? weights.get(v) ?? 1 : 1);
  let nodes = 0;
  let work = 0;
  const addNodes = (n: number) => {
    if ((nodes += n) > LIMITS.pickleNodes) tooMuch(`more than ${LIMITS.pickleNodes} values (TENSOR_FILE_LIMITS.pickleNodes; memo references count in full)`);
  };
  const addWork = (n: number) => {
    if ((work += n) > LIMITS.pickleWork) tooMuch(`more than ${LIMITS.pickleWork} units of work (TENSOR_FILE_LIMITS.pickleWork)`);
  };
  /** Pushes a value made by this opcode (a new primitive, or a container whose weight is already set). */
  const push = (v: Slot) => {
    addNodes(1);
    stack.push(v);
  };
  /** Pushes a value fetched again (GET, DUP): it counts its whole size. */
  const pushRef = (v: PyValue) => {
    addNodes(weight(v));
    stack.push(v);
  };
  /** A container of `items`, weighing 1 + theirs; each item is one unit of work. */
  const container = <T extends PyTuple | PyList>(c: T): T => {
    addWork(c.items.length);
    let w = 1;
    for (const x of c.items) w += weight(x);
    weights.set(c, w);
    return c;
  };
  const grow = (c: PyList | PyDict, w: number) => weights.set(c, weight(c) + w);
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
    addWork(stack.length - i);
    const items = stack.splice(i + 1) as PyValue[];
    stack.pop();
    return items;
  };
  const dictOf = (v: PyValue): PyDict => (v instanceof PyDict ? v : corrupt(`SETITEM(S) on a ${describePy(v)}`));
  const listOf = (v: PyValue): PyList => (v instanceof PyList ? v : corrupt(`APPEND(S) on a ${describePy(v)}`));
  /** Sets one key; the caller adds the weights (once per opcode, not per item). */
  const setKey = (d: PyDict, k: PyValue, v: PyValue) => {
    if (k instanceof PyList || k instanceof PyDict) corrupt('unhashable dict key');
    d.map.set(k, v);
  };
  /** `items` (flat key, value, key, value, …) into `d`; one unit of work per pair. */
  const setItems = (d: PyDict, items: PyValue[], what: string) => {
    if (items.length % 2) corrupt(`${what} with an odd number of items`);
    addWork(items.length / 2);
    let w = 0;
    for (let i = 0; i < items.length; i += 2) {
      setKey(d, items[i]!, items[i + 1]!);
      w += weight(items[i]!) + weight(items[i + 1]!);
    }
    grow(d, w);
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
    if (v.items.length > LIMITS.rank) corrupt(`${what} has ${v.items.length} dimensions, more than ${LIMITS.rank} (TENSOR_FILE_LIMITS.rank)`);
    return v.items.map((x) => int(x, what));
  };
  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return refuse(`REDUCE on a ${describePy(fn)}`);
    if (!(args instanceof PyTuple)) return corrupt(`REDUCE arguments are a ${describePy(args)}, not a tuple`);
    const a = args.items;
    switch (`${fn.module} ${fn.name}`) {
      case 'collections OrderedDict': {
        const d = new PyDict(true);
        weights.set(d, 1);
        if (a.length > 1) corrupt('OrderedDict() takes at most one argument');
        if (a.length === 1 && a[0] !== null) {
          const src = a[0]!;
          // A copy: one unit of work per item, so the same big list given to OrderedDict again and again is
          // bounded; it weighs what its source does.
          if (src instanceof PyDict) {
            addWork(src.size);
            for (const [k, v] of src.map) setKey(d, k as PyValue, v);
          } else if (src instanceof PyList || src instanceof PyTuple) {
            addWork(src.items.length);
            for (const p of src.items) {
              if (!(p instanceof PyTuple || p instanceof PyList) || p.items.length !== 2) return corrupt('OrderedDict item is not a (key, value) pair');
              setKey(d, p.items[0]!, p.items[1]!);
            }
          } else corrupt(`OrderedDict(${describePy(src)})`);
          weights.set(d, weight(src));
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
    if (numel < 0) corrupt(`storage "${key.slice(0, 200)}" has a negative size ${numel}`);
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
    addWork(1);
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
      case 0x28: push(MARK); break;
      case 0x30: pop(); break;
      case 0x31: popMark(); break;
      case 0x32: pushRef(top()); break;
      case 0x4e: push(null); break;
      case 0x88: push(true); break;
      case 0x89: push(false); break;
      case 0x4a: push(i32()); break;
      case 0x4b: push(u8()); break;
      case 0x4d: push(u16()); break;
      case 0x49: { // INT (text); "I01"/"I00" are True/False in protocol 0
        const s = line().trim();
        if (s === '01') push(true);
        else if (s === '00') push(false);
        else push(textInt(s, corrupt, tooMuch, LIMITS.pickleIntLength));
        break;
      }
      case 0x4c: push(textInt(line().trim().replace(/L$/, ''), corrupt, tooMuch, LIMITS.pickleIntLength)); break; // LONG (text)
      case 0x8a: push(longLE(take(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) corrupt('negative LONG4 length');
        if (n > LIMITS.pickleIntLength) tooMuch(`a ${n}-byte integer is longer than ${LIMITS.pickleIntLength} bytes (TENSOR_FILE_LIMITS.pickleIntLength)`);
        push(longLE(take(n)));
        break;
      }
      case 0x47: need(8); push(dv.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x46: { // FLOAT (text)
        const v = Number(line().trim());
        if (Number.isNaN(v)) corrupt('bad FLOAT');
        push(v);
        break;
      }
      case 0x58: push(str(take(u32()))); break; // BINUNICODE
      case 0x8c: push(str(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(str(take(u64()))); break; // BINUNICODE8
      case 0x54: { // BINSTRING (py2 str): latin-1, as python3's default encoding for them does
        const n = i32();
        if (n < 0) corrupt('negative BINSTRING length');
        push(latin1(take(n)));
        break;
      }
      case 0x55: push(latin1(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: push(take(u32()).slice()); break; // BINBYTES
      case 0x43: push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: push(take(u64()).slice()); break; // BINBYTES8
      case 0x29: push(container(new PyTuple([]))); break;
      case 0x74: push(container(new PyTuple(popMark()))); break;
      case 0x85: { const a = pop(); push(container(new PyTuple([a]))); break; }
      case 0x86: { const b = pop(), a = pop(); push(container(new PyTuple([a, b]))); break; }
      case 0x87: { const c = pop(), b = pop(), a = pop(); push(container(new PyTuple([a, b, c]))); break; }
      case 0x5d: push(container(new PyList([]))); break;
      case 0x6c: push(container(new PyList(popMark()))); break;
      case 0x61: { const v = pop(); const l = listOf(top()); l.items.push(v); grow(l, weight(v)); break; }
      case 0x65: { // APPENDS: one push per item (a spread of an input-sized array would overflow the stack)
        const items = popMark();
        const l = listOf(top());
        let w = 0;
        for (const v of items) {
          l.items.push(v);
          w += weight(v);
        }
        grow(l, w);
        break;
      }
      case 0x7d: { const d = new PyDict(false); weights.set(d, 1); push(d); break; }
      case 0x64: { // DICT
        const items = popMark();
        const d = new PyDict(false);
        weights.set(d, 1);
        setItems(d, items, 'DICT');
        push(d);
        break;
      }
      case 0x73: { const v = pop(), k = pop(), d = dictOf(top()); setKey(d, k, v); grow(d, weight(k) + weight(v)); break; }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(dictOf(top()), items, 'SETITEMS');
        break;
      }
      // Each memo slot is one value (a pickle of nothing but PUTs would otherwise fill a Map for free).
      case 0x71: addNodes(1); memo.set(u8(), top()); break; // BINPUT
      case 0x72: addNodes(1); memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x70: addNodes(1); memo.set(textInt(line().trim(), corrupt, tooMuch, LIMITS.pickleIntLength) as number, top()); break; // PUT
      case 0x94: addNodes(1); memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: case 0x67: { // BINGET, LONG_BINGET, GET
        const k = code === 0x68 ? u8() : code === 0x6a ? u32() : (textInt(line().trim(), corrupt, tooMuch, LIMITS.pickleIntLength) as number);
        if (!memo.has(k)) corrupt(`memo key ${k} was never stored`);
        pushRef(memo.get(k)!);
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line(), name = line();
        push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL: same whitelist, names from the stack
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') corrupt('STACK_GLOBAL names are not strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        push(reduce(fn, args));
        break;
      }
      case 0x51: push(persistentLoad(pop())); break; // BINPERSID
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

function textInt(s: string, corrupt: (p: string) => never, tooMuch: (p: string) => never, maxLength: number): number | bigint {
  if (s.length > maxLength) tooMuch(`a ${s.length}-character integer is longer than ${maxLength} characters (TENSOR_FILE_LIMITS.pickleIntLength)`);
  if (!/^[-+]?\d+$/.test(s)) corrupt(`bad integer "${s.slice(0, 20)}"`);
  const b = BigInt(s);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** Little-endian two's-complement integer (LONG1 / LONG4), through one hex string (linear in its length). */
function longLE(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let hex = '';
  for (let i = b.length - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
  let v = BigInt(`0x${hex}`);
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
