/**
 * CLIP's byte-level BPE tokenizer, matching transformers 4.36.2's slow `CLIPTokenizer` on the path
 * it takes when `ftfy` is not installed (the default): BasicTokenizer-style cleaning, the CLIP
 * pre-tokenisation regex, BPE with `</w>` word ends. Browser-safe: files come through a `FileSource`.
 *
 * Pipeline of `tokenize(text)`, in transformers' order:
 *  1. split the raw text on added/special tokens (exact, case-sensitive, leftmost-longest);
 *     SD2-style configs register the pad token `!` this way, so every `!` becomes its own token;
 *  2. each remaining piece is cleaned separately (control chars dropped, whitespace → ' ', spaces
 *     around CJK ideographs, NFC, lower-case per whitespace-separated word);
 *  3. the CLIP regex splits it into words, each word is UTF-8 → byte symbols → BPE.
 */
import { FileFormatError, InvalidArgumentError, type FileSource } from '@fewstep/tensor';
import { ConfigError, ModelFolderError } from '../errors.js';

export interface CLIPTokenizerContents {
  /** vocab.json: its text or the parsed object. */
  vocab: string | Record<string, number>;
  /** merges.txt text (first line is the `#version` header, which is skipped). */
  merges: string;
  /** tokenizer_config.json (text or parsed), if present. */
  tokenizerConfig?: string | Record<string, unknown> | undefined;
  /** special_tokens_map.json (text or parsed), if present. */
  specialTokensMap?: string | Record<string, unknown> | undefined;
  /** Names used in error messages (paths), keyed like the fields above. */
  names?: Partial<Record<'vocab' | 'merges' | 'tokenizerConfig' | 'specialTokensMap', string>> | undefined;
}

export interface AddedTokenSpec {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  special: boolean;
}

export interface CLIPEncoding {
  /** Exactly `maxLength` ids: BOS, text ids (truncated so EOS fits), EOS, then pad ids. */
  inputIds: number[];
  /** 1 for BOS/text/EOS, 0 for padding. */
  attentionMask: number[];
}

export interface CLIPTokenizerFromFolderOptions {
  /** Folder holding tokenizer_config.json / special_tokens_map.json when they live apart from vocab+merges. */
  configDir?: string | undefined;
}

const DEFAULT_MAX_LENGTH = 77;
/** HF reads merges[1 : 49152-256-2+1]: at most 48894 merges after the header line. */
const MAX_MERGES = 49152 - 256 - 2;

export class CLIPTokenizer {
  readonly encoder: ReadonlyMap<string, number>;
  readonly decoder: ReadonlyMap<number, string>;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly padTokenId: number;
  readonly modelMaxLength: number;
  /** Added tokens (special tokens included), matched in raw text before cleaning. */
  readonly addedTokens: readonly AddedTokenSpec[];

  private readonly addedByContent: Map<string, AddedTokenSpec>;
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();

