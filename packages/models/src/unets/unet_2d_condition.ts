/**
 * diffusers `unet_2d_condition.py` (v0.25.1): `UNet2DConditionModel`, config-driven, for the
 * SD1.x / SD2.x / SDXS family: CrossAttn/plain down and up blocks, optional UNetMidBlock2DCrossAttn,
 * positional timestep embedding, and ControlNet residual inputs.
 */
import { InvalidArgumentError, ShapeError, UnsupportedError, type Tensor } from '@fewstep/tensor';
import { add, scale } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { GroupNorm } from '../layers/norm.js';
import { Timesteps, TimestepEmbedding } from '../blocks/embeddings.js';
import { getUpBlock, UNetMidBlock2DCrossAttn, type BlockConfig, type UNetDownBlock, type UNetUpBlock } from './unet_2d_blocks.js';
import {
  UNET_ENCODER_DEFAULTS,
  downBlockPlan,
  midBlockConfig,
  resolveUNetEncoderConfig,
  downBlockSteps,
  buildEncoderStem,
  timeEmbeddingAct,
  timestepTensor,
  toModelDType,
  type ResolvedUNetEncoderConfig,
  type Timestep,
  type UNetEncoderConfig,
} from './unet_encoder.js';
import  { disposeAll, type WeightScope } from '../modeling/weights.js';
import { drain, drainAsync, type Steps } from '../modeling/steps.js';
import { unsupportedConfig, withDefaults, type ConfigInput } from '../modeling/config.js';
import { ConfigError } from '../errors.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/** config.json of a UNet2DConditionModel, every key diffusers v0.25.1 takes (`model.config`: defaults applied). */
export interface UNet2DConditionConfig extends UNetEncoderConfig {
  sample_size: number | number[] | null;
  out_channels: number;
  center_input_sample: boolean;
  up_block_types: string[];
  dropout: number;
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  dual_cross_attention: boolean;
  resnet_skip_time_act: boolean;
  resnet_out_scale_factor: number;
  time_embedding_type: string;
  time_embedding_dim: number | null;
  time_embedding_act_fn: string | null;
  timestep_post_act: string | null;
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  attention_type: string;
  class_embeddings_concat: boolean;
  mid_block_only_cross_attention: boolean | null;
  cross_attention_norm: string | null;
}

/** diffusers v0.25.1's `UNet2DConditionModel.__init__` defaults. */
export const UNET_2D_CONDITION_DEFAULTS: UNet2DConditionConfig = {
  ...UNET_ENCODER_DEFAULTS,
  sample_size: null,
  out_channels: 4,
  center_input_sample: false,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  dropout: 0,
  reverse_transformer_layers_per_block: null,
  dual_cross_attention: false,
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1,
  time_embedding_type: 'positional',
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  attention_type: 'default',
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null,
  cross_attention_norm: null,
};

/** A config.json object → `model.config`: diffusers' defaults for the keys it leaves out. */
export function unet2DConditionConfig(raw: ConfigInput<UNet2DConditionConfig>): Readonly<UNet2DConditionConfig> {
  return withDefaults(UNET_2D_CONDITION_DEFAULTS, raw);
}

/** `model.resolvedConfig`: the config checked, per-block values expanded, the derived widths computed. */
export interface ResolvedUNetConfig extends ResolvedUNetEncoderConfig {
  outChannels: number;
  centerInputSample: boolean;
  midBlockType: 'UNetMidBlock2DCrossAttn' | null;
  upBlockTypes: string[];
  reverseTransformerLayersPerBlock: (number | number[])[];
  convInKernel: number;
  convOutKernel: number;
}

