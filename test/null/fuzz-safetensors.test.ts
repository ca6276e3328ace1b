// Property-based fuzzing of the safetensors reader (fast-check), within a fixed budget (see test/helpers/fuzz.ts:
// FEWSTEP_FUZZ_SECONDS, default 3 s; FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED). Inputs are valid files of random
// tensors, and the same files mutated at the byte level (flips, truncation, splices, header lengths) and at
// the JSON level (a field replaced by any JSON value, deep nesting, huge or negative numbers, odd names).
// Every input must give a correct result (valid files read back bit-exact) or one FewstepError naming the
// file, in bounded time and memory — through SafetensorsFile and through format detection (tensorFileFrom).
import { describe, it } from 'vitest';
import fc from 'fast-check';
import { MemoryFile, ST_DTYPE_BYTES, SafetensorsFile, encodeSafetensors, numel, tensorFileFrom, type StDType, type TensorFile } from '@fewstep/tensor';
import { deepHeaderSafetensors, manyTensorsSafetensors, safetensorsStartingWith0x80 } from './hostile-files';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';
import { expect } from 'vitest';

const DTYPES = Object.keys(ST_DTYPE_BYTES) as StDType[];
const utf8 = new TextEncoder();

/** Deterministic bytes (a tensor's data) from a seed. */
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

interface TensorSpec {
  name: string;
  dtype: StDType;
  shape: number[];
}
const tensorSpec: fc.Arbitrary<TensorSpec> = fc.record({
  name: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('conv.weight', 'a.b.c', 'é块', '')).filter((n) => n !== '__metadata__'),
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 }),
});

/** A JSON value to put where the reader expects a dtype, a shape, offsets or a whole entry. */
const jsonJunk: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom<unknown>(-1, 2 ** 53, 2 ** 64, 1e308, 0.5, NaN, '', 'F32', 'constructor', '__proto__', [], {}, [2 ** 40, 2 ** 40], [1, -1], [0, 2 ** 53 + 2], [1e300, 1]),
  fc.array(fc.integer({ min: -2, max: 2 ** 31 }), { maxLength: 8 }),
  fc.array(fc.nat(70), { minLength: 60, maxLength: 80 }),
);

type Mutation =
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'splice'; at: number; del: number; insert: Uint8Array }
  | { kind: 'length'; value: number }
  | { kind: 'field'; tensor: number; field: 'dtype' | 'shape' | 'data_offsets' | 'entry' | 'extra' | 'metadata'; value: unknown }
  | { kind: 'deep'; depth: number }
  | { kind: 'raw'; text: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), del: fc.nat(16), insert: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ kind: fc.constant('length' as const), value: fc.oneof(fc.nat(4096), fc.constantFrom(0, 0x80, 0x180, 0x4b50, 2 ** 32, 100_000_001, 2 ** 53 - 1), fc.integer({ min: -8, max: 8 })) }),
  fc.record({ kind: fc.constant('field' as const), tensor: fc.nat(), field: fc.constantFrom('dtype' as const, 'shape' as const, 'data_offsets' as const, 'entry' as const, 'extra' as const, 'metadata' as const), value: jsonJunk }),
  fc.record({ kind: fc.constant('deep' as const), depth: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constantFrom(63, 64, 65, 5000, 200_000)) }),
  fc.record({ kind: fc.constant('raw' as const), text: fc.oneof(fc.string({ maxLength: 64 }), fc.json({ maxDepth: 3 })) }),
);

interface Input {
  tensors: TensorSpec[];
  metadata: Record<string, string> | null;
  seed: number;
  mutations: Mutation[];
}
const input: fc.Arbitrary<Input> = fc.record({
  tensors: fc.uniqueArray(tensorSpec, { maxLength: 6, selector: (t) => t.name }),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 3 })),
  seed: fc.integer(),
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([] as Mutation[]) }, { weight: 4, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
});

