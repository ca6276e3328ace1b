/**
 * diffusers `unet_2d_blocks.py`, the blocks fewstep's models use:
 *   UNet: CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D;
 *   VAE:  DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D.
 * Down blocks return their output and the skip tensors; up blocks consume skips from the end.
 */
import { InvalidArgumentError, UnsupportedError, type Tensor } from '@fewstep/tensor';
import { concat } from '@fewstep/kernels';
import { ResnetBlock2D } from '../blocks/resnet.js';
import { Transformer2DModel, type Transformer2DModelConfig } from '../blocks/transformer_2d.js';
import { Attention } from '../blocks/attention_processor.js';
import { Downsample2D } from '../blocks/downsampling.js';
import { Upsample2D } from '../blocks/upsampling.js';
import type { WeightScope } from '../modeling/weights.js';
import { ConfigError } from '../errors.js';
import { drain, type Steps } from '../modeling/steps.js';

/** One config shape for every block (diffusers `get_down_block` / `get_up_block` arguments). */
export interface BlockConfig {
  numLayers: number;
  /** Transformer depth per attention (an int for all, or one per layer). */
  transformerLayersPerBlock?: number | number[] | undefined;
  inChannels: number;
  outChannels: number;
  /** Up blocks: channels coming from the previous (deeper) block. */
  prevOutputChannels?: number | undefined;
  /** null: resnets without time embedding (VAE). */
  tembChannels: number | null;
  resnetEps: number;
  resnetGroups: number;
  outputScaleFactor?: number | undefined;
  addDownsample?: boolean | undefined;
  downsamplePadding?: number | undefined;
  addUpsample?: boolean | undefined;
  // cross-attention blocks
  crossAttentionDim?: number | undefined;
  numAttentionHeads?: number | undefined;
  useLinearProjection?: boolean | undefined;
  onlyCrossAttention?: boolean | undefined;
}

function layersOf(cfg: BlockConfig): number[] {
  const t = cfg.transformerLayersPerBlock ?? 1;
  if (typeof t === 'number') return new Array<number>(cfg.numLayers).fill(t);
  if (t.length !== cfg.numLayers) throw new ConfigError(`transformer_layers_per_block ${JSON.stringify(t)} does not give one depth per layer (${cfg.numLayers})`);
  return t;
}

function transformerConfig(cfg: BlockConfig, channels: number, numLayers: number, onlyCrossAttention: boolean): Transformer2DModelConfig {
  const heads = cfg.numAttentionHeads!;
  if (channels % heads) throw new ConfigError(`${channels} channels are not divisible by ${heads} attention heads`);
  return {
    numAttentionHeads: heads,
    attentionHeadDim: channels / heads,
    inChannels: channels,
    numLayers,
    crossAttentionDim: cfg.crossAttentionDim!,
    normNumGroups: cfg.resnetGroups,
    useLinearProjection: cfg.useLinearProjection ?? false,
    onlyCrossAttention,
  };
}

const resnetConfig = (cfg: BlockConfig, inChannels: number, outChannels: number) => ({
  inChannels,
  outChannels,
  tembChannels: cfg.tembChannels,
  groups: cfg.resnetGroups,
  eps: cfg.resnetEps,
  outputScaleFactor: cfg.outputScaleFactor ?? 1,
});

// ---- down ----------------------------------------------------------------------------------------

/** DownBlock2D / DownEncoderBlock2D (attention: false) and CrossAttnDownBlock2D (attention: true). */
class DownBlockBase {
  protected constructor(
    readonly resnets: ResnetBlock2D[],
    readonly attentions: Transformer2DModel[],
    readonly downsamplers: [Downsample2D] | [],
  ) {}

