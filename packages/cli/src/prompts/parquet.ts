/**
 * Prompt lists as Apache Parquet (e.g. a Hugging Face dataset's parquet export), read with hyparquet: only the
 * footer, then only the Prompt/Category/Challenge/Note column chunks, one row group at a time (memory stays
 * around one row group of those columns, whatever else the file holds). Pages may be uncompressed or snappy
 * (hyparquet) or gzip/zstd/brotli/lz4 (hyparquet-compressors). Any failure to read the file — truncated, not
 * parquet, a corrupt footer or page — is one FileFormatError naming the file.
 */
import { stat } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData, type RowGroup } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { compressors } from 'hyparquet-compressors';
import { FewstepError, FileFormatError, ResourceLimitError } from '@fewstep/tensor';
import { PROMPT_FIELDS, cellText, mapColumns, pushRow, type PromptField, type PromptRow, type RowCounter } from './rows.js';

/** More rows than any prompt list has; a footer claiming more is corrupt or hostile. */
export const MAX_PARQUET_ROWS = 50_000_000;

function fail(file: string, e: unknown): never {
  if (e instanceof FewstepError) throw e;
  const msg = e instanceof Error ? e.message : String(e);
  throw new FileFormatError(file, `not a readable parquet file (${msg})`, 'file_format', { cause: e });
}

/** Reads the prompt rows of a parquet file; `row` is the row's index in the file. */
export async function readPromptsParquet(path: string, counter?: RowCounter): Promise<PromptRow[]> {
  // File-system errors (ENOENT, EISDIR, EACCES) reach the caller as they are, not as "corrupt".
  if ((await stat(path)).isDirectory()) throw Object.assign(new Error(`EISDIR: ${path}`), { code: 'EISDIR' });
  let file: AsyncBuffer;
  try {
    file = await asyncBufferFromFile(path);
  } catch (e) {
    fail(path, e);
  }
  return readPromptsFromParquet(file, path, counter);
}

/**
 * The same from any hyparquet AsyncBuffer (a file, an ArrayBuffer, a ranged HTTP reader); `path` names it in
 * errors (a file name or URL). Reads the footer, then only the prompt columns' chunks.
 */
export async function readPromptsFromParquet(file: AsyncBuffer, path: string, counter?: RowCounter): Promise<PromptRow[]> {
  // "PAR1" + footer length + "PAR1" at the least; hyparquet's own error for less is a bare DataView RangeError.
  if (file.byteLength < 12) fail(path, new Error(`${file.byteLength} bytes, too short for parquet`));
  let metadata: FileMetaData;
  try {
    // No GeoParquet marking: prompts have no geometry, and hyparquet's marking loops forever on a schema
    // element with a negative num_children (found by fuzz-parquet.test.ts).
    metadata = await parquetMetadataAsync(file, { geoparquet: false });
  } catch (e) {
    fail(path, e);
  }
  let columns: string[];
  try {
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
    if (columns.some((c) => typeof c !== 'string')) throw new Error('a column without a name');
  } catch (e) {
    fail(path, e);
  }
  const col = mapColumns(columns, path, 'columns');
  const numRows = Number(metadata.num_rows);
  if (!Number.isSafeInteger(numRows) || numRows < 0) fail(path, new Error(`the footer gives ${String(metadata.num_rows)} rows`));
  if (numRows > MAX_PARQUET_ROWS) throw new ResourceLimitError(`${path}: ${numRows} rows is more than a prompt list may have (${MAX_PARQUET_ROWS})`);
  const wanted = PROMPT_FIELDS.filter((f) => col[f] >= 0);
  const names = wanted.map((f) => columns[col[f]]!);
  const rows: PromptRow[] = [];
  let start = 0, promptBytes = 0;
  for (const group of metadata.row_groups) {
    const n = Number(group.num_rows);
    if (!Number.isSafeInteger(n) || n < 0 || start + n > numRows) fail(path, new Error(`row group sizes do not add up to the ${numRows} rows the footer gives`));
    if (n === 0) continue;
    promptBytes += await checkRowGroup(file, group, names, n, path);
    if (start + n > MAX_ROWS_FREE + 16 * promptBytes) throw new ResourceLimitError(`${path}: ${start + n} rows in ${promptBytes} bytes of prompt columns; more rows than such a file can hold`);
    let objects: Record<string, unknown>[];
    try {
      objects = await parquetReadObjects({ file, metadata, columns: names, rowStart: start, rowEnd: start + n, compressors });
    } catch (e) {
      fail(path, e);
    }
    if (objects.length !== n) fail(path, new Error(`rows ${start}..${start + n} decoded to ${objects.length} rows`));
    for (let i = 0; i < n; i++) {
      const obj = objects[i]!;
      pushRow(rows, start + i, (f: PromptField) => (col[f] >= 0 ? cellText(obj[columns[col[f]]!], path, `row ${start + i}`, columns[col[f]]!) : ''));
    }
    start += n;
  }
  if (start !== numRows) fail(path, new Error(`row groups hold ${start} rows, the footer gives ${numRows}`));
  if (counter) counter.count = numRows;
  return rows;
}

