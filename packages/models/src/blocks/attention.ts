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
import type { ParamSpec } from '../modeling/param_spec.js';

/** diffusers `FeedForward(dim, mult=4, activation_fn="geglu")`: net = [GEGLU, Dropout, Linear]. */
export class FeedForward {
  private constructor(readonly net: [{ proj: Linear }, null, Linear]) {}

  static async load(w: WeightScope, dim: number, mult = 4): Promise<FeedForward> {
    const inner = dim * mult;
    return new FeedForward([{ proj: await Linear.load(w.pp('net.0.proj'), dim, inner * 2) }, null, await Linear.load(w.pp('net.2'), inner, dim)]);
  }

  static describe(s: ParamSpec, dim: number, mult = 4): void {
    const inner = dim * mult;
    s.pp('net.0').linear('proj', dim, inner * 2);
    s.pp('net').linear('2', inner, dim);
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

  static async load(w: WeightScope, cfg: BasicTransformerBlockConfig): Promise<BasicTransformerBlock> {
    const eps = cfg.normEps ?? 1e-5;
    const a = BasicTransformerBlock.attnConfigs(cfg);
    return new BasicTransformerBlock(
      await LayerNorm.load(w.pp('norm1'), cfg.dim, eps),
      await Attention.load(w.pp('attn1'), a.attn1),
      await LayerNorm.load(w.pp('norm2'), cfg.dim, eps),
      await Attention.load(w.pp('attn2'), a.attn2),
      await LayerNorm.load(w.pp('norm3'), cfg.dim, eps),
      await FeedForward.load(w.pp('ff'), cfg.dim),
      cfg.onlyCrossAttention,
    );
  }

  static describe(s: ParamSpec, cfg: BasicTransformerBlockConfig): void {
    const a = BasicTransformerBlock.attnConfigs(cfg);
    s.norm('norm1', cfg.dim);
    Attention.describe(s.pp('attn1'), a.attn1);
    s.norm('norm2', cfg.dim);
    Attention.describe(s.pp('attn2'), a.attn2);
    s.norm('norm3', cfg.dim);
    FeedForward.describe(s.pp('ff'), cfg.dim);
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