  protected static buildParts(w: WeightScope, cfg: BlockConfig, attention: boolean) {
    const resnets: ResnetBlock2D[] = [], attentions: Transformer2DModel[] = [];
    const depth = attention ? layersOf(cfg) : [];
    for (let i = 0; i < cfg.numLayers; i++) {
      resnets.push(ResnetBlock2D.build(w.pp('resnets').pp(i), resnetConfig(cfg, i === 0 ? cfg.inChannels : cfg.outChannels, cfg.outChannels)));
      if (attention) attentions.push(Transformer2DModel.build(w.pp('attentions').pp(i), transformerConfig(cfg, cfg.outChannels, depth[i]!, cfg.onlyCrossAttention ?? false)));
    }
    const downsamplers: [Downsample2D] | [] = cfg.addDownsample ? [Downsample2D.build(w.pp('downsamplers').pp(0), cfg.outChannels, cfg.outChannels, cfg.downsamplePadding ?? 1)] : [];
    return [resnets, attentions, downsamplers] as const;
  }

  /** → { hidden, skips }: the output and every resnet/attention/downsampler output (diffusers `output_states`). */
  forward(x: Tensor, tembAct?: Tensor, context?: Tensor): { hidden: Tensor; skips: Tensor[] } {
    return drain(this.steps(x, tembAct, context));
  }

  /** `forward`, yielding after each resnet and attention (see Steps). */
  *steps(x: Tensor, tembAct?: Tensor, context?: Tensor): Steps<{ hidden: Tensor; skips: Tensor[] }> {
    const scope = x.device.openScope();
    let out: { hidden: Tensor; skips: Tensor[] } | undefined;
    try {
      const skips: Tensor[] = [];
      let h = x;
      for (const [i, resnet] of this.resnets.entries()) {
        h = resnet.forward(h, tembAct);
        yield;
        const attn = this.attentions[i];
        if (attn) {
          h = attn.forward(h, requireContext(context));
          yield;
        }
        skips.push(h);
      }
      if (this.downsamplers[0]) {
        h = this.downsamplers[0].forward(h);
        skips.push(h);
      }
      return (out = { hidden: h, skips });
    } finally {
      scope.end(out);
    }
  }

  /** Forward without keeping skips (the VAE encoder). */
  forwardNoSkips(x: Tensor, tembAct?: Tensor): Tensor {
    return x.device.scope(() => this.forward(x, tembAct).hidden);
  }
}

export class DownBlock2D extends DownBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): DownBlock2D {
    return new DownBlock2D(...DownBlockBase.buildParts(w, cfg, false));
  }
}

/** The VAE encoder's down block: DownBlock2D without time embedding (downsample padding 0). */
export class DownEncoderBlock2D extends DownBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): DownEncoderBlock2D {
    return new DownEncoderBlock2D(...DownBlockBase.buildParts(w, cfg, false));
  }
}

export class CrossAttnDownBlock2D extends DownBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): CrossAttnDownBlock2D {
    return new CrossAttnDownBlock2D(...DownBlockBase.buildParts(w, cfg, true));
  }
}

// ---- up ------------------------------------------------------------------------------------------

/** UpBlock2D / UpDecoderBlock2D (no skips) and CrossAttnUpBlock2D. */
class UpBlockBase {
  protected constructor(
    readonly resnets: ResnetBlock2D[],
    readonly attentions: Transformer2DModel[],
    readonly upsamplers: [Upsample2D] | [],
  ) {}

  /**
   * Resnet input widths. UNet up blocks concatenate a skip: resnet i takes (prev_output_channel if
   * i = 0 else out_channels) + (in_channels for the last resnet else out_channels). The VAE decoder's
   * blocks have no skips: in_channels then out_channels.
   */
  private static resnetIn(cfg: BlockConfig, i: number, skips: boolean): number {
    if (!skips) return i === 0 ? cfg.inChannels : cfg.outChannels;
    const resIn = i === 0 ? cfg.prevOutputChannels! : cfg.outChannels;
    const skip = i === cfg.numLayers - 1 ? cfg.inChannels : cfg.outChannels;
    return resIn + skip;
  }

  protected static buildParts(w: WeightScope, cfg: BlockConfig, attention: boolean, skips: boolean) {
    const resnets: ResnetBlock2D[] = [], attentions: Transformer2DModel[] = [];
    const depth = attention ? layersOf(cfg) : [];
    for (let i = 0; i < cfg.numLayers; i++) {
      resnets.push(ResnetBlock2D.build(w.pp('resnets').pp(i), resnetConfig(cfg, UpBlockBase.resnetIn(cfg, i, skips), cfg.outChannels)));
      if (attention) attentions.push(Transformer2DModel.build(w.pp('attentions').pp(i), transformerConfig(cfg, cfg.outChannels, depth[i]!, cfg.onlyCrossAttention ?? false)));
    }
    const upsamplers: [Upsample2D] | [] = cfg.addUpsample ? [Upsample2D.build(w.pp('upsamplers').pp(0), cfg.outChannels, cfg.outChannels)] : [];
    return [resnets, attentions, upsamplers] as const;
  }