/** Largest uncompressed page hyparquet is let allocate (writers use ~1 MiB pages). */
const MAX_PAGE_BYTES = 128 * 2 ** 20;
/**
 * A few bytes of run-length code can stand for millions of rows (and their memory), so a file's rows are held to
 * MAX_ROWS_FREE (pyarrow's largest default row group) + 16 per byte of its prompt columns' chunks.
 */
const MAX_ROWS_FREE = 2 ** 20;

/**
 * hyparquet decodes pages trusting their headers: a missing or negative size sends its decoders into an endless
 * loop (a NaN read offset) or a huge allocation. So before a row group is decoded, the page headers of its prompt
 * column chunks are read and checked (found by fuzz-parquet.test.ts). Returns the chunks' size in bytes.
 */
async function checkRowGroup(file: AsyncBuffer, group: RowGroup, names: string[], rows: number, path: string): Promise<number> {
  const bad = (problem: string): never => fail(path, new Error(problem));
  const int = (v: unknown, max = Number.MAX_SAFE_INTEGER) => (typeof v === 'number' || typeof v === 'bigint') && Number(v) >= 0 && Number(v) <= max && Number.isSafeInteger(Number(v));
  let bytes = 0;
  for (const chunk of group.columns) {
    const md = chunk.meta_data;
    if (!md || !names.includes(md.path_in_schema[0]!)) continue;
    const start = md.dictionary_page_offset || md.data_page_offset, size = md.total_compressed_size;
    const column = JSON.stringify(md.path_in_schema.join('.'));
    if (!int(start) || !int(size) || Number(start) + Number(size) > file.byteLength) bad(`column ${column} lies outside the file`);
    bytes += Number(size);
    const data = new Uint8Array(await file.slice(Number(start), Number(start) + Number(size)));
    const reader = { view: new DataView(data.buffer, data.byteOffset, data.byteLength), offset: 0 };
    while (reader.offset < data.length - 1) {
      let h: ReturnType<typeof parquetHeader>;
      try {
        h = parquetHeader(reader);
      } catch (e) {
        fail(path, e);
      }
      const at = `a page header of column ${column}`;
      if (!int(h.compressed_page_size, data.length - reader.offset) || !int(h.uncompressed_page_size, MAX_PAGE_BYTES)) bad(`${at}: bad page sizes`);
      const d1 = h.data_page_header, d2 = h.data_page_header_v2, dict = h.dictionary_page_header;
      if (h.type === 'DATA_PAGE' ? !d1 || !int(d1.num_values, rows) : h.type === 'DATA_PAGE_V2' ? !d2 || !int(d2.num_values, rows) || !int(d2.num_nulls, d2.num_values) || !int(d2.num_rows, rows) || !int(d2.definition_levels_byte_length) || !int(d2.repetition_levels_byte_length) || d2.definition_levels_byte_length + d2.repetition_levels_byte_length > h.compressed_page_size : h.type === 'DICTIONARY_PAGE' ? !dict || !int(dict.num_values, h.uncompressed_page_size) : h.type !== 'INDEX_PAGE') {
        bad(`${at}: bad ${String(h.type)} header`);
      }
      reader.offset += h.compressed_page_size;
    }
  }
  return bytes;
}
