// Property-based fuzzing of the PyTorch checkpoint reader — zip directory, whitelist unpickler, state-dict
// walk, views — with fast-check, within a fixed budget (see test/helpers/fuzz.ts: FEWSTEP_FUZZ_SECONDS, default 3 s;
// FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED). Inputs are torch.save-shaped checkpoints of random state dicts
// (dtypes, nested dicts, non-tensor entries, contiguous / transposed / offset / broadcast views, shared
// storages, memoized globals as torch writes them), then mutated: whole opcodes dropped, repeated, swapped,
// inserted or replaced (from a grammar of every opcode the reader knows and some it refuses), pickle bytes
// flipped or cut (the zip rebuilt, so the CRC holds and the unpickler sees them), and zip bytes flipped or cut.
// Every input must give a correct result (unmutated files read back bit-exact against an independent
// reference) or one FewstepError naming the file, in bounded time and memory.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFile, ST_DTYPE_BYTES, TorchCheckpointFile, numel, tensorFileFrom, type StDType, type TensorFile } from '@fewstep/tensor';
import {
  Pickle, bigAppends, checkpoint, hugeLong, lateFilledDictBomb, lateFilledOrderedDict, memoDictBomb, orderedDictAmplification, selfNestedDict, strideZeroCheckpoint,
} from './hostile-files';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';

const STORAGES: [string, StDType][] = [
  ['FloatStorage', 'F32'], ['HalfStorage', 'F16'], ['BFloat16Storage', 'BF16'], ['DoubleStorage', 'F64'], ['LongStorage', 'I64'],
  ['IntStorage', 'I32'], ['ShortStorage', 'I16'], ['CharStorage', 'I8'], ['ByteStorage', 'U8'], ['BoolStorage', 'BOOL'],
];

