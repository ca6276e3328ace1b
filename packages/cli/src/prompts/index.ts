/**
 * readPrompts: one entry point for prompt lists in any of the formats PartiPrompts circulates in — `.tsv` (the
 * original), `.csv`, `.parquet` (Hugging Face exports), `.jsonl`, and `.txt` (one prompt per line) — returning the
 * same rows for the same content. Columns and row numbering: see rows.ts.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { FewstepError, FileFormatError, InvalidArgumentError, ResourceLimitError } from '@fewstep/tensor';
import { readPromptsParquet } from './parquet.js';
import type { PromptRow, RowCounter } from './rows.js';
import { parsePromptsCsv, parsePromptsJsonl, parsePromptsTsv, parsePromptsTxt } from './text.js';

export { PROMPT_FIELDS, type PromptField, type PromptRow, type RowCounter } from './rows.js';
export { parsePromptsCsv, parsePromptsJsonl, parsePromptsTsv, parsePromptsTxt } from './text.js';
export { MAX_PARQUET_ROWS, readPromptsFromParquet, readPromptsParquet } from './parquet.js';

export type PromptFormat = 'tsv' | 'csv' | 'parquet' | 'jsonl' | 'txt';

/** File extensions (lower case) → format. */
export const PROMPT_EXTENSIONS: Readonly<Record<string, PromptFormat>> = {
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.csv': 'csv',
  '.parquet': 'parquet',
  '.pq': 'parquet',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.txt': 'txt',
};

/** Largest text prompt list read (they are read whole; PartiPrompts is 120 KB). */
export const MAX_PROMPT_TEXT_BYTES = 256 * 1024 * 1024;

/** The format of `path` by its extension. */
export function promptFormat(path: string): PromptFormat {
  const ext = extname(path).toLowerCase();
  const f = PROMPT_EXTENSIONS[ext];
  if (!f) {
    throw new InvalidArgumentError(
      `${path}: unknown prompt-list format${ext ? ` "${ext}"` : ' (no extension)'}; use ${Object.keys(PROMPT_EXTENSIONS).join(', ')}`,
      'path',
    );
  }
  return f;
}

function readError(path: string, e: unknown): never {
  if (e instanceof FewstepError) throw e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') throw new InvalidArgumentError(`${path}: file not found`, 'path');
  if (code === 'EISDIR') throw new InvalidArgumentError(`${path}: is a folder, not a prompt list`, 'path');
  throw new InvalidArgumentError(`${path}: cannot read (${code ?? (e as Error).message})`, 'path');
}

export interface ReadPromptsOptions {
  /** Overrides the format the extension implies. */
  format?: PromptFormat | undefined;
  /** Gets the file's number of data rows (empty prompts included), e.g. to number the rows of several files on. */
  counter?: RowCounter | undefined;
}

/**
 * Reads a prompt list: rows `{ row, prompt, category, challenge, note }` in file order, rows with an empty prompt
 * left out (their numbers are kept). Errors: InvalidArgumentError (missing file, unknown extension),
 * FileFormatError (no Prompt column — the message lists the file's columns —, bad UTF-8, broken CSV quoting or
 * JSON, an unreadable parquet file), ResourceLimitError (an oversized file).
 */
export async function readPrompts(path: string, options: ReadPromptsOptions = {}): Promise<PromptRow[]> {
  const format = options.format ?? promptFormat(path);
  if (format === 'parquet') {
    try {
      return await readPromptsParquet(path, options.counter);
    } catch (e) {
      readError(path, e);
    }
  }
  let bytes: Uint8Array;
  try {
    const s = await stat(path);
    if (s.isDirectory()) readError(path, Object.assign(new Error('EISDIR'), { code: 'EISDIR' }));
    if (s.size > MAX_PROMPT_TEXT_BYTES) throw new ResourceLimitError(`${path}: ${s.size} bytes is more than a prompt list may have (${MAX_PROMPT_TEXT_BYTES})`);
    bytes = await readFile(path);
  } catch (e) {
    readError(path, e);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FileFormatError(path, 'is not UTF-8 text (save it as UTF-8)');
  }
  switch (format) {
    case 'tsv':
      return parsePromptsTsv(text, path, options.counter);
    case 'csv':
      return parsePromptsCsv(text, path, options.counter);
    case 'jsonl':
      return parsePromptsJsonl(text, path, options.counter);
    case 'txt':
      return parsePromptsTxt(text, path, options.counter);
    default:
      throw new InvalidArgumentError(`readPrompts: unknown format ${JSON.stringify(format as string)}`, 'format');
  }
}