/** The header text, data and length prefix of a file, to mutate at either level. */
function splitFile(b: Uint8Array): { header: string; data: Uint8Array } | undefined {
  if (b.length < 8) return undefined;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > b.length) return undefined;
  return { header: new TextDecoder().decode(b.subarray(8, 8 + n)), data: b.subarray(8 + n) };
}
function joinFile(header: string, data: Uint8Array): Uint8Array {
  const h = utf8.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function mutate(file: Uint8Array, m: Mutation): Uint8Array {
  switch (m.kind) {
    case 'flip': {
      if (file.length === 0) return file;
      const out = file.slice();
      out[m.at % out.length] = m.byte;
      return out;
    }
    case 'truncate':
      return file.subarray(0, file.length ? m.keep % (file.length + 1) : 0);
    case 'splice': {
      const at = file.length ? m.at % (file.length + 1) : 0;
      const out = new Uint8Array(file.length - Math.min(m.del, file.length - at) + m.insert.length);
      out.set(file.subarray(0, at));
      out.set(m.insert, at);
      out.set(file.subarray(Math.min(file.length, at + m.del)), at + m.insert.length);
      return out;
    }
    case 'length': {
      if (file.length < 8) return file;
      const out = file.slice();
      const cur = Number(new DataView(out.buffer).getBigUint64(0, true));
      const v = m.value < 0 ? Math.max(0, cur + m.value) : m.value;
      new DataView(out.buffer).setBigUint64(0, BigInt(v), true);
      return out;
    }
    case 'field': {
      const parts = splitFile(file);
      if (!parts) return file;
      let h: Record<string, unknown>;
      try {
        h = JSON.parse(parts.header) as Record<string, unknown>;
      } catch {
        return file;
      }
      if (typeof h !== 'object' || h === null || Array.isArray(h)) return file;
      const names = Object.keys(h).filter((k) => k !== '__metadata__');
      const name = names.length ? names[m.tensor % names.length]! : 'x';
      const entry = (typeof h[name] === 'object' && h[name] !== null ? h[name] : {}) as Record<string, unknown>;
      if (m.field === 'entry') h[name] = m.value;
      else if (m.field === 'extra') h[`extra${m.tensor}`] = m.value;
      else if (m.field === 'metadata') h['__metadata__'] = m.value;
      else h[name] = { ...entry, [m.field]: m.value };
      let text: string;
      try {
        text = JSON.stringify(h) ?? 'null';
      } catch {
        return file; // a header nested too deep for JSON.stringify (the test's own limit, not the reader's)
      }
      return joinFile(text, parts.data);
    }
    case 'deep': {
      const parts = splitFile(file);
      const deep = `${'['.repeat(m.depth)}${']'.repeat(m.depth)}`;
      const header = parts?.header.startsWith('{"') ? `{"deep":${deep},${parts.header.slice(1)}` : `{"w":{"dtype":${deep},"shape":[],"data_offsets":[0,0]}}`;
      return joinFile(header, parts?.data ?? new Uint8Array(0));
    }
    case 'raw':
      return joinFile(m.text, splitFile(file)?.data ?? new Uint8Array(0));
  }
}

function build(inp: Input): { bytes: Uint8Array; data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  const tensors: Parameters<typeof encodeSafetensors>[0] = Object.create(null) as Parameters<typeof encodeSafetensors>[0]; // "__proto__" is a name too
  inp.tensors.forEach((t, i) => {
    const bytes = bytesFrom(inp.seed + i, numel(t.shape) * ST_DTYPE_BYTES[t.dtype]);
    data.set(t.name, bytes);
    tensors[t.name] = { dtype: t.dtype, shape: t.shape, data: bytes };
  });
  return { bytes: encodeSafetensors(tensors, inp.metadata ?? undefined), data };
}

/** Reads every tensor three ways; each read resolves with the right size or is a FewstepError naming the file. */
async function readAll(stats: FuzzStats, f: TensorFile, label: string, expected?: Map<string, Uint8Array>): Promise<void> {
  for (const [name, info] of f.tensors) {
    const n = numel(info.shape);
    const raw = await stats.settle(f.name, `${label} readBytes ${name}`, () => f.readBytes(name));
    if (raw) expect(raw.length).toBe(n * ST_DTYPE_BYTES[info.dtype]);
    if (expected) {
      expect(raw, `${label}: ${name} reads back`).toBeDefined();
      expect(Buffer.from(raw!).equals(Buffer.from(expected.get(name)!)), `${label}: ${name} bit-exact`).toBe(true);
    }
    for (const to of [undefined, 'f16'] as const) {
      const v = await stats.settle(f.name, `${label} read ${name} ${to ?? 'default'}`, () => f.read(name, to));
      if (v) expect(v.length).toBe(n);
    }
  }
}

describe('fuzz: safetensors reader', () => {
  it(`valid and mutated files: a correct result or one FewstepError naming the file, in bounded time and memory (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('safetensors');
    const regressions: Input[] = [
      { tensors: [{ name: 'w', dtype: 'F32', shape: [2] }], metadata: null, seed: 1, mutations: [{ kind: 'deep', depth: 200_000 }] },
      { tensors: [{ name: 'w', dtype: 'F16', shape: [3, 2] }], metadata: { format: 'pt' }, seed: 2, mutations: [{ kind: 'field', tensor: 0, field: 'shape', value: [[[[[[1]]]]]] }] },
      { tensors: [{ name: 'w', dtype: 'F32', shape: [1] }], metadata: null, seed: 3, mutations: [{ kind: 'length', value: 0x80 }] },
    ];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(input, async (inp) => {
        const label = `input ${i++} (${inp.mutations.map((m) => m.kind).join('+') || 'valid'})`;
        const { bytes: valid, data } = build(inp);
        const bytes = inp.mutations.reduce(mutate, valid);
        const name = 'fuzz.safetensors';
        await stats.one(label, async () => {
          const f = await stats.settle(name, `${label} open`, () => SafetensorsFile.fromFile(new MemoryFile(name, bytes)));
          if (inp.mutations.length === 0) {
            expect(f, `${label}: a valid file opens`).toBeDefined();
            expect([...f!.tensors.keys()].sort()).toEqual(inp.tensors.map((t) => t.name).sort());
            expect(f!.metadata).toEqual(inp.metadata ?? {});
          }
          if (f) await readAll(stats, f, label, inp.mutations.length === 0 ? data : undefined);
          // By content: a file the reader takes must be detected as safetensors.
          const g = await stats.settle(name, `${label} detect`, () => tensorFileFrom(new MemoryFile(name, bytes)));
          if (f) expect(g?.format, `${label}: detected`).toBe('safetensors');
          return f !== undefined;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());

  it('the probe\'s files among the inputs: deep headers, 200k tensors, a 0x80 header length', async () => {
    const stats = new FuzzStats('safetensors (probe files)');
    for (const [label, bytes] of [
      ['deep', deepHeaderSafetensors(200_000)],
      ['many', manyTensorsSafetensors(20_000)],
      ['0x80', safetensorsStartingWith0x80()],
    ] as const) {
      await stats.one(label, async () => {
        const f = await stats.settle('p.safetensors', label, () => tensorFileFrom(new MemoryFile('p.safetensors', bytes)));
        if (f) await readAll(stats, f, label);
        return f !== undefined;
      });
    }
    expect(stats.opened).toBe(2);
  });
});