function bytesFrom(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

type View = 'contiguous' | 'transposed' | 'offset' | 'broadcast' | 'shared';
interface TensorSpec {
  name: string;
  storage: number; // index into STORAGES
  shape: number[];
  view: View;
  offset: number;
  mask: number; // broadcast: which dims get stride 0
}
interface Input {
  tensors: TensorSpec[];
  nested: boolean;
  extras: number; // non-tensor entries (ints, strings, a list)
  memoize: boolean;
  ordered: boolean;
  seed: number;
  opMutations: OpMutation[];
  pickleMutations: ByteMutation[];
  zipMutations: ByteMutation[];
  /** A whole file given as is (the probe's hostile files, as examples). */
  raw: Uint8Array | null;
}

// ------------------------------------------------------------------------- building a checkpoint and its expected bytes

const rowMajor = (shape: readonly number[]): number[] => {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
};

interface Built {
  bytes: Uint8Array;
  pickle: Uint8Array;
  storages: Record<string, Uint8Array>;
  expected: Map<string, { dtype: StDType; shape: number[]; bytes: Uint8Array }>;
  skipped: string[];
}

/** The reference: element (i0, i1, …) of the view is storage element offset + Σ i_k × stride_k; row-major order. */
function materialize(storage: Uint8Array, es: number, shape: number[], stride: number[], offset: number): Uint8Array {
  const n = numel(shape);
  const out = new Uint8Array(n * es);
  for (let flat = 0; flat < n; flat++) {
    let rest = flat;
    let el = offset;
    for (let d = shape.length - 1; d >= 0; d--) {
      const i = rest % shape[d]!;
      rest = Math.floor(rest / shape[d]!);
      el += i * stride[d]!;
    }
    out.set(storage.subarray(el * es, el * es + es), flat * es);
  }
  return out;
}

function build(inp: Input): Built {
  const p = new Pickle();
  const storages: Record<string, Uint8Array> = {};
  const storageOf: { key: string; type: number; numel: number }[] = [];
  const expected: Built['expected'] = new Map();
  const skipped: string[] = [];
  const prefix = inp.nested ? 'state_dict.' : '';
  if (inp.nested) p.emptyDict().str('state_dict');
  if (inp.ordered) p.global('collections', 'OrderedDict').emptyTuple().reduce();
  else p.emptyDict();
  p.mark();
  let memo = 0;
  const globals = new Map<string, number>();
  const global = (m: string, n: string) => {
    const k = `${m} ${n}`;
    if (inp.memoize && globals.has(k)) return p.get(globals.get(k)!);
    p.global(m, n);
    if (inp.memoize) {
      globals.set(k, memo);
      p.put(memo++);
    }
    return p;
  };
  inp.tensors.forEach((t, i) => {
    const [type, dtype] = STORAGES[t.storage % STORAGES.length]!;
    const es = ST_DTYPE_BYTES[dtype];
    let shape = t.shape;
    let stride = rowMajor(shape);
    let offset = 0;
    let key = String(i);
    let sn = numel(shape);
    let storageType = t.storage % STORAGES.length;
    const shared = t.view === 'shared' ? storageOf.find((s) => s.numel > 0) : undefined;
    if (shared) {
      // A view of an earlier storage: its first elements, as a 1-D slice from an offset.
      key = shared.key;
      storageType = shared.type;
      offset = Math.min(t.offset, shared.numel - 1);
      shape = [Math.max(0, Math.min(numel(t.shape), shared.numel - offset))];
      stride = [1];
      sn = shared.numel;
    } else if (t.view === 'transposed' && shape.length >= 2) {
      const rev = [...shape].reverse();
      stride = rowMajor(rev).reverse();
    } else if (t.view === 'offset') {
      offset = t.offset;
      sn = numel(shape) + offset;
    } else if (t.view === 'broadcast') {
      const kept = shape.map((d, k) => (t.mask >> k) & 1 ? 1 : d);
      const ks = rowMajor(kept);
      stride = shape.map((_, k) => ((t.mask >> k) & 1 ? 0 : ks[k]!));
      sn = numel(kept);
    }
    const [stype, sdtype] = STORAGES[storageType]!;
    const ses = ST_DTYPE_BYTES[sdtype];
    if (!shared) {
      storages[key] = bytesFrom(inp.seed + i, sn * ses);
      storageOf.push({ key, type: storageType, numel: sn });
    }
    void type;
    void es;
    const name = t.name || `t${i}`;
    p.str(name);
    global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().str('storage');
    global('torch', stype).str(key).str('cpu').int(sn).tuple().persid();
    p.int(offset).intTuple(shape).intTuple(stride).bool(false);
    global('collections', 'OrderedDict').emptyTuple().reduce();
    p.tuple().reduce();
    expected.set(prefix + name, { dtype: sdtype, shape, bytes: numel(shape) ? materialize(storages[key]!, ses, shape, stride, offset) : new Uint8Array(0) });
  });
  for (let e = 0; e < inp.extras; e++) {
    const name = `\u{1F600}extra${e}`; // fc.string() names are ASCII: no clash with a tensor
    p.str(name);
    if (e % 3 === 0) p.int(e);
    else if (e % 3 === 1) p.str('text');
    else p.emptyList().mark().int(1).int(2).appends();
    skipped.push(prefix + name);
  }
  p.setitems();
  if (inp.nested) p.setitem();
  const pickle = p.stop().bytes();
  return { bytes: checkpoint(pickle, storages), pickle, storages, expected, skipped };
}

// ------------------------------------------------------------------------------------------------ mutations

/** Splits a pickle into opcodes (for the ones build() and the grammar emit; anything else is one byte). */
function splitOps(b: Uint8Array): Uint8Array[] {
  const ops: Uint8Array[] = [];
  let i = 0;
  const u32 = (at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  while (i < b.length) {
    const c = b[i]!;
    let len = 1;
    if (c === 0x80 || c === 0x4b || c === 0x71 || c === 0x68) len = 2;
    else if (c === 0x4d) len = 3;
    else if (c === 0x4a || c === 0x72 || c === 0x6a) len = 5;
    else if (c === 0x8c || c === 0x8a) len = 2 + (b[i + 1] ?? 0);
    else if (c === 0x58) len = 5 + u32(i + 1);
    else if (c === 0x63) {
      const a = b.indexOf(0x0a, i + 1);
      const z = a < 0 ? -1 : b.indexOf(0x0a, a + 1);
      len = z < 0 ? b.length - i : z + 1 - i;
    }
    ops.push(b.subarray(i, Math.min(b.length, i + len)));
    i += len;
  }
  return ops;
}

const le32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
const strOp = (s: string) => {
  const e = new TextEncoder().encode(s);
  return Uint8Array.from([0x8c, e.length, ...e]);
};
const globalOp = (m: string, n: string) => Uint8Array.from([0x63, ...new TextEncoder().encode(`${m}\n${n}\n`)]);

/** One opcode from a grammar of everything the reader knows (and some it must refuse). */
const opcode: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constantFrom(
    0x28, 0x2e, 0x30, 0x31, 0x32, 0x4e, 0x88, 0x89, 0x7d, 0x5d, 0x29, 0x74, 0x85, 0x86, 0x87, 0x6c, 0x64, 0x61, 0x65, 0x73, 0x75, 0x52, 0x51, 0x62, 0x94,
    0x8f, 0x90, 0x91, 0x81, 0x92, 0x69, 0x6f, 0x82, 0x97, 0x98, 0x00, 0xff,
  ).map((c) => Uint8Array.of(c)),
  fc.nat(255).map((n) => Uint8Array.of(0x4b, n)),
  fc.integer().map((n) => Uint8Array.of(0x4a, ...le32(n))),
  fc.nat(8).map((i) => Uint8Array.of(0x71, i)),
  fc.nat(8).map((i) => Uint8Array.of(0x68, i)),
  fc.nat(8).map((i) => Uint8Array.of(0x6a, ...le32(i))),
  fc.constantFrom('storage', 'cpu', '0', '1', 'w', 'a.b', 'little').map(strOp),
  fc.constantFrom<[string, string]>(
    ['torch._utils', '_rebuild_tensor_v2'], ['torch._utils', '_rebuild_parameter'], ['collections', 'OrderedDict'], ['torch', 'FloatStorage'],
    ['torch', 'LongStorage'], ['os', 'system'], ['builtins', 'eval'], ['torch', 'load'],
  ).map(([m, n]) => globalOp(m, n)),
  fc.uint8Array({ minLength: 1, maxLength: 9 }).map((b) => Uint8Array.of(0x8a, b.length, ...b)),
  fc.constantFrom('I01\n', 'I00\n', 'I12345678901234567890\n', 'L-5L\n', 'F1.5\n', 'Fnan\n', 'p3\n', 'g3\n').map((t) => new TextEncoder().encode(t)),
  fc.uint8Array({ minLength: 1, maxLength: 4 }),
);

type OpMutation =
  | { kind: 'drop'; at: number }
  | { kind: 'repeat'; at: number; times: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'insert'; at: number; ops: Uint8Array[] }
  | { kind: 'replace'; at: number; op: Uint8Array };
const opMutation: fc.Arbitrary<OpMutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), times: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), ops: fc.array(opcode, { minLength: 1, maxLength: 30 }) }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), op: opcode }),
);

