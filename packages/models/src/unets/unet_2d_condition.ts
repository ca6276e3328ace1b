/**
 * diffusers `unet_2d_condition.py` (v0.25.1): `UNet2DConditionModel`, config-driven, for the
 * SD1.x / SD2.x / SDXS family: CrossAttn/plain down and up blocks, optional UNetMidBlock2DCrossAttn,
 * positional timestep embedding, and ControlNet residual inputs.
 */
import { Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { add, cast, scale, silu } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { GroupNorm } from '../layers/norm.js';
import { Timesteps, TimestepEmbedding } from '../blocks/embeddings.js';
import {
  getDownBlock,
  getUpBlock,
  UNetMidBlock2DCrossAttn,
  type BlockConfig,
  type UNetDownBlock,
  type UNetUpBlock,
} from './unet_2d_blocks.js';
import { countParameters, disposeAll, loadModel, recordParameters, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { RandomSource, type RandomWeightsOptions } from '../modeling/random_weights.js';
import { loadFromFolder, loadFromSource, type FromFolderOptions, type FromSourceOptions } from '../modeling/component.js';

type PerBlock<T> = T | T[];

/** config.json of a UNet2DConditionModel; keys verbatim, every one optional (diffusers defaults). */
export interface UNet2DConditionConfig {
  sample_size?: number | number[] | null | undefined;
  in_channels?: number | undefined;
  out_channels?: number | undefined;
  center_input_sample?: boolean | undefined;
  flip_sin_to_cos?: boolean | undefined;
  freq_shift?: number | undefined;
  down_block_types?: string[] | undefined;
  mid_block_type?: string | null | undefined;
  up_block_types?: string[] | undefined;
  only_cross_attention?: PerBlock<boolean> | undefined;
  block_out_channels?: number[] | undefined;
  layers_per_block?: PerBlock<number> | undefined;
  downsample_padding?: number | undefined;
  mid_block_scale_factor?: number | undefined;
  dropout?: number | undefined;
  act_fn?: string | undefined;
  norm_num_groups?: number | null | undefined;
  norm_eps?: number | undefined;
  cross_attention_dim?: PerBlock<number> | undefined;
  transformer_layers_per_block?: PerBlock<number | number[]> | undefined;
  reverse_transformer_layers_per_block?: (number | number[])[] | null | undefined;
  encoder_hid_dim?: number | null | undefined;
  encoder_hid_dim_type?: string | null | undefined;
  attention_head_dim?: PerBlock<number | null> | undefined;
  num_attention_heads?: PerBlock<number> | null | undefined;
  dual_cross_attention?: boolean | undefined;
  use_linear_projection?: boolean | undefined;
  class_embed_type?: string | null | undefined;
  addition_embed_type?: string | null | undefined;
  addition_time_embed_dim?: number | null | undefined;
  num_class_embeds?: number | null | undefined;
  upcast_attention?: boolean | null | undefined;
  resnet_time_scale_shift?: string | undefined;
  resnet_skip_time_act?: boolean | undefined;
  resnet_out_scale_factor?: number | undefined;
  time_embedding_type?: string | undefined;
  time_embedding_dim?: number | null | undefined;
  time_embedding_act_fn?: string | null | undefined;
  timestep_post_act?: string | null | undefined;
  time_cond_proj_dim?: number | null | undefined;
  conv_in_kernel?: number | undefined;
  conv_out_kernel?: number | undefined;
  projection_class_embeddings_input_dim?: number | null | undefined;
  attention_type?: string | undefined;
  class_embeddings_concat?: boolean | undefined;
  mid_block_only_cross_attention?: boolean | null | undefined;
  cross_attention_norm?: string | null | undefined;
  addition_embed_type_num_heads?: number | undefined;
  [extra: string]: unknown;
}

/** The config with defaults applied and per-block values expanded to lists. */
export interface ResolvedUNetConfig {
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: string[];
  midBlockType: string | null;
  upBlockTypes: string[];
  blockOutChannels: number[];
  /** Per down block; up blocks use the reversed list. */
  onlyCrossAttention: boolean[];
  layersPerBlock: number[];
  transformerLayersPerBlock: (number | number[])[];
  reverseTransformerLayersPerBlock: (number | number[])[];
  /** Head COUNT per down block (diffusers: num_attention_heads or attention_head_dim). */
  numAttentionHeads: number[];
  crossAttentionDim: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  useLinearProjection: boolean;
  timeEmbedDim: number;
  convInKernel: number;
  convOutKernel: number;
}

const DEFAULTS = {
  in_channels: 4,
  out_channels: 4,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  attention_head_dim: 8,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
};

/** Applies diffusers' defaults and checks; throws one clear error naming the unsupported key. */
export function resolveUNetConfig(config: UNet2DConditionConfig): ResolvedUNetConfig {
  const c = config;
  const unsupported = (key: string, why: string): never => {
    throw new Error(`UNet2DConditionModel: config ${key} = ${JSON.stringify(c[key])} is not supported by fewstep (${why})`);
  };
  const isSet = (key: string) => c[key] !== undefined && c[key] !== null;
  for (const key of ['class_embed_type', 'num_class_embeds', 'addition_embed_type', 'time_cond_proj_dim', 'encoder_hid_dim', 'encoder_hid_dim_type',
    'time_embedding_act_fn', 'timestep_post_act', 'cross_attention_norm', 'projection_class_embeddings_input_dim']) {
    if (isSet(key)) unsupported(key, 'only null is supported');
  }
  if (c.num_attention_heads !== undefined && c.num_attention_heads !== null) {
    // diffusers v0.25.1 raises here too.
    throw new Error('UNet2DConditionModel: At the moment it is not possible to define the number of attention heads via `num_attention_heads` because of a naming issue as described in https://github.com/huggingface/diffusers/issues/2011#issuecomment-1547958131 (config num_attention_heads must be null)');
  }
  if (c.dual_cross_attention) unsupported('dual_cross_attention', 'only false is supported');
  if (c.class_embeddings_concat) unsupported('class_embeddings_concat', 'only false is supported');
  if (c.resnet_skip_time_act) unsupported('resnet_skip_time_act', 'only false is supported');
  if ((c.attention_type ?? 'default') !== 'default') unsupported('attention_type', 'only "default" is supported');
  if ((c.time_embedding_type ?? 'positional') !== 'positional') unsupported('time_embedding_type', 'only "positional" is supported');
  if ((c.resnet_time_scale_shift ?? 'default') !== 'default') unsupported('resnet_time_scale_shift', 'only "default" is supported');
  if (!['silu', 'swish'].includes(c.act_fn ?? 'silu')) unsupported('act_fn', 'only "silu" is supported');
  if (c.norm_num_groups === null) unsupported('norm_num_groups', 'null (no conv_norm_out) is not supported');
  const convIn = c.conv_in_kernel ?? DEFAULTS.conv_in_kernel, convOut = c.conv_out_kernel ?? DEFAULTS.conv_out_kernel;
  if (convIn % 2 === 0) unsupported('conv_in_kernel', 'only odd kernels are supported');
  if (convOut % 2 === 0) unsupported('conv_out_kernel', 'only odd kernels are supported');

  const down = c.down_block_types ?? DEFAULTS.down_block_types;
  const up = c.up_block_types ?? DEFAULTS.up_block_types;
  const blockOut = c.block_out_channels ?? DEFAULTS.block_out_channels;
  const n = down.length;
  if (up.length !== n) throw new Error(`Must provide the same number of \`down_block_types\` as \`up_block_types\`. \`down_block_types\`: ${JSON.stringify(down)}. \`up_block_types\`: ${JSON.stringify(up)}.`);
  if (blockOut.length !== n) throw new Error(`Must provide the same number of \`block_out_channels\` as \`down_block_types\`. \`block_out_channels\`: ${JSON.stringify(blockOut)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
  const perBlock = <T>(key: string, v: T | T[]): T[] => {
    if (!Array.isArray(v)) return new Array<T>(n).fill(v);
    if (v.length !== n) throw new Error(`Must provide the same number of \`${key}\` as \`down_block_types\`. \`${key}\`: ${JSON.stringify(v)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
    return v;
  };
  const heads = perBlock('attention_head_dim', c.attention_head_dim ?? DEFAULTS.attention_head_dim);
  const midType = c.mid_block_type === undefined ? DEFAULTS.mid_block_type : c.mid_block_type;
  if (midType !== null && midType !== 'UNetMidBlock2DCrossAttn') throw new Error(`UNet2DConditionModel: mid_block_type ${JSON.stringify(midType)} is not supported (only "UNetMidBlock2DCrossAttn" or null)`);
  const tl = c.transformer_layers_per_block ?? DEFAULTS.transformer_layers_per_block;
  const tlist = Array.isArray(tl) ? perBlock('transformer_layers_per_block', tl as (number | number[])[]) : new Array<number>(n).fill(tl);
  if (Array.isArray(tl) && tl.some((x) => Array.isArray(x)) && !c.reverse_transformer_layers_per_block) {
    throw new Error("Must provide 'reverse_transformer_layers_per_block` if using asymmetrical UNet.");
  }
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim, so a null entry leaves
  // a block without a head count (it fails there too).
  if (heads.some((h) => h === null)) unsupported('attention_head_dim', 'every entry must be a number (the head count)');
  const numHeads = heads as number[];
  return {
    inChannels: c.in_channels ?? DEFAULTS.in_channels,
    outChannels: c.out_channels ?? DEFAULTS.out_channels,
    centerInputSample: c.center_input_sample ?? false,
    flipSinToCos: c.flip_sin_to_cos ?? DEFAULTS.flip_sin_to_cos,
    freqShift: c.freq_shift ?? DEFAULTS.freq_shift,
    downBlockTypes: down,
    midBlockType: midType,
    upBlockTypes: up,
    blockOutChannels: blockOut,
    onlyCrossAttention: perBlock('only_cross_attention', c.only_cross_attention ?? false),
    layersPerBlock: perBlock('layers_per_block', c.layers_per_block ?? DEFAULTS.layers_per_block),
    transformerLayersPerBlock: tlist,
    reverseTransformerLayersPerBlock: c.reverse_transformer_layers_per_block ?? [...tlist].reverse(),
    numAttentionHeads: numHeads,
    crossAttentionDim: perBlock('cross_attention_dim', c.cross_attention_dim ?? DEFAULTS.cross_attention_dim),
    downsamplePadding: c.downsample_padding ?? DEFAULTS.downsample_padding,
    midBlockScaleFactor: c.mid_block_scale_factor ?? DEFAULTS.mid_block_scale_factor,
    normNumGroups: c.norm_num_groups ?? DEFAULTS.norm_num_groups,
    normEps: c.norm_eps ?? DEFAULTS.norm_eps,
    useLinearProjection: c.use_linear_projection ?? false,
    timeEmbedDim: c.time_embedding_dim ?? blockOut[0]! * 4,
    convInKernel: convIn,
    convOutKernel: convOut,
  };
}

/** The block configs the UNet builds, in order (the arguments diffusers passes to get_down_block / get_up_block). */
function blockPlan(r: ResolvedUNetConfig) {
  const n = r.blockOutChannels.length;
  const common = { tembChannels: r.timeEmbedDim, resnetEps: r.normEps, resnetGroups: r.normNumGroups, useLinearProjection: r.useLinearProjection };
  const down: { type: string; cfg: BlockConfig }[] = [];
  let out = r.blockOutChannels[0]!;
  for (let i = 0; i < n; i++) {
    const inCh = out;
    out = r.blockOutChannels[i]!;
    down.push({
      type: r.downBlockTypes[i]!,
      cfg: {
        ...common,
        numLayers: r.layersPerBlock[i]!,
        transformerLayersPerBlock: r.transformerLayersPerBlock[i],
        inChannels: inCh,
        outChannels: out,
        addDownsample: i !== n - 1,
        downsamplePadding: r.downsamplePadding,
        crossAttentionDim: r.crossAttentionDim[i],
        numAttentionHeads: r.numAttentionHeads[i],
        onlyCrossAttention: r.onlyCrossAttention[i],
      },
    });
  }
  const mid: BlockConfig | null = r.midBlockType
    ? {
        ...common,
        numLayers: 1,
        transformerLayersPerBlock: r.transformerLayersPerBlock[n - 1],
        inChannels: r.blockOutChannels[n - 1]!,
        outChannels: r.blockOutChannels[n - 1]!,
        outputScaleFactor: r.midBlockScaleFactor,
        crossAttentionDim: r.crossAttentionDim[n - 1],
        numAttentionHeads: r.numAttentionHeads[n - 1],
      }
    : null;
  const rev = <T>(a: T[]) => [...a].reverse();
  const revOut = rev(r.blockOutChannels), revHeads = rev(r.numAttentionHeads), revLayers = rev(r.layersPerBlock);
  const revCross = rev(r.crossAttentionDim), revOnly = rev(r.onlyCrossAttention);
  const up: { type: string; cfg: BlockConfig }[] = [];
  out = revOut[0]!;
  for (let i = 0; i < n; i++) {
    const prev = out;
    out = revOut[i]!;
    up.push({
      type: r.upBlockTypes[i]!,
      cfg: {
        ...common,
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

export class UNet2DConditionModel {
  private constructor(
    readonly config: ResolvedUNetConfig,
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
  ) {}

  /** The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: UNet2DConditionConfig): UNet2DConditionModel {
    const r = resolveUNetConfig(config);
    const first = w.loaded.length;
    const b0 = r.blockOutChannels[0]!;
    const plan = blockPlan(r);
    const conv_in = Conv2d.build(w.pp('conv_in'), r.inChannels, b0, { kernel: r.convInKernel, padding: (r.convInKernel - 1) / 2 });
    const time_embedding = TimestepEmbedding.build(w.pp('time_embedding'), b0, r.timeEmbedDim);
    const down = plan.down.map((d, i) => getDownBlock(d.type, w.pp('down_blocks').pp(i), d.cfg));
    const mid = plan.mid ? UNetMidBlock2DCrossAttn.build(w.pp('mid_block'), plan.mid) : null;
    const up = plan.up.map((u, i) => getUpBlock(u.type, w.pp('up_blocks').pp(i), u.cfg));
    const norm = GroupNorm.build(w.pp('conv_norm_out'), r.normNumGroups, b0, r.normEps);
    const conv_out = Conv2d.build(w.pp('conv_out'), b0, r.outChannels, { kernel: r.convOutKernel, padding: (r.convOutKernel - 1) / 2 });
    return new UNet2DConditionModel(r, conv_in, new Timesteps(b0, r.flipSinToCos, r.freqShift), time_embedding, down, mid, up, norm, conv_out, w.dtype, w.loaded.slice(first));
  }

  /** Builds from a loading scope (keys relative to it), checks that every key was used, then reads the weights. */
  static load(w: WeightScope, config: UNet2DConditionConfig): Promise<UNet2DConditionModel> {
    return loadModel(w, 'UNet2DConditionModel', (s) => UNet2DConditionModel.build(s, config));
  }

  /** Every parameter key → shape the config implies (diffusers state-dict names): `build` with a recording scope. */
  static describe(config: UNet2DConditionConfig): Map<string, number[]> {
    return recordParameters((w) => UNet2DConditionModel.build(w, config));
  }

  /** Number of parameters the config implies (SDXS-512-0.9: 328,177,284; SD1.5: 859,520,964). */
  static parameterCount(config: UNet2DConditionConfig): number {
    return countParameters(UNet2DConditionModel.describe(config));
  }

  /** Loads a diffusers `unet/` folder (config.json + safetensors). */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<UNet2DConditionModel> {
    return loadFromFolder<UNet2DConditionConfig, UNet2DConditionModel>(io, dir, opts.variant, (src, config) => UNet2DConditionModel.fromSource(src, config, device, opts));
  }

  /** Loads from any TensorSource holding exactly this model's keys. */
  static async fromSource(src: TensorSource, config: UNet2DConditionConfig, device: Device, opts: FromSourceOptions = {}): Promise<UNet2DConditionModel> {
    return loadFromSource('UNet2DConditionModel', src, device, opts, (w) => UNet2DConditionModel.build(w, config));
  }

  /** A full-size UNet with deterministic random weights (benchmarks, memory tests). */
  static random(config: UNet2DConditionConfig, device: Device, opts: RandomWeightsOptions = {}): Promise<UNet2DConditionModel> {
    return UNet2DConditionModel.fromSource(new RandomSource(UNet2DConditionModel.describe(config), opts.seed ?? 0), config, device, opts);
  }

  /**
   * sample [B, in_channels, H, W]; timestep: one number for the whole batch, or one per item
   * (number[] or an f32 Tensor [B]); encoderHiddenStates [B, L, cross_attention_dim].
   * Inputs in another float dtype than the model's are cast. Returns [B, out_channels, H, W] in the
   * model's dtype (the caller owns it).
   */
  forward(sample: Tensor, timestep: number | readonly number[] | Tensor, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Tensor {
    const device = sample.device;
    const r = this.config;
    const [B, C, H, W] = sample.shape as [number, number, number, number];
    if (sample.rank !== 4 || C !== r.inChannels) throw new Error(`UNet2DConditionModel: sample must be [B, ${r.inChannels}, H, W], got [${sample.shape.join(', ')}]`);
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B) {
      throw new Error(`UNet2DConditionModel: encoder_hidden_states must be [${B}, L, D], got [${encoderHiddenStates.shape.join(', ')}]`);
    }
    const { downBlockAdditionalResiduals: downRes, midBlockAdditionalResidual: midRes } = opts;
    if (!!downRes !== !!midRes) {
      throw new Error('UNet2DConditionModel: ControlNet residuals need both downBlockAdditionalResiduals and midBlockAdditionalResidual');
    }
    return device.scope(() => {
      // Upsample sizes must be forwarded when the sample is not a multiple of the overall up factor.
      const factor = 2 ** (this.up_blocks.length - 1);
      const forwardUpsampleSize = H % factor !== 0 || W % factor !== 0;

      let x = this.toModelDType(sample);
      const context = this.toModelDType(encoderHiddenStates);
      if (r.centerInputSample) x = scale(x, 2, -1);

      // time
      const t = this.timestepTensor(device, timestep, B);
      const emb = this.time_embedding.forward(this.time_proj.forward(t, this.dtype));
      const tembAct = silu(emb);

      x = this.conv_in.forward(x);
      let skips: Tensor[] = [x];
      for (const block of this.down_blocks) {
        const { hidden, skips: s } = block.forward(x, tembAct, context);
        x = hidden;
        skips.push(...s);
      }
      if (downRes) {
        if (downRes.length !== skips.length) throw new Error(`UNet2DConditionModel: expected ${skips.length} down block residuals, got ${downRes.length}`);
        skips = skips.map((s, i) => add(s, this.toModelDType(downRes[i]!)));
      }
      if (this.mid_block) x = this.mid_block.forward(x, tembAct, context);
      // diffusers adds the ControlNet mid residual even when there is no mid block.
      if (midRes) x = add(x, this.toModelDType(midRes));

      this.up_blocks.forEach((block, i) => {
        const n = block.resnets.length;
        const mine = skips.slice(skips.length - n);
        skips = skips.slice(0, skips.length - n);
        const last = i === this.up_blocks.length - 1;
        let size: [number, number] | undefined;
        if (!last && forwardUpsampleSize) {
          const next = skips[skips.length - 1]!;
          size = [next.shape[2]!, next.shape[3]!];
        }
        x = block.forward(x, mine, tembAct, context, size);
      });

      return this.conv_out.forward(this.conv_norm_out.forward(x, true));
    });
  }

  private toModelDType(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  private timestepTensor(device: Device, timestep: number | readonly number[] | Tensor, batch: number): Tensor {
    if (timestep instanceof Tensor) {
      if (timestep.size !== 1 && timestep.size !== batch) throw new Error(`UNet2DConditionModel: timestep tensor has ${timestep.size} values for batch ${batch}`);
      if (timestep.dtype !== 'f32') throw new Error(`UNet2DConditionModel: timestep tensor must be f32, got ${timestep.dtype}`);
      return timestep.reshape([timestep.size]);
    }
    const values = typeof timestep === 'number' ? new Array<number>(batch).fill(timestep) : [...timestep];
    if (values.length !== batch) throw new Error(`UNet2DConditionModel: ${values.length} timesteps for batch ${batch}`);
    return Tensor.from(device, values, [batch], 'f32');
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}

