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
    let nextId = Math.max(...enc.values()) + 1;
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
    // HF seeds the BPE cache so a lower-cased `<|STARTOFTEXT|>` that reaches BPE stays one token.
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

  /** The BPE tokens of `text` (no BOS/EOS), like `tokenizer.tokenize(text)`. */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const piece of this.splitOnAdded(text)) {
      if (piece.added) out.push(piece.text);
      else if (piece.text) for (const word of preTokenize(basicClean(piece.text))) out.push(...this.bpe(byteEncode(word)));
    }
    return out;
  }

  convertTokensToIds(tokens: readonly string[]): number[] {
    return tokens.map((t) => this.tokenToId(t));
  }

  /** BOS + every text id + EOS, untruncated and unpadded (`tokenizer(text).input_ids`). */
  encodeUntruncated(text: string): number[] {
    return [this.bosTokenId, ...this.convertTokensToIds(this.tokenize(text)), this.eosTokenId];
  }

  /**
   * `tokenizer(text, padding='max_length', max_length, truncation=True)`: text ids are cut so that
   * BOS + ids + EOS fit, then padded with the pad token on the right.
   */
  encode(text: string, maxLength = this.modelMaxLength): CLIPEncoding {
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new InvalidArgumentError(`tokenizer: maxLength must be an integer ≥ 2, got ${maxLength}`);
    const ids = this.convertTokensToIds(this.tokenize(text)).slice(0, maxLength - 2);
    const inputIds = [this.bosTokenId, ...ids, this.eosTokenId];
    const attentionMask = inputIds.map(() => 1);
    while (inputIds.length < maxLength) {
      inputIds.push(this.padTokenId);
      attentionMask.push(0);
    }
    return { inputIds, attentionMask };
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
      else bytes.push(...new TextEncoder().encode(ch));
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
      if (spec.rstrip && right && !right.added) right.text = right.text.replace(/^\s+/u, '');
      if (spec.lstrip && left && !left.added) left.text = left.text.replace(/\s+$/u, '');
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

  /** BPE of one byte-encoded word; the last symbol carries `</w>`. Results are cached per word. */
  private bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = [...token];
    let word = chars.slice(0, -1);
    word.push(chars[chars.length - 1]! + '</w>');
    while (word.length > 1) {
      let bestRank = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(pairKey(word[i]!, word[i + 1]!));
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (bestRank === Infinity) break;
      // Merge every non-overlapping occurrence of the best pair, left to right.
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else merged.push(word[i++]!);
      }
      word = merged;
    }
    this.cache.set(token, word);
    return word;
  }
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