/** Applies diffusers' defaults and checks; throws one clear error naming the unsupported key. */
export function resolveUNetConfig(config: ConfigInput<UNet2DConditionConfig>): ResolvedUNetConfig {
  const c = unet2DConditionConfig(config);
  const unsupported = (key: string, why: string): never => unsupportedConfig('UNet2DConditionModel', c, key, why);
  if (c.num_attention_heads !== null) {
    // diffusers v0.25.1 raises here too.
    throw new UnsupportedError('UNet2DConditionModel: At the moment it is not possible to define the number of attention heads via `num_attention_heads` because of a naming issue as described in https://github.com/huggingface/diffusers/issues/2011#issuecomment-1547958131 (config num_attention_heads must be null)');
  }
  if (c.norm_num_groups === null) unsupported('norm_num_groups', 'null (no conv_norm_out) is not supported');
  if (c.down_block_types.length !== c.up_block_types.length) {
    throw new ConfigError(`Must provide the same number of \`down_block_types\` as \`up_block_types\`. \`down_block_types\`: ${JSON.stringify(c.down_block_types)}. \`up_block_types\`: ${JSON.stringify(c.up_block_types)}.`);
  }
  const enc = resolveUNetEncoderConfig('UNet2DConditionModel', c, ['time_cond_proj_dim', 'time_embedding_act_fn', 'timestep_post_act', 'cross_attention_norm']);
  if (c.dual_cross_attention) unsupported('dual_cross_attention', 'only false is supported');
  if (c.class_embeddings_concat) unsupported('class_embeddings_concat', 'only false is supported');
  if (c.resnet_skip_time_act) unsupported('resnet_skip_time_act', 'only false is supported');
  if (c.attention_type !== 'default') unsupported('attention_type', 'only "default" is supported');
  if (c.time_embedding_type !== 'positional') unsupported('time_embedding_type', 'only "positional" is supported');
  if (c.conv_in_kernel % 2 === 0) unsupported('conv_in_kernel', 'only odd kernels are supported');
  if (c.conv_out_kernel % 2 === 0) unsupported('conv_out_kernel', 'only odd kernels are supported');
  const midType = c.mid_block_type;
  if (midType !== null && midType !== 'UNetMidBlock2DCrossAttn') throw new UnsupportedError(`UNet2DConditionModel: mid_block_type ${JSON.stringify(midType)} is not supported (only "UNetMidBlock2DCrossAttn" or null)`);
  const tl = c.transformer_layers_per_block;
  if (Array.isArray(tl) && tl.some((x) => Array.isArray(x)) && !c.reverse_transformer_layers_per_block) {
    throw new ConfigError("Must provide 'reverse_transformer_layers_per_block` if using asymmetrical UNet.");
  }
  return {
    ...enc,
    outChannels: c.out_channels,
    centerInputSample: c.center_input_sample,
    midBlockType: midType,
    upBlockTypes: c.up_block_types,
    reverseTransformerLayersPerBlock: c.reverse_transformer_layers_per_block ?? [...enc.transformerLayersPerBlock].reverse(),
    timeEmbedDim: c.time_embedding_dim ?? enc.timeEmbedDim,
    convInKernel: c.conv_in_kernel,
    convOutKernel: c.conv_out_kernel,
  };
}

/** The block configs the UNet builds, in order (the arguments diffusers passes to get_down_block / get_up_block). */
function blockPlan(r: ResolvedUNetConfig) {
  const n = r.blockOutChannels.length;
  const down = downBlockPlan(r);
  const mid: BlockConfig | null = r.midBlockType ? midBlockConfig(r) : null;
  const rev = <T>(a: T[]) => [...a].reverse();
  const revOut = rev(r.blockOutChannels), revHeads = rev(r.numAttentionHeads), revLayers = rev(r.layersPerBlock);
  const revCross = rev(r.crossAttentionDim), revOnly = rev(r.onlyCrossAttention);
  const up: { type: string; cfg: BlockConfig }[] = [];
  let out = revOut[0]!;
  for (let i = 0; i < n; i++) {
    const prev = out;
    out = revOut[i]!;
    up.push({
      type: r.upBlockTypes[i]!,
      cfg: {
        tembChannels: r.timeEmbedDim,
        resnetEps: r.normEps,
        resnetGroups: r.normNumGroups,
        useLinearProjection: r.useLinearProjection,
        numLayers: revLayers[i]! + 1,
        transformerLayersPerBlock: r.reverseTransformerLayersPerBlock[i],
        inChannels: revOut[Math.min(i + 1, n - 1)]!,
        outChannels: out,
        prevOutputChannels: prev,
        addUpsample: i !== n - 1,
        crossAttentionDim: revCross[i],
        numAttentionHeads: revHeads[i],
        onlyCrossAttention: revOnly[i],
      },
    });
  }
  return { down, mid, up };
}

export interface UNetForwardOptions {
  /** ControlNet: one residual per skip tensor (conv_in + every down resnet/attention/downsampler output). */
  downBlockAdditionalResiduals?: readonly Tensor[] | undefined;
  /** ControlNet: added to the mid-block output (or to the down path's output when mid_block is null). */
  midBlockAdditionalResidual?: Tensor | undefined;
}

export class UNet2DConditionModel extends PretrainedModel {
  static readonly modelName = 'UNet2DConditionModel';

  private constructor(
    /** config.json's keys with diffusers' defaults (see modeling/config.ts). */
    readonly config: Readonly<UNet2DConditionConfig>,
    /** The config checked and expanded per block. */
    readonly resolvedConfig: ResolvedUNetConfig,
    readonly conv_in: Conv2d,
    readonly time_proj: Timesteps,
    readonly time_embedding: TimestepEmbedding,
    readonly down_blocks: UNetDownBlock[],
    readonly mid_block: UNetMidBlock2DCrossAttn | null,
    readonly up_blocks: UNetUpBlock[],
    readonly conv_norm_out: GroupNorm,
    readonly conv_out: Conv2d,
    readonly dtype: 'f32' | 'f16',
    private readonly weights: Tensor[],
  ) {
    super();
  }

