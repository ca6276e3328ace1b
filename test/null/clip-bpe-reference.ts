// transformers' CLIPTokenizer.bpe exactly as written there (O(n²) per word: each pass rescans the word), the
// byte-level symbol table and the pair ranks of a merges.txt: the reference the tokenizer's O(n log n) BPE is
// checked against (hostile-tokenizer.test.ts, fuzz-tokenizer.test.ts) on words short enough for it.
import { basicClean, preTokenize } from '@fewstep/models/testing';

/** bpe_ranks: merges.txt lines 1..48894 (the header skipped) → rank; a repeated pair keeps its last rank. */
export function mergeRanks(merges: string): Map<string, number> {
  const ranks = new Map<string, number>();
  merges
    .trim()
    .split('\n')
    .slice(1, 49152 - 256 - 2 + 1)
    .forEach((line, rank) => {
      const parts = line.split(/\s+/).filter((p) => p !== '');
      if (parts.length === 2) ranks.set(`${parts[0]} ${parts[1]}`, rank);
    });
  return ranks;
}

const BYTE_ENCODER: string[] = (() => {
  const table: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table.push(String.fromCodePoint(printable ? b : 256 + n++));
  }
  return table;
})();

export function byteEncode(word: string): string {
  let s = '';
  for (const b of new TextEncoder().encode(word)) s += BYTE_ENCODER[b];
  return s;
}

/** transformers' bpe(): find the lowest-ranked pair, merge all its occurrences left to right, repeat. */
export function referenceBpe(token: string, ranks: ReadonlyMap<string, number>): string[] {
  if (token === '<|startoftext|>' || token === '<|endoftext|>') return [token];
  const chars = [...token];
  let word = chars.slice(0, -1);
  word.push(chars[chars.length - 1]! + '</w>');
  while (word.length > 1) {
    let bestRank = Infinity;
    let first = '';
    let second = '';
    for (let i = 0; i < word.length - 1; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        first = word[i]!;
        second = word[i + 1]!;
      }
    }
    if (bestRank === Infinity) break;
    const merged: string[] = [];
    for (let i = 0; i < word.length; ) {
      if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
        merged.push(first + second);
        i += 2;
      } else merged.push(word[i++]!);
    }
    word = merged;
  }
  return word;
}

/** The tokens of a text without added tokens (the SD1.5 configs': none but BOS/EOS), transformers' way. */
export function referenceTokenize(text: string, ranks: ReadonlyMap<string, number>): string[] {
  const out: string[] = [];
  for (const w of preTokenize(basicClean(text))) for (const t of referenceBpe(byteEncode(w), ranks)) out.push(t);
  return out;
}
