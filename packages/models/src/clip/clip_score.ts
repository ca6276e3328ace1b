/**
 * CLIP score and the host-side tail of CLIPModel's forward, on the CPU in float32 (the operands are
 * batch × projection_dim, a few KB): L2-normalising embeddings, the scaled cosine-similarity logits, and
 * torchmetrics' CLIPScore per pair, `100 · max(cos(image_embeds[i], text_embeds[i]), 0)`.
 *
 * Sums run in float64 and each stored value is rounded to float32, so results are within an ulp or two of
 * PyTorch's float32 reductions. Browser-safe.
 */
import { InvalidArgumentError, ShapeError } from '@fewstep/tensor';

/** Row-major rows × dim values on the host (a read-back [rows, dim] tensor). */
export interface EmbeddingRows {
  data: ArrayLike<number>;
  /** [rows, dim]. */
  shape: readonly number[];
}

function rowsOf(x: EmbeddingRows, what: string): [number, number] {
  if (x.shape.length !== 2) throw new ShapeError(`${what} must be [rows, dim], got [${x.shape.join(', ')}]`, what);
  const [n, d] = x.shape as [number, number];
  if (x.data.length !== n * d) throw new ShapeError(`${what}: ${x.data.length} values do not fill [${n}, ${d}]`, what);
  return [n, d];
}

/** `x / x.norm(p=2, dim=-1, keepdim=True)` in float32: [rows, dim] → the same shape, each row of unit length (a zero row gives NaN, as torch). */
export function l2NormalizeRows(x: EmbeddingRows, what = 'embeddings'): Float32Array {
  const [n, d] = rowsOf(x, what);
  const out = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x.data[r * d + i]! ** 2;
    const norm = Math.fround(Math.sqrt(ss));
    for (let i = 0; i < d; i++) out[r * d + i] = x.data[r * d + i]! / norm;
  }
  return out;
}

/**
 * CLIPModel's logits from L2-normalised embeddings: `logits_per_text = text · imageᵀ · scale` [Bt, Bi] and its
 * transpose `logits_per_image` [Bi, Bt]; `scale` = exp(logit_scale).
 */
export function clipLogits(imageEmbeds: EmbeddingRows, textEmbeds: EmbeddingRows, scale: number): { logitsPerImage: Float32Array; logitsPerText: Float32Array } {
  const [bi, d] = rowsOf(imageEmbeds, 'image_embeds');
  const [bt, dt] = rowsOf(textEmbeds, 'text_embeds');
  if (d !== dt) throw new ShapeError(`image_embeds have ${d} dims but text_embeds ${dt}`, 'text_embeds');
  const s = Math.fround(scale);
  const logitsPerImage = new Float32Array(bi * bt), logitsPerText = new Float32Array(bt * bi);
  for (let t = 0; t < bt; t++) {
    for (let i = 0; i < bi; i++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += textEmbeds.data[t * d + k]! * imageEmbeds.data[i * d + k]!;
      const v = Math.fround(Math.fround(dot) * s);
      logitsPerText[t * bi + i] = v;
      logitsPerImage[i * bt + t] = v;
    }
  }
  return { logitsPerImage, logitsPerText };
}

/**
 * torchmetrics' CLIPScore for each pair (image i, text i): `100 · max(cos(image_embeds[i], text_embeds[i]), 0)`.
 * The embeddings may be raw (`get_image_features` / `get_text_features`) or already normalised; both are
 * normalised here as torchmetrics does. [B, D] and [B, D] → B scores.
 */
export function clipScore(imageEmbeds: EmbeddingRows, textEmbeds: EmbeddingRows): Float32Array {
  const [bi, d] = rowsOf(imageEmbeds, 'image_embeds');
  const [bt, dt] = rowsOf(textEmbeds, 'text_embeds');
  if (bi !== bt) throw new InvalidArgumentError(`clipScore pairs image i with text i: got ${bi} images and ${bt} texts`, 'text_embeds');
  if (d !== dt) throw new ShapeError(`image_embeds have ${d} dims but text_embeds ${dt}`, 'text_embeds');
  const img = l2NormalizeRows(imageEmbeds, 'image_embeds'), txt = l2NormalizeRows(textEmbeds, 'text_embeds');
  const out = new Float32Array(bi);
  for (let r = 0; r < bi; r++) {
    let dot = 0;
    for (let k = 0; k < d; k++) dot += img[r * d + k]! * txt[r * d + k]!;
    out[r] = Math.max(Math.fround(100 * Math.fround(dot)), 0);
  }
  return out;
}
