// CPU reference for multi-head attention: explicit score matrix + softmax in float64.
export interface CpuAttentionOptions {
  scale?: number | undefined;
  causal?: boolean | undefined;
  /** [B, Lk], 1 = keep, 0 = masked. */
  keyMask?: ArrayLike<number> | undefined;
}

/**
 * q [B, Lq, H·D], k/v [B, Lk, H·D] → [B, Lq, H·D]. A masked key scores like transformers' additive
 * finfo.min bias (the score itself is lost, so an all-masked row averages its keys uniformly); a causal
 * mask (key j > query i) removes the key outright, as SDPA's -inf does.
 */
export function cpuAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, b: number, lq: number, lk: number, heads: number, d: number, opts: CpuAttentionOptions = {}): Float32Array {
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const hd = heads * d;
  const out = new Float32Array(b * lq * hd);
  const s = new Float64Array(lk);
  for (let n = 0; n < b; n++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < lq; i++) {
        let m = -Infinity;
        for (let j = 0; j < lk; j++) {
          if (opts.causal && j > i) { s[j] = -Infinity; continue; }
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[(n * lq + i) * hd + h * d + e]! * k[(n * lk + j) * hd + h * d + e]!;
          s[j] = opts.keyMask && opts.keyMask[n * lk + j] === 0 ? -1e30 : dot * scale;
          m = Math.max(m, s[j]!);
        }
        let sum = 0;
        for (let j = 0; j < lk; j++) sum += (s[j] = Math.exp(s[j]! - m));
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += s[j]! * v[(n * lk + j) * hd + h * d + e]!;
          out[(n * lq + i) * hd + h * d + e] = acc / sum;
        }
      }
  return out;
}
