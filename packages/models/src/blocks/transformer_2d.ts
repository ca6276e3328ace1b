/**
 * diffusers `transformer_2d.py`: `Transformer2DModel` for continuous (image) input —
 * GroupNorm(eps 1e-6) → proj_in → BasicTransformerBlock × num_layers → proj_out → + input.
 * proj_in/proj_out are Linear (use_linear_projection, SD2/SDXS-0.9) or 1×1 Conv2d (SD1.5);
 * `build` detects which from the stored weight's rank rather than trusting the config.
 */
import type { Tensor } from '@fewstep/tensor';
import { add, permute } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { GroupNorm } from '../layers/norm.js';
import { Linear } from '../layers/linear.js';
import { BasicTransformerBlock, type BasicTransformerBlockConfig } from './attention.js';
import type { WeightScope } from '../modeling/weights.js';

export interface Transformer2DModelConfig {
  numAttentionHeads: number;
  attentionHeadDim: number;
  inChannels: number;
  numLayers: number;
  crossAttentionDim: number;
  normNumGroups: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
}

export class Transformer2DModel {
  private constructor(
    readonly norm: GroupNorm,
    readonly proj_in: Linear | Conv2d,
    readonly transformer_blocks: BasicTransformerBlock[],
    readonly proj_out: Linear | Conv2d,
  ) {}

  private static blockConfig(cfg: Transformer2DModelConfig): BasicTransformerBlockConfig {
    return {
      dim: cfg.numAttentionHeads * cfg.attentionHeadDim,
      numAttentionHeads: cfg.numAttentionHeads,
      attentionHeadDim: cfg.attentionHeadDim,
      crossAttentionDim: cfg.crossAttentionDim,
      onlyCrossAttention: cfg.onlyCrossAttention,
    };
  }

  static build(w: WeightScope, cfg: Transformer2DModelConfig): Transformer2DModel {
    const inner = cfg.numAttentionHeads * cfg.attentionHeadDim;
    const c = cfg.inChannels;
    // The weight's rank decides (2-D Linear, 4-D 1×1 conv); config.use_linear_projection is only a fallback.
    const rank = w.has('proj_in.weight') ? w.shape('proj_in.weight').length : cfg.useLinearProjection ? 2 : 4;
    const linear = rank === 2;
    const proj = (name: string, i: number, o: number) => (linear ? Linear.build(w.pp(name), i, o) : Conv2d.build(w.pp(name), i, o, { kernel: 1 }));
    const norm = GroupNorm.build(w.pp('norm'), cfg.normNumGroups, c, 1e-6);
    const projIn = proj('proj_in', c, inner);
    const blocks: BasicTransformerBlock[] = [];
    for (let i = 0; i < cfg.numLayers; i++) blocks.push(BasicTransformerBlock.build(w.pp('transformer_blocks').pp(i), Transformer2DModel.blockConfig(cfg)));
    const projOut = proj('proj_out', inner, c);
    return new Transformer2DModel(norm, projIn, blocks, projOut);
  }

  /** x [B, C, H, W], context [B, L, crossAttentionDim] → [B, C, H, W]. */
  forward(x: Tensor, context: Tensor): Tensor {
    return x.device.scope(() => {
      const [b, c, h, w] = x.shape as [number, number, number, number];
      const normed = this.norm.forward(x);
      let tokens: Tensor;
      if (this.proj_in instanceof Conv2d) {
        const p = this.proj_in.forward(normed);
        tokens = permute(p, [0, 2, 3, 1]).reshape([b, h * w, p.shape[1]!]);
      } else {
        tokens = this.proj_in.forward(permute(normed, [0, 2, 3, 1]).reshape([b, h * w, c]));
      }
      for (const block of this.transformer_blocks) tokens = block.forward(tokens, context);
      let out: Tensor;
      if (this.proj_out instanceof Conv2d) {
        const inner = tokens.shape[2]!;
        out = this.proj_out.forward(permute(tokens.reshape([b, h, w, inner]), [0, 3, 1, 2]));
      } else {
        out = permute(this.proj_out.forward(tokens).reshape([b, h, w, c]), [0, 3, 1, 2]);
      }
      return add(out, x);
    });
  }
}
