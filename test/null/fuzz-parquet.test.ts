// Property-based fuzzing of the parquet prompts reader (readPromptsFromParquet, hyparquet underneath) with
// fast-check, within a fixed budget (see test/helpers/fuzz.ts: FEWSTEP_FUZZ_SECONDS, default 3 s;
// FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED). Inputs are valid prompt tables written with hyparquet-writer (any
// text, nulls, extra columns, 1..n row groups, uncompressed / snappy / gzip, dictionary or plain pages), and
// the same files mutated: byte flips, truncations and splices anywhere or in the footer, the footer length,
// and footer fields re-encoded with edge values (row counts, value counts, page offsets and sizes, codecs,
// types, column names, row groups dropped or repeated). Every input must give the right rows (valid files:
// exactly the table) or one FewstepError naming the file, in bounded time and memory.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parquetMetadata, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { parquetWriteBuffer, ByteWriter } from 'hyparquet-writer';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { readPromptsFromParquet } from '../../packages/cli/src/prompts/parquet';
import type { PromptRow } from '../../packages/cli/src/prompts/rows';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';

interface Table {
  promptName: string;
  prompts: (string | null)[];
  extra: { name: string; values: (string | null)[] }[];
  other: number[] | null;
  codec: 'UNCOMPRESSED' | 'SNAPPY' | 'GZIP';
  rowGroupSize: number;
  dictionary: boolean;
}

const cell = fc.oneof({ weight: 5, arbitrary: fc.string({ maxLength: 30 }) }, { weight: 1, arbitrary: fc.constantFrom<string | null>(null, '', '  ', 'a cat', 'é🐱', '\u0000') });
const table: fc.Arbitrary<Table> = fc.integer({ min: 0, max: 40 }).chain((rows) =>
  fc.record({
    promptName: fc.constantFrom('Prompt', 'prompt', 'PROMPT', ' Prompt '),
    prompts: fc.array(cell, { minLength: rows, maxLength: rows }),
    extra: fc.uniqueArray(
      fc.record({ name: fc.constantFrom('Category', 'Challenge', 'Note', 'category', 'caption', 'Other'), values: fc.array(cell, { minLength: rows, maxLength: rows }) }),
      { maxLength: 3, selector: (c) => c.name.toLowerCase() },
    ),
    other: fc.option(fc.array(fc.integer(), { minLength: rows, maxLength: rows })),
    codec: fc.constantFrom('UNCOMPRESSED' as const, 'SNAPPY' as const, 'GZIP' as const),
    rowGroupSize: fc.integer({ min: 1, max: 50 }),
    dictionary: fc.boolean(),
  }),
);

function write(t: Table): Uint8Array {
  const columnData = [
    { name: t.promptName, data: t.prompts, type: 'STRING' as const, ...(t.dictionary ? {} : { encoding: 'PLAIN' as const }) },
    ...t.extra.map((c) => ({ name: c.name, data: c.values, type: 'STRING' as const })),
    ...(t.other ? [{ name: 'score', data: t.other, type: 'INT32' as const }] : []),
  ];
  return new Uint8Array(
    parquetWriteBuffer({
      columnData,
      codec: t.codec,
      compressors: { GZIP: (b: Uint8Array) => new Uint8Array(gzipSync(b)) },
      rowGroupSize: t.rowGroupSize,
    } as Parameters<typeof parquetWriteBuffer>[0]),
  );
}

/** The rows the reader must give for a valid file (rows.ts: trimmed, empty prompts skipped but counted). */
function expectedRows(t: Table): PromptRow[] {
  const col = (field: string) => t.extra.find((c) => c.name.toLowerCase() === field);
  const out: PromptRow[] = [];
  t.prompts.forEach((p, row) => {
    const prompt = (p ?? '').trim();
    const get = (f: string) => (col(f)?.values[row] ?? '').trim();
    if (prompt) out.push({ row, prompt, category: get('category'), challenge: get('challenge'), note: get('note') });
  });
  return out;
}

type MetaField =
  | 'num_rows' | 'rg.num_rows' | 'rg.drop' | 'rg.repeat' | 'rg.total_byte_size'
  | 'col.num_values' | 'col.total_uncompressed_size' | 'col.total_compressed_size' | 'col.data_page_offset' | 'col.dictionary_page_offset' | 'col.codec' | 'col.type'
  | 'schema.name' | 'schema.num_children' | 'schema.type' | 'schema.repetition_type';

type Mutation =
  | { kind: 'flip'; at: number; byte: number; footer: boolean }
  | { kind: 'truncate'; keep: number }
  | { kind: 'splice'; at: number; del: number; insert: Uint8Array; footer: boolean }
  | { kind: 'footerLength'; value: number }
  | { kind: 'meta'; field: MetaField; index: number; value: number; text: string };

