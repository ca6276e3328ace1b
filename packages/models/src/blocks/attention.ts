/**
 * diffusers `attention.py`: `BasicTransformerBlock` (norm_type "layer_norm") and its GEGLU
 * `FeedForward` (ff.net.0.proj: dim → 2·inner, hidden·gelu(gate), ff.net.2: inner → dim; inner = 4·dim).
 */
import type { Tensor } from '@fewstep/tensor';
import { add, geglu } from '@fewstep/kernels';
import { LayerNorm } from '../layers/norm.js';
import { Linear } from '../layers/linear.js';
import { Attention } from './attention_processor.js';
import type { WeightScope } from '../modeling/weights.js';

/** diffusers `FeedForward(dim, mult=4, activation_fn="geglu")`: net = [GEGLU, Dropout, Linear]. */
export class FeedForward {
  private constructor(readonly net: [{ proj: Linear }, null, Linear]) {}

  static build(w: WeightScope, dim: number, mult = 4): FeedForward {
    const inner = dim * mult;
    return new FeedForward([{ proj: Linear.build(w.pp('net.0.proj'), dim, inner * 2) }, null, Linear.build(w.pp('net.2'), inner, dim)]);
  }

  forward(x: Tensor): Tensor {
    return x.device.scope(() => this.net[2].forward(geglu(this.net[0].proj.forward(x))));
  }
}

export interface BasicTransformerBlockConfig {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  crossAttentionDim: number;
  /** attn1 attends to the encoder states (its to_k/to_v take crossAttentionDim inputs). */
  onlyCrossAttention: boolean;
  /** LayerNorm eps (diffusers norm_eps, default 1e-5). */
  normEps?: number | undefined;
}

export class BasicTransformerBlock {
  private constructor(
    readonly norm1: LayerNorm,
    readonly attn1: Attention,
    readonly norm2: LayerNorm,
    readonly attn2: Attention,
    readonly norm3: LayerNorm,
    readonly ff: FeedForward,
    readonly onlyCrossAttention: boolean,
  ) {}

  private static attnConfigs(cfg: BasicTransformerBlockConfig) {
    const base = { queryDim: cfg.dim, heads: cfg.numAttentionHeads, dimHead: cfg.attentionHeadDim, bias: false, outBias: true };
    return {
      attn1: { ...base, crossAttentionDim: cfg.onlyCrossAttention ? cfg.crossAttentionDim : null },
      attn2: { ...base, crossAttentionDim: cfg.crossAttentionDim },
    };
  }

  static build(w: WeightScope, cfg: BasicTransformerBlockConfig): BasicTransformerBlock {
    const eps = cfg.normEps ?? 1e-5;
    const a = BasicTransformerBlock.attnConfigs(cfg);
    return new BasicTransformerBlock(
      LayerNorm.build(w.pp('norm1'), cfg.dim, eps),
      Attention.build(w.pp('attn1'), a.attn1),
      LayerNorm.build(w.pp('norm2'), cfg.dim, eps),
      Attention.build(w.pp('attn2'), a.attn2),
      LayerNorm.build(w.pp('norm3'), cfg.dim, eps),
      FeedForward.build(w.pp('ff'), cfg.dim),
      cfg.onlyCrossAttention,
    );
  }

  /** x [B, L, dim], context [B, Lk, crossAttentionDim] → [B, L, dim]. */
  forward(x: Tensor, context: Tensor): Tensor {
    return x.device.scope(() => {
      let h = add(this.attn1.forward(this.norm1.forward(x), this.onlyCrossAttention ? context : undefined), x);
      h = add(this.attn2.forward(this.norm2.forward(h), context), h);
      return add(this.ff.forward(this.norm3.forward(h)), h);
    });
  }
}
