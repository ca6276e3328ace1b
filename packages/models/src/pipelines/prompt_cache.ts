/**
 * The prompt-embedding cache: what the text encoder made for a list of token ids, kept on the GPU so a
 * generate() with the same prompt (the usual case: one prompt, many seeds) skips the encoder. One entry is one
 * text-encoder call of encodePrompt — the prompt rows or the negative rows — keyed by everything its output
 * depends on: the tokenizer and text encoder instances (each given a number on first sight), the encoder's
 * dtype, clip_skip and the token ids. Cached tensors belong to the cache: `get` hands out a view of the same
 * storage that the caller disposes as usual, and the storage is freed once the entry is evicted (least recently
 * used first) or the cache cleared and no view is left. Browser-safe.
 */
import type { Tensor } from '@fewstep/tensor';

/** The default number of entries a pipeline keeps. */
export const PROMPT_CACHE_ENTRIES = 16;

let nextId = 1;
const ids = new WeakMap<object, number>();
/** A number for an object, the same for its whole life (key parts for instances). */
function identity(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

export interface PromptCacheKeyParts {
  tokenizer: object;
  textEncoder: object;
  dtype: string;
  /** null: last_hidden_state; n: the hidden state n layers earlier through the final layer norm. */
  clipSkip: number | null;
  /** All rows' token ids, row after row. */
  tokenIds: Int32Array;
  /** Tokens per row. */
  rowLength: number;
}

export class PromptEmbeddingCache {
  private readonly entries = new Map<string, Tensor>();
  /** Lookups that found an entry / did not (since creation). */
  readonly stats = { hits: 0, misses: 0 };

  /** At most `maxEntries` entries (0 turns the cache off). */
  constructor(readonly maxEntries: number = PROMPT_CACHE_ENTRIES) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new RangeError(`PromptEmbeddingCache: maxEntries must be an integer ≥ 0, got ${maxEntries}`);
  }

  static key(p: PromptCacheKeyParts): string {
    return `${identity(p.tokenizer)}:${identity(p.textEncoder)}:${p.dtype}:${p.clipSkip ?? '-'}:${p.rowLength}:${p.tokenIds.join(',')}`;
  }

  get size(): number {
    return this.entries.size;
  }

  /** GPU bytes the entries hold. */
  get bytes(): number {
    let n = 0;
    for (const t of this.entries.values()) n += t.buffer.size;
    return n;
  }

  /** A new view of the cached tensor (the caller disposes it; the entry stays), or undefined. */
  get(key: string): Tensor | undefined {
    const t = this.entries.get(key);
    if (!t) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    // Most recently used last.
    this.entries.delete(key);
    this.entries.set(key, t);
    return t.reshape(t.shape);
  }

  /**
   * Stores `t` under `key` (the cache takes it out of any scope and owns it) and returns a view of it for the
   * caller. With maxEntries 0 nothing is kept and `t` itself is returned.
   */
  put(key: string, t: Tensor): Tensor {
    if (this.maxEntries === 0) return t;
    const view = t.reshape(t.shape);
    this.entries.get(key)?.dispose();
    this.entries.delete(key);
    this.entries.set(key, t.keep());
    while (this.entries.size > this.maxEntries) {
      const [oldest, e] = this.entries.entries().next().value as [string, Tensor];
      this.entries.delete(oldest);
      e.dispose();
    }
    return view;
  }

  /** Frees every entry (views handed out stay valid until disposed). */
  clear(): void {
    for (const t of this.entries.values()) t.dispose();
    this.entries.clear();
  }
}