function mutateOps(pickle: Uint8Array, muts: OpMutation[]): Uint8Array {
  const ops = splitOps(pickle);
  for (const m of muts) {
    if (ops.length === 0) break;
    switch (m.kind) {
      case 'drop': ops.splice(m.at % ops.length, 1); break;
      case 'repeat': { const at = m.at % ops.length; ops.splice(at, 0, ...new Array<Uint8Array>(m.times).fill(ops[at]!)); break; }
      case 'swap': { const a = m.a % ops.length, b = m.b % ops.length; [ops[a], ops[b]] = [ops[b]!, ops[a]!]; break; }
      case 'insert': ops.splice(m.at % (ops.length + 1), 0, ...m.ops); break;
      case 'replace': ops[m.at % ops.length] = m.op; break;
    }
  }
  const out = new Uint8Array(ops.reduce((s, o) => s + o.length, 0));
  let o = 0;
  for (const op of ops) {
    out.set(op, o);
    o += op.length;
  }
  return out;
}

type ByteMutation = { kind: 'flip'; at: number; byte: number } | { kind: 'truncate'; keep: number } | { kind: 'splice'; at: number; del: number; insert: Uint8Array };
const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), del: fc.nat(8), insert: fc.uint8Array({ maxLength: 8 }) }),
);
function mutateBytes(b: Uint8Array, m: ByteMutation): Uint8Array {
  switch (m.kind) {
    case 'flip': {
      if (!b.length) return b;
      const out = b.slice();
      out[m.at % out.length] = m.byte;
      return out;
    }
    case 'truncate':
      return b.subarray(0, b.length ? m.keep % (b.length + 1) : 0);
    case 'splice': {
      const at = b.length ? m.at % (b.length + 1) : 0;
      const del = Math.min(m.del, b.length - at);
      const out = new Uint8Array(b.length - del + m.insert.length);
      out.set(b.subarray(0, at));
      out.set(m.insert, at);
      out.set(b.subarray(at + del), at + m.insert.length);
      return out;
    }
  }
}

