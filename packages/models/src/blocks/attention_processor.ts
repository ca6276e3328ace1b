/**
 * diffusers `attention_processor.py`: `Attention` as run by `AttnProcessor2_0` — to_q/to_k/to_v
 * projections, multi-head scaled dot-product attention, to_out[0]. Optionally (VAE mid block) a
 * GroupNorm in front, a residual connection and an output rescale, on NCHW input.
 */
import { InvalidArgumentError, type Tensor } from '@fewstep/tensor';
import { add, attention, permute, scale } from '@fewstep/kernels';
import { GroupNorm } from '../layers/norm.js';
import { Linear } from '../layers/linear.js';
import type { WeightScope } from '../modeling/weights.js';

export interface AttentionConfig {
  queryDim: number;
  /** K/V input width; defaults to queryDim (self-attention). */
  crossAttentionDim?: number | null | undefined;
  heads: number;
  dimHead: number;
  /** Bias on to_q/to_k/to_v (diffusers `bias`, default false). */
  bias?: boolean | undefined;
  /** Bias on to_out[0] (diffusers `out_bias`, default true). */
  outBias?: boolean | undefined;
  /** GroupNorm applied to the (spatial) input first (diffusers `norm_num_groups`). */
  normNumGroups?: number | null | undefined;
  eps?: number | undefined;
  residualConnection?: boolean | undefined;
  rescaleOutputFactor?: number | undefined;
}

/**
 * Checkpoint names of the projections. Old VAE checkpoints (diffusers' deprecated attention block)
 * use query/key/value/proj_attn; diffusers renames them on load
 * (`ModelMixin._convert_deprecated_attention_blocks`), and this is the one place fewstep does.
 */
function projectionNames(w: WeightScope): { q: string; k: string; v: string; out: string } {
  if (!w.has('to_q.weight') && w.has('query.weight')) return { q: 'query', k: 'key', v: 'value', out: 'proj_attn' };
  return { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };
}

export class Attention {
  private constructor(
    readonly to_q: Linear,
    readonly to_k: Linear,
    readonly to_v: Linear,
    readonly to_out: [Linear],
    readonly group_norm: GroupNorm | undefined,
    readonly heads: number,
    readonly dimHead: number,
    readonly residualConnection: boolean,
    readonly rescaleOutputFactor: number,
  ) {}

  static build(w: WeightScope, cfg: AttentionConfig): Attention {
    const inner = cfg.heads * cfg.dimHead;
    const kv = cfg.crossAttentionDim ?? cfg.queryDim;
    const bias = cfg.bias ?? false;
    const n = projectionNames(w);
    return new Attention(
      Linear.build(w.pp(n.q), cfg.queryDim, inner, bias),
      Linear.build(w.pp(n.k), kv, inner, bias),
      Linear.build(w.pp(n.v), kv, inner, bias),
      [Linear.build(w.pp(n.out), inner, cfg.queryDim, cfg.outBias ?? true)],
      cfg.normNumGroups ? GroupNorm.build(w.pp('group_norm'), cfg.normNumGroups, cfg.queryDim, cfg.eps ?? 1e-5) : undefined,
      cfg.heads,
      cfg.dimHead,
      cfg.residualConnection ?? false,
      cfg.rescaleOutputFactor ?? 1,
    );
  }

  /**
   * Token input: x [B, Lq, queryDim], context [B, Lk, crossAttentionDim] (defaults to x) → [B, Lq, queryDim].
   * Applies the residual connection / rescale when configured.
   */
  forward(x: Tensor, context?: Tensor): Tensor {
    if (this.group_norm) throw new InvalidArgumentError('Attention: this block normalises spatial input; call forwardSpatial');
    return x.device.scope(() => this.finish(this.attend(x, context ?? x), x));
  }

  /**
   * Spatial input (the VAE's attention): x [B, C, H, W] → group_norm → tokens [B, HW, C] →
   * attention → back to [B, C, H, W] → + x (residual_connection) → / rescale_output_factor.
   */
  forwardSpatial(x: Tensor): Tensor {
    return x.device.scope(() => {
      const [b, c, h, w] = x.shape as [number, number, number, number];
      const normed = this.group_norm ? this.group_norm.forward(x) : x;
      const tokens = permute(normed.reshape([b, c, h * w]), [0, 2, 1]);
      const y = this.attend(tokens, tokens);
      const back = permute(y, [0, 2, 1]).reshape([b, c, h, w]);
      return this.finish(back, x);
    });
  }

  private attend(x: Tensor, context: Tensor): Tensor {
    const q = this.to_q.forward(x);
    const k = this.to_k.forward(context);
    const v = this.to_v.forward(context);
    const o = attention(q, k, v, this.heads, { scale: 1 / Math.sqrt(this.dimHead) });
    return this.to_out[0].forward(o);
  }

  private finish(y: Tensor, residual: Tensor): Tensor {
    let out = this.residualConnection ? add(y, residual) : y;
    if (this.rescaleOutputFactor !== 1) out = scale(out, 1 / this.rescaleOutputFactor);
    return out;
  }
}
