// CLIPTokenizer against transformers 4.36.2's slow CLIPTokenizer (no-ftfy path), SD1.5 and SD2 configs.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIPTokenizer } from '@fewstep/models';
import { basicClean, preTokenize } from '@fewstep/models/testing';
import { nodeFiles } from '@fewstep/tensor/node';

const FIX = new URL('../fixtures/', import.meta.url).pathname;
const TOK = `${FIX}clip-tokenizer`;

interface Expected {
  input_ids: number[];
  attention_mask: number[];
  tokens: string[];
  untruncated_ids: number[];
}
interface GoldenCase {
  id: string;
  prompt: string;
  basic: { sd15: Expected; sd2: Expected };
}
const golden = JSON.parse(readFileSync(`${FIX}golden/tokenizer_clip/tokenizer_clip.json`, 'utf8')) as { cases: GoldenCase[] };

const variants = ['sd15', 'sd2'] as const;
const tokenizers = Object.fromEntries(
  await Promise.all(variants.map(async (v) => [v, await CLIPTokenizer.fromFolder(nodeFiles, TOK, { configDir: `${TOK}/${v}` })] as const)),
) as Record<(typeof variants)[number], CLIPTokenizer>;

describe('CLIPTokenizer config', () => {
  it('reads special tokens and max length from each variant', () => {
    const a = tokenizers.sd15;
    const b = tokenizers.sd2;
    expect([a.bosTokenId, a.eosTokenId, a.padTokenId, a.unkTokenId, a.modelMaxLength]).toEqual([49406, 49407, 49407, 49407, 77]);
    expect([b.bosTokenId, b.eosTokenId, b.padTokenId, b.unkTokenId, b.modelMaxLength]).toEqual([49406, 49407, 0, 49407, 77]);
    expect(b.addedTokens.map((t) => t.content).sort()).toEqual(['!', '<|endoftext|>', '<|startoftext|>']);
  });

  it('builds from contents without configs (SD1.5 defaults) and registers a pad token given only in the map', () => {
    const vocab = readFileSync(`${TOK}/vocab.json`, 'utf8');
    const merges = readFileSync(`${TOK}/merges.txt`, 'utf8');
    const bare = new CLIPTokenizer({ vocab, merges });
    expect(bare.encode('wow!!').inputIds).toEqual(tokenizers.sd15.encode('wow!!').inputIds);
    const padOnly = new CLIPTokenizer({ vocab, merges, specialTokensMap: { pad_token: '!' } });
    expect(padOnly.encode('wow!!').inputIds).toEqual(tokenizers.sd2.encode('wow!!').inputIds);
  });

  it('names the folder when vocab/merges are missing', async () => {
    await expect(CLIPTokenizer.fromFolder(nodeFiles, `${TOK}/sd2`)).rejects.toThrow(
      `${TOK}/sd2: not a CLIP tokenizer folder (missing vocab.json and merges.txt)`,
    );
  });
});

describe('CLIP text cleaning', () => {
  it('drops controls, maps whitespace, spaces CJK, lower-cases', () => {
    expect(basicClean('  A\u00a0B\u200bC\u0000D\ufffd\tE\r\nF ')).toBe('a bcd e f');
    expect(basicClean('一只猫')).toBe('一 只 猫');
    expect(preTokenize("it's 123 cat!!")).toEqual(['it', "'s", '1', '2', '3', 'cat', '!!']);
  });
});

describe('CLIPTokenizer golden (basic path, transformers 4.36.2)', () => {
  for (const v of variants) {
    it(`${v}: all ${golden.cases.length} prompts match input_ids, attention_mask, tokens, untruncated_ids`, () => {
      const tok = tokenizers[v];
      const bad: string[] = [];
      for (const c of golden.cases) {
        const want = c.basic[v];
        const enc = tok.encode(c.prompt, 77);
        const got = { input_ids: enc.inputIds, attention_mask: enc.attentionMask, tokens: tok.tokenize(c.prompt), untruncated_ids: tok.encodeUntruncated(c.prompt) };
        for (const k of ['input_ids', 'attention_mask', 'tokens', 'untruncated_ids'] as const) {
          if (JSON.stringify(got[k]) !== JSON.stringify(want[k])) {
            bad.push(`${c.id} ${k} ${JSON.stringify(c.prompt).slice(0, 60)}\n  got  ${JSON.stringify(got[k]).slice(0, 300)}\n  want ${JSON.stringify(want[k]).slice(0, 300)}`);
          }
        }
      }
      expect(bad.join('\n')).toBe('');
    });
  }
});