/** The probe's hostile shapes with random sizes (the original reader ran out of time or heap on most). */
const hostile: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.tuple(fc.integer({ min: 2, max: 30 }), fc.integer({ min: 1, max: 12 })).map(([w, l]) => memoDictBomb(w, l)),
  fc.tuple(fc.integer({ min: 2, max: 30 }), fc.integer({ min: 1, max: 12 })).map(([w, l]) => lateFilledDictBomb(w, l)),
  fc.integer({ min: 1, max: 40 }).map(selfNestedDict),
  fc.array(fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 1 << 17 })), { minLength: 1, maxLength: 3 }).map((shape) => strideZeroCheckpoint(shape)),
  fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.integer({ min: 1, max: 1500 })).map(([n, c]) => checkpoint(orderedDictAmplification(n, c))),
  fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.integer({ min: 1, max: 1500 })).map(([n, c]) => checkpoint(lateFilledOrderedDict(n, c))),
  fc.integer({ min: 0, max: 200_000 }).map((n) => checkpoint(bigAppends(n))),
  fc.integer({ min: 0, max: 100_000 }).map((n) => checkpoint(hugeLong(n))),
);

const tensorSpec: fc.Arbitrary<TensorSpec> = fc.record({
  name: fc.oneof(fc.constantFrom('', 'conv.weight', 'a.b', 'é'), fc.string({ maxLength: 8 })),
  storage: fc.nat(STORAGES.length - 1),
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
  view: fc.constantFrom<View>('contiguous', 'transposed', 'offset', 'broadcast', 'shared'),
  offset: fc.nat(5),
  mask: fc.nat(15),
});
const input: fc.Arbitrary<Input> = fc.record({
  tensors: fc.array(tensorSpec, { maxLength: 6 }),
  nested: fc.boolean(),
  extras: fc.nat(3),
  memoize: fc.boolean(),
  ordered: fc.boolean(),
  seed: fc.integer(),
  opMutations: fc.oneof({ weight: 1, arbitrary: fc.constant([] as OpMutation[]) }, { weight: 3, arbitrary: fc.array(opMutation, { minLength: 1, maxLength: 4 }) }),
  pickleMutations: fc.oneof({ weight: 3, arbitrary: fc.constant([] as ByteMutation[]) }, { weight: 1, arbitrary: fc.array(byteMutation, { minLength: 1, maxLength: 3 }) }),
  zipMutations: fc.oneof({ weight: 4, arbitrary: fc.constant([] as ByteMutation[]) }, { weight: 1, arbitrary: fc.array(byteMutation, { minLength: 1, maxLength: 3 }) }),
  raw: fc.oneof({ weight: 40, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constant(null).chain(() => hostile) }),
});

