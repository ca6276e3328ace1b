// Property-based fuzzing of the CLIP tokenizer (fast-check), within a fixed budget (see test/helpers/fuzz.ts:
// FEWSTEP_FUZZ_SECONDS, default 3 s; FEWSTEP_FUZZ_RUNS; FEWSTEP_FUZZ_SEED). Inputs are texts of any Unicode
// (lone surrogates, controls, CJK, emoji, combining marks), words over small alphabets (long BPE merges),
// long runs of one character or of spaces, and the added tokens (BOS/EOS, SD2's "!") spliced in, up to tens
// of thousands of characters. Every input must tokenize within bounded time and memory, consistently across
// tokenize / encode / encodeUntruncated and within CLIPTokenizer.maxTokens, and (SD1.5, texts without the
// exact added-token strings) equal to transformers' BPE as written there (clip-bpe-reference.ts).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CLIPTokenizer } from '@fewstep/models';
import { nodeFiles } from '@fewstep/tensor/node';
import { FUZZ, FuzzStats, fuzzParams, fuzzTimeout } from '../helpers/fuzz';
import { mergeRanks, referenceTokenize } from './clip-bpe-reference';
import { readFileSync } from 'node:fs';

const TOK = new URL('../fixtures/clip-tokenizer', import.meta.url).pathname;
const ranks = mergeRanks(readFileSync(`${TOK}/merges.txt`, 'utf8'));
const tokenizers = {
  sd15: await CLIPTokenizer.fromFolder(nodeFiles, TOK, { configDir: `${TOK}/sd15` }),
  sd2: await CLIPTokenizer.fromFolder(nodeFiles, TOK, { configDir: `${TOK}/sd2` }),
};

/** A part of a prompt. */
const part: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  // Words over small alphabets: long chains of merges.
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('ab', 'aab', 'lo', 'abcdefghijklmnopqrstuvwxyz', '!?.,', 'é中😀ꙮ', '0123456789', "'s"), fc.integer({ min: 1, max: 400 }), fc.integer()).map(([alphabet, n, seed]) => {
    const chars = [...alphabet];
    let x = seed | 1, s = '';
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      s += chars[(x >>> 0) % chars.length];
    }
    return s;
  }) },
  // Long runs: one character, spaces, newlines, controls.
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', ' ', '\n', '\u0000', '\u200b', '!', 'ꙮ', '\ufffd', '\u3000', 'Σ'), fc.integer({ min: 1, max: 20_000 })).map(([c, n]) => c.repeat(n)) },
  { weight: 2, arbitrary: fc.constantFrom('<|startoftext|>', '<|endoftext|>', '<|STARTOFTEXT|>', '!', ' ! ', 'a photo of a cat', "it's", '一只猫', 'ΣΑΣ') },
);
const text: fc.Arbitrary<string> = fc.array(part, { maxLength: 6 }).map((ps) => ps.join(''));

describe('fuzz: CLIP tokenizer', () => {
  it(`any text: consistent results within maxTokens, transformers' tokens, in bounded time and memory (${FUZZ.seconds} s)`, async () => {
    const stats = new FuzzStats('tokenizer');
    const regressions = ['ꙮ'.repeat(131_072), 'abcdefghij'.repeat(12_000), ' '.repeat(100_000), '<|endoftext|>'.repeat(10_000), `x${'!'.repeat(50_000)}`];
    let i = 0;
    await fc.assert(
      fc.asyncProperty(text, async (t) => {
        const label = `input ${i++} (${t.length} chars)`;
        await stats.one(label, async () => {
          for (const [name, tok] of Object.entries(tokenizers)) {
            const tokens = tok.tokenize(t);
            expect(tokens.length).toBeLessThanOrEqual(CLIPTokenizer.maxTokens);
            for (const x of tokens) expect(typeof x === 'string' && x.length > 0, `${label} ${name}: a token`).toBe(true);
            const ids = tok.convertTokensToIds(tokens);
            const un = tok.encodeUntruncated(t);
            expect(un, `${label} ${name}: encodeUntruncated = BOS + tokenize + EOS`).toEqual([tok.bosTokenId, ...ids, tok.eosTokenId]);
            const enc = tok.encode(t);
            const used = Math.min(ids.length, 75) + 2;
            expect(enc.inputIds).toHaveLength(77);
            expect(enc.inputIds.slice(0, used), `${label} ${name}: encode = the first 75 ids`).toEqual([tok.bosTokenId, ...ids.slice(0, 75), tok.eosTokenId]);
            expect(enc.attentionMask).toEqual(Array.from({ length: 77 }, (_, k) => (k < used ? 1 : 0)));
            for (const id of enc.inputIds) expect(tok.decoder.has(id), `${label} ${name}: id ${id} in the vocabulary`).toBe(true);
            if (name === 'sd15' && t.length <= 3000 && !t.includes('<|startoftext|>') && !t.includes('<|endoftext|>')) {
              expect(tokens, `${label}: transformers' tokens`).toEqual(referenceTokenize(t, ranks).slice(0, CLIPTokenizer.maxTokens));
            }
          }
          return true;
        });
      }),
      fuzzParams(regressions),
    );
    if (FUZZ.report) console.log(stats.summary());
    expect(stats.inputs).toBeGreaterThan(0);
  }, fuzzTimeout());
});
