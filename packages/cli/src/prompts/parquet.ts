/**
 * Prompt lists as Apache Parquet (e.g. a Hugging Face dataset's parquet export), read with hyparquet: only the
 * footer, then only the Prompt/Category/Challenge/Note column chunks, one row group at a time (memory stays
 * around one row group of those columns, whatever else the file holds). Pages may be uncompressed or snappy
 * (hyparquet) or gzip/zstd/brotli/lz4 (hyparquet-compressors). Any failure to read the file — truncated, not
 * parquet, a corrupt footer or page — is one FileFormatError naming the file.
 */
import { stat } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData } from 'hyparquet';
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
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    fail(path, e);
  }
  let columns: string[];
  try {
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
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
  let start = 0;
  for (const group of metadata.row_groups) {
    const n = Number(group.num_rows);
    if (!Number.isSafeInteger(n) || n < 0 || start + n > numRows) fail(path, new Error(`row group sizes do not add up to the ${numRows} rows the footer gives`));
    if (n === 0) continue;
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