async function readAll(stats: FuzzStats, f: TensorFile, label: string): Promise<void> {
  let k = 0;
  for (const [name, info] of f.tensors) {
    if (k++ >= 64) break;
    const n = numel(info.shape);
    const raw = await stats.settle(f.name, `${label} readBytes ${name}`, () => f.readBytes(name));
    if (raw) expect(raw.length).toBe(n * ST_DTYPE_BYTES[info.dtype]);
    for (const to of [undefined, 'f16'] as const) {
      const v = await stats.settle(f.name, `${label} read ${name} ${to ?? 'default'}`, () => f.read(name, to));
      if (v) expect(v.length).toBe(n);
    }
  }
}

const base: Omit<Input, 'raw'> = { tensors: [], nested: false, extras: 0, memoize: false, ordered: false, seed: 0, opMutations: [], pickleMutations: [], zipMutations: [] };

describe('fuzz: PyTorch checkpoint reader (zip + whitelist unpickler)', () => {
  it(`valid and mutated checkpoints: a correct result or one FewstepError naming the file, in bounded time and memory (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('checkpoint');
    // The probe's hostile checkpoints run first.
    const regressions: Input[] = [memoDictBomb(20, 10), memoDictBomb(6, 8), lateFilledDictBomb(20, 10), selfNestedDict(20), strideZeroCheckpoint([65536, 65536])].map((raw) => ({ ...base, raw }));
    let i = 0;
    await fc.assert(
      fc.asyncProperty(input, async (inp) => {
        const mutated = inp.opMutations.length + inp.pickleMutations.length + inp.zipMutations.length > 0;
        const label = `input ${i++} (${inp.raw ? 'raw' : [...inp.opMutations.map((m) => `op-${m.kind}`), ...inp.pickleMutations.map((m) => `pkl-${m.kind}`), ...inp.zipMutations.map((m) => `zip-${m.kind}`)].join('+') || 'valid'})`;
        let bytes: Uint8Array;
        let built: Built | undefined;
        if (inp.raw) bytes = inp.raw;
        else {
          built = build(inp);
          bytes = built.bytes;
          if (inp.opMutations.length || inp.pickleMutations.length) {
            const pickle = inp.pickleMutations.reduce(mutateBytes, mutateOps(built.pickle, inp.opMutations));
            bytes = checkpoint(pickle, built.storages);
          }
          bytes = inp.zipMutations.reduce(mutateBytes, bytes);
        }
        const name = 'fuzz.bin';
        await stats.one(label, async () => {
          const f = await stats.settle(name, `${label} open`, () => TorchCheckpointFile.fromFile(new MemoryFile(name, bytes)));
          if (built && !mutated) {
            // Unmutated: opens, lists exactly the tensors and skipped keys, and every tensor is bit-exact.
            expect(f, `${label}: a valid checkpoint opens`).toBeDefined();
            expect([...f!.tensors.keys()].sort()).toEqual([...built.expected.keys()].sort());
            expect([...f!.skipped]).toEqual(built.skipped);
            for (const [k, e] of built.expected) {
              expect(f!.info(k).dtype).toBe(e.dtype);
              expect(f!.info(k).shape).toEqual(e.shape);
              expect(Buffer.from(await f!.readBytes(k)).equals(Buffer.from(e.bytes)), `${label}: ${k} bit-exact`).toBe(true);
            }
          }
          if (f) await readAll(stats, f, label);
          const g = await stats.settle(name, `${label} detect`, () => tensorFileFrom(new MemoryFile(name, bytes)));
          if (f) expect(g?.format).toBe('pytorch');
          return f !== undefined;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());
});
