/**
 * The one row type of prompt lists (PartiPrompts and anything shaped like it) and the column rules every format
 * shares: columns `Prompt` (required), `Category`, `Challenge`, `Note` (optional), matched case-insensitively, the
 * first match winning; values trimmed; a row whose prompt is empty is skipped but still counted, so `row` is the
 * row's position in the file (it fixes seeds and file names in `fewstep batch`).
 */
import { FileFormatError } from '@fewstep/tensor';

export interface PromptRow {
  /** 0-based index of the data row in the file (header and blank lines excluded); fixes the seed and file name. */
  row: number;
  prompt: string;
  category: string;
  challenge: string;
  note: string;
}

/** Filled by the readers with the number of data rows of the file (empty prompts included): the next file's first row. */
export interface RowCounter {
  count: number;
}

export type PromptField = 'prompt' | 'category' | 'challenge' | 'note';
export const PROMPT_FIELDS: readonly PromptField[] = ['prompt', 'category', 'challenge', 'note'];

/** Index of each field's column in `columns` (case-insensitive, first match), -1 where absent. */
export type ColumnMap = Record<PromptField, number>;

/** Maps column names to fields; throws one FileFormatError naming the file and its columns when Prompt is missing. */
export function mapColumns(columns: readonly string[], file: string, what = 'columns'): ColumnMap {
  const lower = columns.map((c) => c.trim().toLowerCase());
  const map = Object.fromEntries(PROMPT_FIELDS.map((f) => [f, lower.indexOf(f)])) as ColumnMap;
  if (map.prompt < 0) {
    const shown = columns.length ? columns.map((c) => JSON.stringify(c)).join(', ') : 'none';
    throw new FileFormatError(file, `no "Prompt" column (${what}: ${shown}); expected Prompt and optionally Category, Challenge, Note`);
  }
  return map;
}

/** A cell as prompt text: strings trimmed, null/undefined empty, numbers/booleans printed; anything else refused. */
export function cellText(value: unknown, file: string, where: string, column: string): string {
  if (typeof value === 'string') return value.trim();
  if (value === null || value === undefined) return '';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  const kind = Array.isArray(value) ? 'a list' : value instanceof Uint8Array ? 'binary data' : `a ${typeof value}`;
  throw new FileFormatError(file, `${where}: column "${column}" holds ${kind}, not text`);
}

/** Appends a row unless its prompt is empty (the row number counts it either way). */
export function pushRow(rows: PromptRow[], row: number, get: (field: PromptField) => string): void {
  const prompt = get('prompt');
  if (prompt) rows.push({ row, prompt, category: get('category'), challenge: get('challenge'), note: get('note') });
}