  /**
   * x [B, C, H, W]; `skips` holds exactly this block's skip tensors (one per resnet, consumed from
   * the end; empty for the VAE decoder); `upsampleSize` forces the upsampler's output size.
   */
  forward(x: Tensor, skips: readonly Tensor[], tembAct?: Tensor, context?: Tensor, upsampleSize?: readonly [number, number]): Tensor {
    return drain(this.steps(x, skips, tembAct, context, upsampleSize));
  }

  /** `forward`, yielding after each resnet and attention (see Steps). */
  *steps(x: Tensor, skips: readonly Tensor[], tembAct?: Tensor, context?: Tensor, upsampleSize?: readonly [number, number]): Steps<Tensor> {
    if (skips.length && skips.length !== this.resnets.length) throw new InvalidArgumentError(`up block: got ${skips.length} skip tensors for ${this.resnets.length} resnets`);
    const scope = x.device.openScope();
    let out: Tensor | undefined;
    try {
      let h = x;
      for (const [i, resnet] of this.resnets.entries()) {
        if (skips.length) h = concat([h, skips[skips.length - 1 - i]!], 1);
        h = resnet.forward(h, tembAct);
        yield;
        const attn = this.attentions[i];
        if (attn) {
          h = attn.forward(h, requireContext(context));
          yield;
        }
      }
      if (this.upsamplers[0]) h = this.upsamplers[0].forward(h, upsampleSize);
      return (out = h);
    } finally {
      scope.end(out);
    }
  }
}

export class UpBlock2D extends UpBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): UpBlock2D {
    return new UpBlock2D(...UpBlockBase.buildParts(w, cfg, false, true));
  }
}

export class CrossAttnUpBlock2D extends UpBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): CrossAttnUpBlock2D {
    return new CrossAttnUpBlock2D(...UpBlockBase.buildParts(w, cfg, true, true));
  }
}

/** The VAE decoder's up block: resnets without time embedding or skips, then an upsampler. */
export class UpDecoderBlock2D extends UpBlockBase {
  static build(w: WeightScope, cfg: BlockConfig): UpDecoderBlock2D {
    return new UpDecoderBlock2D(...UpBlockBase.buildParts(w, cfg, false, false));
  }
}

// ---- mid -----------------------------------------------------------------------------------------

/** UNetMidBlock2DCrossAttn (num_layers 1): resnet → transformer → resnet. */
export class UNetMidBlock2DCrossAttn {
  private constructor(readonly resnets: ResnetBlock2D[], readonly attentions: Transformer2DModel[]) {}

  private static cfgs(cfg: BlockConfig) {
    const depth = layersOf({ ...cfg, numLayers: 1 });
    return { resnet: resnetConfig(cfg, cfg.inChannels, cfg.inChannels), attn: transformerConfig(cfg, cfg.inChannels, depth[0]!, false) };
  }

  static build(w: WeightScope, cfg: BlockConfig): UNetMidBlock2DCrossAttn {
    const c = UNetMidBlock2DCrossAttn.cfgs(cfg);
    return new UNetMidBlock2DCrossAttn(
      [ResnetBlock2D.build(w.pp('resnets').pp(0), c.resnet), ResnetBlock2D.build(w.pp('resnets').pp(1), c.resnet)],
      [Transformer2DModel.build(w.pp('attentions').pp(0), c.attn)],
    );
  }

  forward(x: Tensor, tembAct: Tensor | undefined, context: Tensor): Tensor {
    return drain(this.steps(x, tembAct, context));
  }