const edge = fc.oneof(fc.integer({ min: -3, max: 300 }), fc.constantFrom(0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 50_000_001, 1e15));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.nat(255), footer: fc.boolean() }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), del: fc.nat(16), insert: fc.uint8Array({ maxLength: 16 }), footer: fc.boolean() }),
  fc.record({ kind: fc.constant('footerLength' as const), value: fc.oneof(fc.nat(4096), fc.constantFrom(0, 2 ** 31 - 1, 2 ** 32 - 1)) }),
  { weight: 3, arbitrary: fc.record({
    kind: fc.constant('meta' as const),
    field: fc.constantFrom<MetaField>('num_rows', 'rg.num_rows', 'rg.drop', 'rg.repeat', 'rg.total_byte_size', 'col.num_values', 'col.total_uncompressed_size', 'col.total_compressed_size', 'col.data_page_offset', 'col.dictionary_page_offset', 'col.codec', 'col.type', 'schema.name', 'schema.num_children', 'schema.type', 'schema.repetition_type'),
    index: fc.nat(),
    value: edge,
    text: fc.oneof(fc.constantFrom('Prompt', 'x', '', 'GZIP', 'BROTLI', 'LZO', 'ZSTD', 'LZ4', 'LZ4_RAW', 'BYTE_ARRAY', 'INT32', 'INT96', 'BOOLEAN', 'FIXED_LEN_BYTE_ARRAY', 'REPEATED', 'OPTIONAL', 'REQUIRED'), fc.string({ maxLength: 8 })),
  }) },
);

/** Footer start and length of a file whose tail still reads as parquet's. */
function footer(b: Uint8Array): { start: number; len: number } | undefined {
  if (b.length < 12) return undefined;
  const len = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(b.length - 8, true);
  const start = b.length - 8 - len;
  return start >= 4 ? { start, len } : undefined;
}

const big = (v: number) => BigInt(Math.trunc(v));
/** Sets `v` keeping the field's kind (bigint fields stay bigint: their thrift type is i64). */
function setNum(o: Record<string, unknown>, k: string, v: number): void {
  o[k] = typeof o[k] === 'bigint' ? big(v) : Math.trunc(v);
}

function mutateMeta(b: Uint8Array, m: Extract<Mutation, { kind: 'meta' }>): Uint8Array {
  const f = footer(b);
  if (!f) return b;
  let md: FileMetaData;
  try {
    md = parquetMetadata(b.slice().buffer, { geoparquet: false }); // the reader's options (its GeoParquet marking can loop)
  } catch {
    return b;
  }
  const rgs = md.row_groups as unknown as Record<string, unknown>[];
  const rg = rgs.length ? rgs[m.index % rgs.length]! : undefined;
  const cols = (rg?.['columns'] ?? []) as { meta_data?: Record<string, unknown> }[];
  const col = cols.length ? cols[m.index % cols.length]!.meta_data : undefined;
  const schema = md.schema as unknown as Record<string, unknown>[];
  const el = schema[m.index % schema.length]!;
  switch (m.field) {
    case 'num_rows': setNum(md as unknown as Record<string, unknown>, 'num_rows', m.value); break;
    case 'rg.num_rows': if (rg) setNum(rg, 'num_rows', m.value); break;
    case 'rg.total_byte_size': if (rg) setNum(rg, 'total_byte_size', m.value); break;
    case 'rg.drop': if (rg) rgs.splice(m.index % rgs.length, 1); break;
    case 'rg.repeat': if (rg) for (let i = 0; i < Math.min(Math.abs(m.value) % 50, 50); i++) rgs.push(rg); break;
    case 'col.num_values': if (col) setNum(col, 'num_values', m.value); break;
    case 'col.total_uncompressed_size': if (col) setNum(col, 'total_uncompressed_size', m.value); break;
    case 'col.total_compressed_size': if (col) setNum(col, 'total_compressed_size', m.value); break;
    case 'col.data_page_offset': if (col) setNum(col, 'data_page_offset', m.value); break;
    case 'col.dictionary_page_offset': if (col) setNum(col, 'dictionary_page_offset', m.value); break;
    case 'col.codec': if (col) col['codec'] = m.text; break;
    case 'col.type': if (col) col['type'] = m.text; break;
    case 'schema.name': el['name'] = m.text; break;
    case 'schema.num_children': el['num_children'] = Math.trunc(m.value); break;
    case 'schema.type': el['type'] = m.text; break;
    case 'schema.repetition_type': el['repetition_type'] = m.text; break;
  }
  let bytes: Uint8Array;
  try {
    const w = new ByteWriter();
    writeMetadata(w, md as unknown as Parameters<typeof writeMetadata>[1]); // hyparquet-writer has its own copy of hyparquet's types
    bytes = new Uint8Array(w.getBuffer());
  } catch {
    return b; // a value the writer cannot encode (the test's limit, not the reader's)
  }
  const out = new Uint8Array(f.start + bytes.length + 8);
  out.set(b.subarray(0, f.start));
  out.set(bytes, f.start);
  new DataView(out.buffer).setUint32(f.start + bytes.length, bytes.length, true);
  out.set([0x50, 0x41, 0x52, 0x31], f.start + bytes.length + 4);
  return out;
}