  constructor(contents: CLIPTokenizerContents) {
    const names = contents.names ?? {};
    const vocab = typeof contents.vocab === 'string' ? parseJson(contents.vocab, names.vocab ?? 'vocab.json') : contents.vocab;
    if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) throw new FileFormatError(names.vocab ?? 'vocab.json', `expected a JSON object of token → id`);
    const enc = new Map<string, number>();
    for (const [tok, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id)) throw new FileFormatError(names.vocab ?? 'vocab.json', `id of ${JSON.stringify(tok)} is not an integer`);
      enc.set(tok, id as number);
    }
    if (enc.size === 0) throw new FileFormatError(names.vocab ?? 'vocab.json', `empty vocabulary`);

    // Same slicing as HF: strip, split on '\n', drop the header line, cap the count.
    const lines = contents.merges.trim().split('\n').slice(1, MAX_MERGES + 1);
    this.ranks = new Map();
    lines.forEach((line, rank) => {
      const parts = line.split(/\s+/).filter((p) => p !== '');
      if (parts.length === 0) return; // a blank line takes a rank but can never match, as in HF
      if (parts.length !== 2) throw new FileFormatError(names.merges ?? 'merges.txt', `line ${rank + 2} is not a pair: ${JSON.stringify(line)}`);
      const key = pairKey(parts[0]!, parts[1]!);
      // A repeated pair keeps its last rank, as building a dict from zip() does.
      this.ranks.set(key, rank);
    });

    const cfg = asObject(contents.tokenizerConfig, names.tokenizerConfig ?? 'tokenizer_config.json');
    const map = asObject(contents.specialTokensMap, names.specialTokensMap ?? 'special_tokens_map.json');
    // special_tokens_map.json wins over tokenizer_config.json, as in from_pretrained.
    const special = (key: string, fallback: string): string => tokenContent(map[key]) ?? tokenContent(cfg[key]) ?? fallback;
    this.bosToken = special('bos_token', '<|startoftext|>');
    this.eosToken = special('eos_token', '<|endoftext|>');
    this.unkToken = special('unk_token', '<|endoftext|>');
    this.padToken = special('pad_token', '<|endoftext|>');
    const mml = cfg['model_max_length'];
    // Configs without a real limit store 1e30; CLIP text encoders always take 77 positions.
    this.modelMaxLength = typeof mml === 'number' && Number.isInteger(mml) && mml > 1 && mml < 1e6 ? mml : DEFAULT_MAX_LENGTH;

    // Added tokens: the config's added_tokens_decoder first, then every special token (transformers
    // registers all special tokens as added tokens; one already in the vocab keeps its vocab id).
    const added = new Map<string, AddedTokenSpec>();
    const decoderCfg = cfg['added_tokens_decoder'];
    if (decoderCfg && typeof decoderCfg === 'object') {
      for (const [idStr, v] of Object.entries(decoderCfg as Record<string, unknown>)) {
        const spec = addedSpec(v, Number(idStr));
        if (spec && Number.isInteger(spec.id)) {
          added.set(spec.content, spec);
          if (!enc.has(spec.content)) enc.set(spec.content, spec.id);
        }
      }
    }
    const extra = [map['additional_special_tokens'], cfg['additional_special_tokens']]
      .flatMap((x) => (Array.isArray(x) ? x : []))
      .map((x) => tokenContent(x))
      .filter((x): x is string => x !== undefined);
    let nextId = 0;
    for (const id of enc.values()) if (id >= nextId) nextId = id + 1;
    for (const content of [this.bosToken, this.eosToken, this.unkToken, this.padToken, ...extra]) {
      if (added.has(content)) continue;
      let id = enc.get(content);
      if (id === undefined) {
        id = nextId++;
        enc.set(content, id);
      }
      added.set(content, { content, id, lstrip: false, rstrip: false, singleWord: false, special: true });
    }
    this.addedByContent = added;
    this.addedTokens = [...added.values()];
    this.encoder = enc;
    const dec = new Map<number, string>();
    for (const [t, id] of enc) if (!dec.has(id) || added.get(t)?.id === id) dec.set(id, t);
    this.decoder = dec;

    this.unkTokenId = this.tokenToId(this.unkToken, -1);
    if (this.unkTokenId < 0) throw new ConfigError(`tokenizer: unk token ${JSON.stringify(this.unkToken)} is not in the vocabulary`);
    this.bosTokenId = this.tokenToId(this.bosToken);
    this.eosTokenId = this.tokenToId(this.eosToken);
    this.padTokenId = this.tokenToId(this.padToken);
    this.seedCache();
  }

  /** HF seeds the BPE cache so a lower-cased `<|STARTOFTEXT|>` that reaches BPE stays one token. */
  private seedCache(): void {
    this.cache.clear();
    this.cache.set('<|startoftext|>', ['<|startoftext|>']);
    this.cache.set('<|endoftext|>', ['<|endoftext|>']);
  }

  /**
   * Loads vocab.json + merges.txt from `dir` and the two optional json configs from
   * `opts.configDir ?? dir`. A diffusers model folder (with a `tokenizer/` subfolder) works too.
   */
  static async fromFolder(files: FileSource, dir: string, opts: CLIPTokenizerFromFolderOptions = {}): Promise<CLIPTokenizer> {
    let base = dir;
    if (!(await files.exists(files.join(dir, 'vocab.json'))) && (await files.exists(files.join(dir, 'tokenizer', 'vocab.json')))) {
      base = files.join(dir, 'tokenizer');
    }
    const vocabPath = files.join(base, 'vocab.json');
    const mergesPath = files.join(base, 'merges.txt');
    const missing = [];
    if (!(await files.exists(vocabPath))) missing.push('vocab.json');
    if (!(await files.exists(mergesPath))) missing.push('merges.txt');
    if (missing.length) throw new ModelFolderError(`${dir}: not a CLIP tokenizer folder (missing ${missing.join(' and ')})`, dir);
    const cfgDir = opts.configDir ?? base;
    const cfgPath = files.join(cfgDir, 'tokenizer_config.json');
    const mapPath = files.join(cfgDir, 'special_tokens_map.json');
    const [vocab, merges, tokenizerConfig, specialTokensMap] = await Promise.all([
      files.readText(vocabPath),
      files.readText(mergesPath),
      readOptional(files, cfgPath),
      readOptional(files, mapPath),
    ]);
    return new CLIPTokenizer({
      vocab,
      merges,
      tokenizerConfig,
      specialTokensMap,
      names: { vocab: vocabPath, merges: mergesPath, tokenizerConfig: cfgPath, specialTokensMap: mapPath },
    });
  }

  /**
   * The BPE tokens of `text` (no BOS/EOS), like `tokenizer.tokenize(text)` — the first
   * CLIPTokenizer.maxTokens of them: the text after those is not tokenized.
   */
  tokenize(text: string): string[] {
    return this.tokens(text, CLIPTokenizer.maxTokens);
  }

  convertTokensToIds(tokens: readonly string[]): number[] {
    return tokens.map((t) => this.tokenToId(t));
  }

  /**
   * BOS + the text's ids + EOS, unpadded (`tokenizer(text).input_ids`): untruncated up to
   * CLIPTokenizer.maxTokens text ids, which bounds the work and the result whatever the text's length.
   */
  encodeUntruncated(text: string): number[] {
    const ids = this.convertTokensToIds(this.tokens(text, CLIPTokenizer.maxTokens));
    ids.unshift(this.bosTokenId);
    ids.push(this.eosTokenId);
    return ids;
  }

  /**
   * `tokenizer(text, padding='max_length', max_length, truncation=True)`: text ids are cut so that
   * BOS + ids + EOS fit, then padded with the pad token on the right. Tokenizing stops once the ids
   * that fit are known, so a long text costs little more than reading it.
   */
  encode(text: string, maxLength = this.modelMaxLength): CLIPEncoding {
    if (!Number.isInteger(maxLength) || maxLength < 2 || maxLength > CLIPTokenizer.maxTokens + 2) {
      throw new InvalidArgumentError(`tokenizer: maxLength must be an integer from 2 to ${CLIPTokenizer.maxTokens + 2}, got ${maxLength}`, 'maxLength');
    }
    const ids = this.convertTokensToIds(this.tokens(text, maxLength - 2));
    const inputIds = [this.bosTokenId];
    for (const id of ids) inputIds.push(id);
    inputIds.push(this.eosTokenId);
    const attentionMask = inputIds.map(() => 1);
    while (inputIds.length < maxLength) {
      inputIds.push(this.padTokenId);
      attentionMask.push(0);
    }
    return { inputIds, attentionMask };
  }

  /**
   * The first `max` BPE tokens of `text`, in transformers' order; words after those are not looked at.
   * Linear in the text's length (cleaning, pre-tokenisation) plus O(w log w) BPE per word of w bytes.
   */
  private tokens(text: string, max: number): string[] {
    const out: string[] = [];
    if (max <= 0) return out;
    for (const piece of this.splitOnAdded(text)) {
      if (piece.added) out.push(piece.text);
      else if (piece.text) {
        for (const m of basicClean(piece.text).matchAll(CLIP_PATTERN)) {
          for (const t of this.bpe(byteEncode(m[0]))) {
            out.push(t);
            if (out.length >= max) return out;
          }
        }
      }
      if (out.length >= max) return out.slice(0, max);
    }
    return out;
  }

  /** Ids back to text (special tokens kept; `</w>` becomes a space). For display, not a round trip. */
  decode(ids: readonly number[], skipSpecialTokens = false): string {
    const parts: string[] = [];
    for (const id of ids) {
      const tok = this.decoder.get(id);
      if (tok === undefined) continue;
      if (skipSpecialTokens && this.addedByContent.get(tok)?.special) continue;
      parts.push(tok);
    }
    const bytes: number[] = [];
    for (const ch of parts.join('')) {
      const b = BYTE_DECODER.get(ch);
      if (b !== undefined) bytes.push(b);
      else for (const b2 of UTF8.encode(ch)) bytes.push(b2);
    }
    return new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes)).replaceAll('</w>', ' ').trim();
  }

  private tokenToId(token: string, fallback?: number): number {
    const a = this.addedByContent.get(token);
    if (a) return a.id;
    const id = this.encoder.get(token);
    if (id !== undefined) return id;
    return fallback ?? this.unkTokenId;
  }

  /**
   * Splits raw text on added tokens (leftmost, then longest match), applying their lstrip/rstrip/
   * single_word flags the way PreTrainedTokenizer.tokenize does.
   */
  private splitOnAdded(text: string): { text: string; added: boolean }[] {
    const contents = [...this.addedByContent.keys()].filter((c) => c.length > 0);
    const pieces: { text: string; added: boolean }[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let best = '';
      for (const c of contents) if (c.length > best.length && text.startsWith(c, i)) best = c;
      if (best) {
        if (i > start) pieces.push({ text: text.slice(start, i), added: false });
        pieces.push({ text: best, added: true });
        i += best.length;
        start = i;
      } else i++;
    }
    if (start < text.length) pieces.push({ text: text.slice(start), added: false });

    for (let k = 0; k < pieces.length; k++) {
      const p = pieces[k]!;
      if (!p.added) continue;
      const spec = this.addedByContent.get(p.text)!;
      const left = pieces[k - 1];
      const right = pieces[k + 1];
      if (spec.rstrip && right && !right.added) right.text = right.text.trimStart();
      if (spec.lstrip && left && !left.added) left.text = left.text.trimEnd(); // = replace(/\s+$/u, ''), without its quadratic backtracking on long runs of spaces
      if (spec.singleWord && left && left.text && !left.text.endsWith(' ')) {
        left.text += p.text;
        p.text = '';
      } else if (spec.singleWord && right && right.text && !right.text.startsWith(' ')) {
        p.text += right.text;
        right.text = '';
      }
    }
    return pieces.filter((p) => p.text !== '');
  }

  /**
   * BPE of one byte-encoded word; the last symbol carries `</w>`. transformers' algorithm — merge every
   * non-overlapping occurrence (left to right) of the lowest-ranked adjacent pair, again until no pair has a
   * rank — in O(n log n) for n symbols rather than its O(n²) per pass: the symbols form a linked list and
   * every adjacent pair with a rank waits in a heap; an entry whose symbols changed since it was pushed is
   * skipped. Words of at most CACHE_WORD_CHARS are cached (at most CACHE_ENTRIES of them, then the cache
   * starts again), so memory does not grow with the texts seen.
   */
  private bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const word = bpeMerge(token, this.ranks);
    if (token.length <= CACHE_WORD_CHARS) {
      if (this.cache.size >= CACHE_ENTRIES) this.seedCache();
      this.cache.set(token, word);
    }
    return word;
  }

  /** Most text tokens tokenize() and encodeUntruncated() give (the text after them is not tokenized). */
  static readonly maxTokens = 8192;
}