  /** `forward`, yielding after each resnet and attention (see Steps). */
  *steps(x: Tensor, tembAct: Tensor | undefined, context: Tensor): Steps<Tensor> {
    const scope = x.device.openScope();
    let out: Tensor | undefined;
    try {
      let h = this.resnets[0]!.forward(x, tembAct);
      yield;
      for (const [i, attn] of this.attentions.entries()) {
        h = attn.forward(h, context);
        yield;
        h = this.resnets[i + 1]!.forward(h, tembAct);
        yield;
      }
      return (out = h);
    } finally {
      scope.end(out);
    }
  }
}

export interface MidBlock2DConfig extends BlockConfig {
  /** Channels per head of the spatial attention; diffusers' VAE passes in_channels (one head). */
  attentionHeadDim?: number | null | undefined;
  addAttention?: boolean | undefined;
}

/**
 * UNetMidBlock2D: resnet, then num_layers × ([GroupNorm + single-head spatial attention] → resnet). The VAE uses
 * num_layers 1; ControlNetModel's mid_block_type "UNetMidBlock2D" uses num_layers 0 (one resnet).
 */
export class UNetMidBlock2D {
  private constructor(readonly resnets: ResnetBlock2D[], readonly attentions: (Attention | null)[]) {}

  private static cfgs(cfg: MidBlock2DConfig) {
    const headDim = cfg.attentionHeadDim ?? cfg.inChannels;
    return {
      resnet: resnetConfig(cfg, cfg.inChannels, cfg.inChannels),
      attn: {
        queryDim: cfg.inChannels,
        heads: Math.floor(cfg.inChannels / headDim),
        dimHead: headDim,
        bias: true,
        outBias: true,
        normNumGroups: cfg.resnetGroups,
        eps: cfg.resnetEps,
        residualConnection: true,
        rescaleOutputFactor: cfg.outputScaleFactor ?? 1,
      },
    };
  }

  static build(w: WeightScope, cfg: MidBlock2DConfig): UNetMidBlock2D {
    const c = UNetMidBlock2D.cfgs(cfg);
    const resnets = [ResnetBlock2D.build(w.pp('resnets').pp(0), c.resnet)];
    const attentions: (Attention | null)[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      attentions.push(cfg.addAttention === false ? null : Attention.build(w.pp('attentions').pp(i), c.attn));
      resnets.push(ResnetBlock2D.build(w.pp('resnets').pp(i + 1), c.resnet));
    }
    return new UNetMidBlock2D(resnets, attentions);
  }

  forward(x: Tensor, tembAct?: Tensor): Tensor {
    return x.device.scope(() => {
      let h = this.resnets[0]!.forward(x, tembAct);
      this.attentions.forEach((attn, i) => {
        if (attn) h = attn.forwardSpatial(h);
        h = this.resnets[i + 1]!.forward(h, tembAct);
      });
      return h;
    });
  }
}

function requireContext(context: Tensor | undefined): Tensor {
  if (!context) throw new InvalidArgumentError('cross-attention block called without encoder_hidden_states');
  return context;
}

// ---- factories -----------------------------------------------------------------------------------

export type UNetDownBlock = CrossAttnDownBlock2D | DownBlock2D;
export type UNetUpBlock = CrossAttnUpBlock2D | UpBlock2D;

export const DOWN_BLOCK_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'] as const;
export const UP_BLOCK_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'] as const;

/** diffusers `get_down_block` for the UNet block types fewstep supports. */
export function getDownBlock(type: string, w: WeightScope, cfg: BlockConfig): UNetDownBlock {
  if (type === 'CrossAttnDownBlock2D') return CrossAttnDownBlock2D.build(w, cfg);
  if (type === 'DownBlock2D') return DownBlock2D.build(w, cfg);
  throw new UnsupportedError(`${type} does not exist (supported down_block_types: ${DOWN_BLOCK_TYPES.join(', ')})`);
}

/** diffusers `get_up_block` for the UNet block types fewstep supports. */
export function getUpBlock(type: string, w: WeightScope, cfg: BlockConfig): UNetUpBlock {
  if (type === 'CrossAttnUpBlock2D') return CrossAttnUpBlock2D.build(w, cfg);
  if (type === 'UpBlock2D') return UpBlock2D.build(w, cfg);
  throw new UnsupportedError(`${type} does not exist (supported up_block_types: ${UP_BLOCK_TYPES.join(', ')})`);
}