function mutate(b: Uint8Array, m: Mutation): Uint8Array {
  const f = footer(b);
  const pos = (at: number, inFooter: boolean) => (inFooter && f ? f.start + (at % (f.len + 8)) : at % (b.length + 1));
  switch (m.kind) {
    case 'flip': {
      if (b.length === 0) return b;
      const out = b.slice();
      out[Math.min(pos(m.at, m.footer), out.length - 1)] = m.byte;
      return out;
    }
    case 'truncate':
      return b.subarray(0, b.length ? m.keep % (b.length + 1) : 0);
    case 'splice': {
      const at = Math.min(pos(m.at, m.footer), b.length);
      const out = new Uint8Array(b.length - Math.min(m.del, b.length - at) + m.insert.length);
      out.set(b.subarray(0, at));
      out.set(m.insert, at);
      out.set(b.subarray(Math.min(b.length, at + m.del)), at + m.insert.length);
      return out;
    }
    case 'footerLength': {
      if (b.length < 8) return b;
      const out = b.slice();
      new DataView(out.buffer).setUint32(out.length - 8, m.value >>> 0, true);
      return out;
    }
    case 'meta':
      return mutateMeta(b, m);
  }
}

/** An in-memory AsyncBuffer (hyparquet reads ranges of it). */
const memory = (b: Uint8Array): AsyncBuffer => ({ byteLength: b.length, slice: (start: number, end?: number) => b.slice(start, end).buffer });

interface Input {
  table: Table;
  mutations: Mutation[];
}
const input: fc.Arbitrary<Input> = fc.record({
  table,
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([] as Mutation[]) }, { weight: 4, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
});

describe('fuzz: parquet prompts reader', () => {
  it(`valid and mutated parquet files: the right rows or one FewstepError naming the file, in bounded time and memory (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('parquet');
    const name = 'fuzz.parquet';
    const t: Table = { promptName: 'Prompt', prompts: ['a cat', 'a dog', null, ' x '], extra: [{ name: 'Category', values: ['A', null, 'C', 'D'] }], other: null, codec: 'SNAPPY', rowGroupSize: 2, dictionary: true };
    const regressions: Input[] = [
      { table: t, mutations: [{ kind: 'meta', field: 'col.num_values', index: 0, value: 2 ** 31 - 1, text: '' }] },
      { table: t, mutations: [{ kind: 'meta', field: 'col.total_uncompressed_size', index: 0, value: 2 ** 40, text: '' }] },
      { table: t, mutations: [{ kind: 'meta', field: 'num_rows', index: 0, value: 50_000_001, text: '' }] },
      { table: t, mutations: [{ kind: 'meta', field: 'rg.num_rows', index: 0, value: 2 ** 31 - 1, text: '' }, { kind: 'meta', field: 'num_rows', index: 0, value: 2 ** 31 + 1, text: '' }] },
      { table: t, mutations: [{ kind: 'footerLength', value: 2 ** 31 - 1 }] },
      // Endless loops in hyparquet: a schema element with num_children -1 (GeoParquet marking), and a
      // DATA_PAGE_V2 header whose level lengths are garbled (a NaN read offset): byte 20 is its first.
      { table: t, mutations: [{ kind: 'meta', field: 'schema.num_children', index: 1, value: -1, text: '' }] },
      { table: { promptName: 'Prompt', prompts: ['a', null], extra: [], other: null, codec: 'SNAPPY', rowGroupSize: 2, dictionary: false }, mutations: [{ kind: 'flip', at: 20, byte: 0x8d, footer: false }] },
    ];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(input, async (inp) => {
        const label = `input ${i++} (${inp.table.prompts.length} rows, ${inp.table.codec}${inp.mutations.map((m) => `+${m.kind}${m.kind === 'meta' ? `:${m.field}` : ''}`).join('')})`;
        const valid = write(inp.table);
        const bytes = inp.mutations.reduce(mutate, valid);
        await stats.one(label, async () => {
          const rows = await stats.settle(name, label, () => readPromptsFromParquet(memory(bytes), name));
          if (rows) {
            for (const r of rows) {
              expect(typeof r.prompt === 'string' && r.prompt !== '' && r.prompt === r.prompt.trim(), `${label}: a prompt`).toBe(true);
              expect(Number.isSafeInteger(r.row) && r.row >= 0).toBe(true);
            }
          }
          if (inp.mutations.length === 0) expect(rows, `${label}: the table's rows`).toEqual(expectedRows(inp.table));
          return rows !== undefined;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());
});