const CACHE_WORD_CHARS = 64;
const CACHE_ENTRIES = 16384;

/** A pair of adjacent symbols waiting in the BPE heap: `left` and the node after it, as they were when pushed. */
interface PairEntry {
  rank: number;
  left: number;
  leftVersion: number;
  rightVersion: number;
}

/** A binary min-heap of pair entries by rank. */
class PairHeap {
  private readonly items: PairEntry[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): PairEntry | undefined {
    return this.items[0];
  }
  push(e: PairEntry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.rank <= e.rank) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }
  pop(): PairEntry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && a[r]!.rank < a[l]!.rank ? r : l;
      if (a[c]!.rank >= last.rank) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

/** transformers' CLIPTokenizer.bpe on a byte-encoded word, in O(n log n) (see CLIPTokenizer.bpe). */
function bpeMerge(token: string, ranks: ReadonlyMap<string, number>): string[] {
  const sym = [...token];
  const n = sym.length;
  if (n === 0) return [];
  sym[n - 1] += '</w>';
  if (n === 1) return sym;
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const version = new Int32Array(n); // bumped when a node's symbol grows; -1 once merged away
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap();
  const pushPair = (left: number) => {
    const right = next[left]!;
    if (right < 0) return;
    const rank = ranks.get(pairKey(sym[left]!, sym[right]!));
    if (rank !== undefined) heap.push({ rank, left, leftVersion: version[left]!, rightVersion: version[right]! });
  };
  const valid = (e: PairEntry) => version[e.left] === e.leftVersion && next[e.left]! >= 0 && version[next[e.left]!] === e.rightVersion;
  for (let i = 0; i + 1 < n; i++) pushPair(i);
  const batch: number[] = [];
  while (heap.size > 0) {
    const top = heap.pop()!;
    if (!valid(top)) continue;
    // Every current occurrence of this pair (one rank is one pair), merged left to right without overlap.
    const rank = top.rank;
    const first = sym[top.left]!, second = sym[next[top.left]!]!;
    batch.length = 0;
    batch.push(top.left);
    while (heap.size > 0 && heap.peek()!.rank === rank) {
      const e = heap.pop()!;
      if (valid(e)) batch.push(e.left);
    }
    // Node indices follow the word's order (a merge keeps the left node), so sorting them is left to right.
    batch.sort((a, b) => a - b);
    for (const left of batch) {
      const right = next[left]!;
      // An earlier merge of this batch may have taken this occurrence's symbols (first === second).
      if (version[left]! < 0 || right < 0 || sym[left] !== first || sym[right] !== second) continue;
      sym[left] = first + second;
      version[left]!++;
      version[right] = -1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      if (prev[left]! >= 0) pushPair(prev[left]!);
      pushPair(left);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text cleaning (transformers' BasicTokenizer with strip_accents=False, do_split_on_punc=False)

const CONTROL = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** Cleans text the way CLIPTokenizer does without ftfy; returns the words joined by single spaces. */
export function basicClean(text: string): string {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    if (ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) {
      cleaned += ' ';
      continue;
    }
    if (CONTROL.test(ch)) continue; // Cc, Cf, Cs, Co, Cn
    cleaned += isCjk(cp) ? ` ${ch} ` : ch;
  }
  // Python's str.split() also splits on U+2028/U+2029, which survive the cleaning; JS \s covers them.
  // Lower-casing is per word, as BasicTokenizer does (it matters for Greek final sigma).
  return cleaned
    .normalize('NFC')
    .split(/\s+/u)
    .filter((w) => w !== '')
    .map((w) => w.toLowerCase())
    .join(' ');
}

const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/** CLIP's pre-tokenisation: the words BPE runs on. */
export function preTokenize(text: string): string[] {
  return text.match(CLIP_PATTERN) ?? [];
}

// ---------------------------------------------------------------------------------------------
// Byte-level symbols (GPT-2's bytes_to_unicode): printable bytes map to themselves, the rest to 256+n.

const BYTE_ENCODER: string[] = (() => {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
})();
const BYTE_DECODER = new Map(BYTE_ENCODER.map((c, b) => [c, b]));
const UTF8 = new TextEncoder();

function byteEncode(word: string): string {
  let s = '';
  for (const b of UTF8.encode(word)) s += BYTE_ENCODER[b];
  return s;
}

function pairKey(a: string, b: string): string {
  return `${a} ${b}`;
}

// ---------------------------------------------------------------------------------------------
// Config helpers

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(name, `invalid JSON (${(e as Error).message})`);
  }
}

function asObject(v: string | Record<string, unknown> | undefined, name: string): Record<string, unknown> {
  if (v === undefined) return {};
  const o = typeof v === 'string' ? parseJson(v, name) : v;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new FileFormatError(name, `expected a JSON object`);
  return o as Record<string, unknown>;
}

/** A special token is either a string or an AddedToken dict with `content`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown | undefined }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function addedSpec(v: unknown, id: number): AddedTokenSpec | undefined {
  const content = tokenContent(v);
  if (content === undefined) return undefined;
  const o = (typeof v === 'object' && v ? v : {}) as Record<string, unknown>;
  return {
    content,
    id,
    lstrip: o['lstrip'] === true,
    rstrip: o['rstrip'] === true,
    singleWord: o['single_word'] === true,
    special: o['special'] !== false,
  };
}

async function readOptional(files: FileSource, path: string): Promise<string | undefined> {
  return (await files.exists(path)) ? files.readText(path) : undefined;
}
