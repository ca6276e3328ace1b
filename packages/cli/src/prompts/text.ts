/**
 * Prompt lists as text: TSV (PartiPrompts' own format), CSV (RFC 4180), JSON Lines and plain text. Each parser
 * takes the decoded text and the file's name (for errors); blank lines/records are skipped and not counted.
 */
import { FileFormatError } from '@fewstep/tensor';
import { cellText, mapColumns, pushRow, type PromptRow, type RowCounter } from './rows.js';

const stripBom = (text: string) => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);

/** A TSV field wholly in double quotes (as spreadsheets write them) is unquoted; anything else is literal. */
function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s;
}

/**
 * PartiPrompts-style TSV: a header line naming the columns, then one prompt per line, fields split on tabs.
 * Quotes are literal except around a whole field (`"say ""hi"""` → `say "hi"`); fields never span lines.
 */
export function parsePromptsTsv(text: string, file: string, counter?: RowCounter): PromptRow[] {
  const lines = stripBom(text).split(/\r?\n/);
  let h = 0;
  while (h < lines.length && lines[h]!.trim() === '') h++;
  if (h === lines.length) throw new FileFormatError(file, 'the file is empty (expected a header line: Prompt<TAB>Category<TAB>Challenge<TAB>Note)');
  const header = lines[h]!.split('\t').map((c) => unquote(c.trim()));
  const col = mapColumns(header, file, 'header columns');
  const rows: PromptRow[] = [];
  let row = 0;
  for (let i = h + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const f = line.split('\t').map(unquote);
    pushRow(rows, row++, (k) => (col[k] >= 0 ? (f[col[k]] ?? '').trim() : ''));
  }
  if (counter) counter.count = row;
  return rows;
}

/**
 * RFC 4180 records: comma-separated, a field starting with `"` runs to the closing quote (`""` is a quote, commas
 * and line breaks inside are text); CRLF, LF or CR end a record. Lenient where spreadsheets are: a quote inside an
 * unquoted field, or text after a closing quote, is kept literally. Returns [records, 1-based start line of each].
 */
function csvRecords(text: string, file: string): { records: string[][]; lines: number[] } {
  const records: string[][] = [];
  const lines: number[] = [];
  let rec: string[] = [];
  let field = '';
  let line = 1;
  let recLine = 1;
  let i = 0;
  const n = text.length;
  const endRecord = () => {
    rec.push(field);
    field = '';
    // A record that is one empty field is a blank line.
    if (!(rec.length === 1 && rec[0] === '')) {
      records.push(rec);
      lines.push(recLine);
    }
    rec = [];
  };
  while (i < n) {
    if (field === '' && text[i] === '"') {
      const open = line;
      i++;
      for (;;) {
        if (i >= n) throw new FileFormatError(file, `line ${open}: a quoted field is never closed`);
        const ch = text[i]!;
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (ch === '\n' || (ch === '\r' && text[i + 1] !== '\n')) line++;
        field += ch;
        i++;
      }
      // text between the closing quote and the next separator stays (lenient)
      while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++]!;
      continue;
    }
    const ch = text[i]!;
    if (ch === ',') {
      rec.push(field);
      field = '';
      i++;
    } else if (ch === '\n' || ch === '\r') {
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
      endRecord();
      line++;
      recLine = line;
    } else {
      field += ch;
      i++;
    }
  }
  if (field !== '' || rec.length) endRecord();
  return { records, lines };
}

/** CSV with a header record (see csvRecords for the quoting rules). */
export function parsePromptsCsv(text: string, file: string, counter?: RowCounter): PromptRow[] {
  const { records } = csvRecords(stripBom(text), file);
  if (records.length === 0) throw new FileFormatError(file, 'the file is empty (expected a header line: Prompt,Category,Challenge,Note)');
  const col = mapColumns(records[0]!, file, 'header columns');
  const rows: PromptRow[] = [];
  for (let r = 1; r < records.length; r++) {
    const f = records[r]!;
    pushRow(rows, r - 1, (k) => (col[k] >= 0 ? (f[col[k]] ?? '').trim() : ''));
  }
  if (counter) counter.count = records.length - 1;
  return rows;
}

/** JSON Lines: one JSON object per line; keys are the columns (case-insensitive). */
export function parsePromptsJsonl(text: string, file: string, counter?: RowCounter): PromptRow[] {
  const lines = stripBom(text).split(/\r?\n/);
  const objects: { obj: Record<string, unknown>; line: number }[] = [];
  const keys: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i]!.trim();
    if (!s) continue;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      throw new FileFormatError(file, `line ${i + 1} is not valid JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FileFormatError(file, `line ${i + 1} is not a JSON object`);
    const obj = v as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      if (!seen.has(k)) {
        seen.add(k);
        keys.push(k);
      }
    }
    objects.push({ obj, line: i + 1 });
  }
  if (objects.length === 0) throw new FileFormatError(file, 'the file is empty (expected one JSON object per line, e.g. {"Prompt": "..."})');
  mapColumns(keys, file, 'keys');
  const rows: PromptRow[] = [];
  objects.forEach(({ obj, line }, row) => {
    const own = Object.keys(obj);
    const lower = own.map((k) => k.toLowerCase());
    pushRow(rows, row, (field) => {
      const i = lower.indexOf(field);
      return i < 0 ? '' : cellText(obj[own[i]!], file, `line ${line}`, own[i]!);
    });
  });
  if (counter) counter.count = objects.length;
  return rows;
}

/** Plain text: one prompt per line (trimmed), no header; blank lines are skipped. */
export function parsePromptsTxt(text: string, _file: string, counter?: RowCounter): PromptRow[] {
  const rows: PromptRow[] = [];
  let row = 0;
  for (const line of stripBom(text).split(/\r\n|\n|\r/)) {
    const prompt = line.trim();
    if (prompt) rows.push({ row: row++, prompt, category: '', challenge: '', note: '' });
  }
  if (counter) counter.count = row;
  return rows;
}