  /** The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ConfigInput<UNet2DConditionConfig>): UNet2DConditionModel {
    const c = unet2DConditionConfig(config);
    const r = resolveUNetConfig(c);
    const first = w.loaded.length;
    const b0 = r.blockOutChannels[0]!;
    const plan = blockPlan(r);
    const { conv_in, time_proj, time_embedding, down_blocks: down } = buildEncoderStem(w, r, r.convInKernel);
    const mid = plan.mid ? UNetMidBlock2DCrossAttn.build(w.pp('mid_block'), plan.mid) : null;
    const up = plan.up.map((u, i) => getUpBlock(u.type, w.pp('up_blocks').pp(i), u.cfg));
    const norm = GroupNorm.build(w.pp('conv_norm_out'), r.normNumGroups, b0, r.normEps);
    const conv_out = Conv2d.build(w.pp('conv_out'), b0, r.outChannels, { kernel: r.convOutKernel, padding: (r.convOutKernel - 1) / 2 });
    return new UNet2DConditionModel(c, r, conv_in, time_proj, time_embedding, down, mid, up, norm, conv_out, w.dtype, w.loaded.slice(first));
  }

  /**
   * sample [B, in_channels, H, W]; timestep: one number for the whole batch, or one per item
   * (number[] or an f32 Tensor [B]); encoderHiddenStates [B, L, cross_attention_dim].
   * Inputs in another float dtype than the model's are cast. Returns [B, out_channels, H, W] in the
   * model's dtype (the caller owns it).
   */
  forward(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Tensor {
    return drain(this.steps(sample, timestep, encoderHiddenStates, opts));
  }

  /**
   * `forward`, awaiting `pause()` (when given) after every resnet and attention: for streamed weights, whose
   * uploads `ParameterCache.pace` keeps close behind the GPU there. Same result, bit for bit.
   */
  forwardAsync(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, opts: UNetForwardOptions, pause?: (() => Promise<void>) | undefined): Promise<Tensor> {
    return drainAsync(this.steps(sample, timestep, encoderHiddenStates, opts), pause);
  }

  private *steps(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, opts: UNetForwardOptions): Steps<Tensor> {
    const device = sample.device;
    const r = this.resolvedConfig;
    const [B, C, H, W] = sample.shape as [number, number, number, number];
    if (sample.rank !== 4 || C !== r.inChannels) throw new ShapeError(`UNet2DConditionModel: sample must be [B, ${r.inChannels}, H, W], got [${sample.shape.join(', ')}]`, 'sample');
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B) {
      throw new ShapeError(`UNet2DConditionModel: encoder_hidden_states must be [${B}, L, D], got [${encoderHiddenStates.shape.join(', ')}]`, 'encoder_hidden_states');
    }
    const { downBlockAdditionalResiduals: downRes, midBlockAdditionalResidual: midRes } = opts;
    if (!!downRes !== !!midRes) {
      throw new InvalidArgumentError('UNet2DConditionModel: ControlNet residuals need both downBlockAdditionalResiduals and midBlockAdditionalResidual', 'midBlockAdditionalResidual');
    }
    const scope = device.openScope();
    let out: Tensor | undefined;
    try {
      // Upsample sizes must be forwarded when the sample is not a multiple of the overall up factor.
      const factor = 2 ** (this.up_blocks.length - 1);
      const forwardUpsampleSize = H % factor !== 0 || W % factor !== 0;

      let x = this.toModelDType(sample);
      const context = this.toModelDType(encoderHiddenStates);
      if (r.centerInputSample) x = scale(x, 2, -1);

      // time
      const t = timestepTensor('UNet2DConditionModel', device, timestep, B);
      const tembAct = timeEmbeddingAct(this.time_proj, this.time_embedding, t, this.dtype);

      const down = yield* downBlockSteps(this.down_blocks, this.conv_in.forward(x), tembAct, context);
      x = down.hidden;
      let skips = down.skips;
      if (downRes) {
        if (downRes.length !== skips.length) throw new InvalidArgumentError(`UNet2DConditionModel: expected ${skips.length} down block residuals, got ${downRes.length}`, 'downBlockAdditionalResiduals');
        skips = skips.map((s, i) => add(s, this.toModelDType(downRes[i]!)));
      }
      if (this.mid_block) x = yield* this.mid_block.steps(x, tembAct, context);
      // diffusers adds the ControlNet mid residual even when there is no mid block.
      if (midRes) x = add(x, this.toModelDType(midRes));

      for (const [i, block] of this.up_blocks.entries()) {
        const n = block.resnets.length;
        const mine = skips.slice(skips.length - n);
        skips = skips.slice(0, skips.length - n);
        const last = i === this.up_blocks.length - 1;
        let size: [number, number] | undefined;
        if (!last && forwardUpsampleSize) {
          const next = skips[skips.length - 1]!;
          size = [next.shape[2]!, next.shape[3]!];
        }
        x = yield* block.steps(x, mine, tembAct, context, size);
      }

      return (out = this.conv_out.forward(this.conv_norm_out.forward(x, true)));
    } finally {
      scope.end(out);
    }
  }

  private toModelDType(x: Tensor): Tensor {
    return toModelDType(x, this.dtype);
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}

