import { ResourceLimitError, type Tensor } from '@fewstep/tensor';
import { matmul } from '../matmul/matmul.js';
import { softmax } from '../norm/norm.js';
import { concat, permute, slice } from '../layout/layout.js';

/**
 * Attention for head dims too large for the flash kernel's registers (the SD VAE's mid-block
 * attention: one head of 512): scores = q·kᵀ·scale through the GEMM, a row softmax, then P·V.
 * Queries go in chunks so each [B·H, chunk, Lk] score block fits one storage binding.
 * Layout as `attention`: q [B, Lq, H·D], k/v [B, Lk, H·D] → [B, Lq, H·D]. No mask or causal.
 */
/** `maxScoreBytes` (default: the binding limit) caps one score block; tests lower it to force chunks. */
export function attentionMaterialized(q: Tensor, k: Tensor, v: Tensor, heads: number, scale: number, maxScoreBytes = q.device.maxBinding): Tensor {
  const device = q.device;
  const [b, lq, hd] = q.shape as [number, number, number];
  const lk = k.shape[1]!;
  const d = hd / heads;
  const bh = b * heads;
  const bytes = q.dtype === 'f16' ? 2 : 4;
  const chunk = Math.max(1, Math.min(lq, Math.floor(maxScoreBytes / (bh * lk * bytes))));
  if (bh * lk * bytes > maxScoreBytes) {
    throw new ResourceLimitError(`attention: one query row of scores (${bh}×${lk} ${q.dtype}) exceeds the ${maxScoreBytes}-byte storage binding limit`);
  }
  // [B, L, H·D] → [B·H, L, D]; a view when there is one head.
  const split = (x: Tensor, l: number) => (heads === 1 ? x.reshape([b, l, d]) : permute(x.reshape([b, l, heads, d]), [0, 2, 1, 3]).reshape([bh, l, d]));
  return device.scope(() => {
    const kh = split(k, lk), vh = split(v, lk), qh = split(q, lq);
    const parts: Tensor[] = [];
    for (let s = 0; s < lq; s += chunk) {
      const qc = chunk >= lq ? qh : slice(qh, 1, s, Math.min(lq, s + chunk));
      parts.push(matmul(softmax(matmul(qc, kh, { transB: true, alpha: scale })), vh));
    }
    const o = parts.length === 1 ? parts[0]! : concat(parts, 1);
    return heads === 1 ? o.reshape([b, lq, hd]) : permute(o.reshape([b, heads, lq, d]), [0, 2, 1, 3]).reshape([b, lq, hd]);
  });
}
