// The hardening issue's hostile prompts for the CLIP tokenizer, each tokenized in bounded time with exact
// results: a 131k-character word (its BPE result was spread into a push: a RangeError), a 120 KB prompt
// without spaces (67 s: transformers' BPE rescans the word once per merge), runs of spaces next to an lstrip
// token, a 300k-entry vocabulary; the token cap of encodeUntruncated/tokenize and the bounded BPE cache.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@fewstep/tensor';
import { CLIPTokenizer } from '@fewstep/models';
import { nodeFiles } from '@fewstep/tensor/node';
import { byteEncode, mergeRanks, referenceBpe, referenceTokenize } from './clip-bpe-reference';

const TOK = new URL('../fixtures/clip-tokenizer', import.meta.url).pathname;
const vocab = readFileSync(`${TOK}/vocab.json`, 'utf8');
const merges = readFileSync(`${TOK}/merges.txt`, 'utf8');
const ranks = mergeRanks(merges);
const sd15 = await CLIPTokenizer.fromFolder(nodeFiles, TOK, { configDir: `${TOK}/sd15` });
const sd2 = await CLIPTokenizer.fromFolder(nodeFiles, TOK, { configDir: `${TOK}/sd2` });

/** Deterministic text of `n` characters drawn from `alphabet` (xorshift). */
function randomText(n: number, alphabet: string, seed = 1): string {
  const chars = [...alphabet];
  let x = seed;
  let s = '';
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    s += chars[(x >>> 0) % chars.length];
  }
  return s;
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const t0 = performance.now();
  const value = fn();
  return { value, ms: performance.now() - t0 };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const ids = (tok: CLIPTokenizer, tokens: string[]) => tok.convertTokensToIds(tokens);

describe('hostile prompts: bounded time, exact results', () => {
  it('a 131k-character word (no merges between its symbols) tokenizes: no spread of its tokens', () => {
    const text = 'ꙮ'.repeat(131_072);
    for (const tok of [sd15, sd2]) {
      const enc = timed(() => tok.encode(text));
      expect(enc.value.inputIds).toHaveLength(77);
      const un = timed(() => tok.encodeUntruncated(text));
      expect(un.value).toHaveLength(CLIPTokenizer.maxTokens + 2);
      expect(un.value.slice(0, 77 - 1)).toEqual(enc.value.inputIds.slice(0, 77 - 1));
      expect(timed(() => tok.tokenize(text)).value).toHaveLength(CLIPTokenizer.maxTokens);
      expect(enc.ms + un.ms).toBeLessThan(5000);
    }
  });

  it("a 120 KB prompt without spaces tokenizes in under 5 s (it took 67 s), with transformers' tokens", () => {
    const text = randomText(120_000, LETTERS);
    const { value, ms } = timed(() => sd15.encode(text));
    expect(ms).toBeLessThan(5000);
    // The same ids as transformers' algorithm on the word (run here on a 6 000-character prefix's word: the
    // reference is quadratic), and the 120 KB word's first tokens are those of its BPE.
    const short = text.slice(0, 6000);
    const want = referenceBpe(byteEncode(short), ranks);
    expect(sd15.tokenize(short)).toEqual(want);
    expect(value.inputIds.slice(1, 76)).toEqual(ids(sd15, sd15.tokenize(text).slice(0, 75)));
  });

  it('long words of every kind equal transformers\' BPE', () => {
    for (const [alphabet, n] of [[LETTERS, 3000], ['aab', 3000], ['ab', 2000], ['!?.,', 3000], ['é😀中ꙮ', 1500], ['lo', 2500], [LETTERS + '0123456789 ', 8000]] as const) {
      const text = randomText(n, alphabet, n);
      expect(sd15.tokenize(text), alphabet).toEqual(referenceTokenize(text, ranks));
      expect(sd15.encode(text).inputIds.slice(1, 76), alphabet).toEqual(ids(sd15, referenceTokenize(text, ranks)).slice(0, 75));
    }
  });

  it('a megabyte prompt: encode stops after 75 tokens of words, and any length stays near-linear', () => {
    const words = randomText(1_000_000, LETTERS + '     ');
    const a = timed(() => sd15.encode(words));
    expect(a.value.attentionMask.every((m) => m === 1)).toBe(true);
    expect(a.ms).toBeLessThan(5000);
    const b = timed(() => sd15.encodeUntruncated(words));
    expect(b.value).toHaveLength(CLIPTokenizer.maxTokens + 2);
    expect(b.ms).toBeLessThan(5000);
  });

  it('runs of spaces beside an lstrip/rstrip added token take linear time', () => {
    const cfg = { added_tokens_decoder: { '49408': { content: '<x>', lstrip: true, rstrip: true, special: false } } };
    const tok = new CLIPTokenizer({ vocab, merges, tokenizerConfig: cfg });
    const text = `a${' '.repeat(200_000)}b${' '.repeat(200_000)}<x>${' '.repeat(200_000)}c`;
    const { value, ms } = timed(() => tok.tokenize(text));
    expect(value).toEqual(['a</w>', 'b</w>', '<x>', 'c</w>']);
    expect(ms).toBeLessThan(2000);
  });

  it('a vocabulary of 300 000 entries loads (no spread of its ids)', () => {
    const big: Record<string, number> = JSON.parse(vocab) as Record<string, number>;
    for (let i = 0; i < 300_000; i++) big[`extra${i}`] = 50_000 + i;
    const tok = new CLIPTokenizer({ vocab: big, merges });
    expect(tok.encode('a cat').inputIds.slice(0, 4)).toEqual(sd15.encode('a cat').inputIds.slice(0, 4));
  });
});

describe('documented bounds', () => {
  it(`tokenize and encodeUntruncated give at most ${CLIPTokenizer.maxTokens} text tokens; encode's maxLength is at most that + 2`, () => {
    const text = 'cat '.repeat(CLIPTokenizer.maxTokens + 10);
    expect(sd15.tokenize(text)).toHaveLength(CLIPTokenizer.maxTokens);
    expect(sd15.encodeUntruncated(text)).toHaveLength(CLIPTokenizer.maxTokens + 2);
    expect(sd15.encodeUntruncated('cat '.repeat(100))).toHaveLength(102);
    expect(sd15.encode(text, CLIPTokenizer.maxTokens + 2).attentionMask.every((m) => m === 1)).toBe(true);
    expect(() => sd15.encode('cat', CLIPTokenizer.maxTokens + 3)).toThrow(InvalidArgumentError);
    expect(() => sd15.encode('cat', 1e9)).toThrow(`tokenizer: maxLength must be an integer from 2 to ${CLIPTokenizer.maxTokens + 2}, got 1000000000`);
  });

  it('the BPE cache stays bounded whatever the words seen (and long words are not cached)', () => {
    const tok = new CLIPTokenizer({ vocab, merges });
    const cache = (tok as unknown as { cache: Map<string, string[]> }).cache;
    for (let i = 0; i < 40; i++) tok.encode(Array.from({ length: 1000 }, (_, k) => randomText(8, LETTERS, i * 1000 + k + 1)).join(' '));
    expect(cache.size).toBeLessThanOrEqual(16384);
    tok.encode(randomText(5000, LETTERS));
    expect([...cache.keys()].every((k) => k.length <= 64)).toBe(true);
    // Still seeded after a reset: a lower-cased <|STARTOFTEXT|> reaching BPE stays one token.
    expect(tok.tokenize('<|STARTOFTEXT|>')).toEqual(sd15.tokenize('<|STARTOFTEXT|>'));
  });
});
