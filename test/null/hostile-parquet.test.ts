// What the parquet fuzzer (fuzz-parquet.test.ts) found in the prompts reader, one test each: hyparquet loops
// forever on a schema element with a negative num_children and on a data page header with garbled level
// lengths, and a few bytes of run-length code stand for a million rows; each is now one FileFormatError or
// ResourceLimitError naming the file, at once.
import { describe, expect, it } from 'vitest';
import { FileFormatError, ResourceLimitError } from '@fewstep/tensor';
import type { AsyncBuffer } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { readPromptsFromParquet } from '../../packages/cli/src/prompts/parquet';

const memory = (b: Uint8Array): AsyncBuffer => ({ byteLength: b.length, slice: (start: number, end?: number) => b.slice(start, end).buffer });
const write = (columnData: { name: string; data: unknown[]; type: 'STRING'; encoding?: 'PLAIN' }[], rowGroupSize?: number) =>
  new Uint8Array(parquetWriteBuffer({ columnData, ...(rowGroupSize ? { rowGroupSize } : {}) } as Parameters<typeof parquetWriteBuffer>[0]));

async function outcome(b: Uint8Array): Promise<{ error: unknown; ms: number }> {
  const t0 = performance.now();
  try {
    await readPromptsFromParquet(memory(b), 'h.parquet');
    return { error: undefined, ms: performance.now() - t0 };
  } catch (error) {
    return { error, ms: performance.now() - t0 };
  }
}

describe('hostile parquet prompt lists', () => {
  it('a DATA_PAGE_V2 header with garbled level lengths is refused (hyparquet read at a NaN offset forever)', async () => {
    const b = write([{ name: 'Prompt', data: ['a', null], type: 'STRING', encoding: 'PLAIN' }], 2);
    expect(b[20]).toBe(0x04); // the page header's definition_levels_byte_length
    b[20] = 0x8d;
    const r = await outcome(b);
    expect(r.error).toBeInstanceOf(FileFormatError);
    expect((r.error as Error).message).toMatch(/^h\.parquet: not a readable parquet file \(a page header of column "Prompt": bad DATA_PAGE_V2 header\)$/);
    expect(r.ms).toBeLessThan(1000);
  });

  it('a million rows of run-length nulls in a few hundred bytes is a ResourceLimitError before decoding', async () => {
    const n = 2 ** 20 + 1000;
    const b = write([{ name: 'Prompt', data: new Array<null>(n).fill(null), type: 'STRING' }], n);
    expect(b.length).toBeLessThan(2000);
    const r = await outcome(b);
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect((r.error as Error).message).toMatch(new RegExp(`^h\\.parquet: ${n} rows in \\d+ bytes of prompt columns; more rows than such a file can hold$`));
    expect(r.ms).toBeLessThan(1500);
  });

  it('a prompt repeated 100 000 times (one dictionary entry, run-length indexes) is still read', async () => {
    const rows = await readPromptsFromParquet(memory(write([{ name: 'Prompt', data: new Array<string>(100_000).fill('a cat'), type: 'STRING' }], 100_000)), 'r.parquet');
    expect(rows).toHaveLength(100_000);
    expect(rows[99_999]).toEqual({ row: 99_999, prompt: 'a cat', category: '', challenge: '', note: '' });
  });
});
