/**
 * The encoder half UNet2DConditionModel and ControlNetModel share. diffusers' ControlNetModel copies the UNet's
 * conv_in, time embedding, down blocks and mid block, and with them the config keys that shape them; this
 * file holds that common part once: the shared keys and their defaults (diffusers v0.25.1), their checks and
 * per-block expansion, the down/mid block plan, and the forward's input handling (timesteps, dtype casts).
 */
import type { Steps } from '../modeling/steps.js';
import { Tensor, InvalidArgumentError, ShapeError, type Device } from '@fewstep/tensor';
import { cast, silu } from '@fewstep/kernels';
import { ConfigError } from '../errors.js';
import { unsupportedConfig } from '../modeling/config.js';
import { TimestepEmbedding, Timesteps } from '../blocks/embeddings.js';
import { Conv2d } from '../layers/conv2d.js';
import type { WeightScope } from '../modeling/weights.js';
import { getDownBlock, type BlockConfig, type UNetDownBlock } from './unet_2d_blocks.js';

/** One value for every block, or one per block. */
export type PerBlock<T> = T | T[];

/** The config.json keys UNet2DConditionModel and ControlNetModel have in common. */
export interface UNetEncoderConfig {
  in_channels: number;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: string[];
  mid_block_type: string | null;
  only_cross_attention: PerBlock<boolean>;
  block_out_channels: number[];
  layers_per_block: PerBlock<number>;
  downsample_padding: number;
  mid_block_scale_factor: number;
  act_fn: string;
  norm_num_groups: number | null;
  norm_eps: number;
  cross_attention_dim: PerBlock<number>;
  transformer_layers_per_block: PerBlock<number | number[]>;
  encoder_hid_dim: number | null;
  encoder_hid_dim_type: string | null;
  /** The head COUNT per block, under diffusers' historic misnomer (num_attention_heads = num_attention_heads or attention_head_dim). */
  attention_head_dim: PerBlock<number | null>;
  num_attention_heads: PerBlock<number> | null;
  use_linear_projection: boolean;
  class_embed_type: string | null;
  addition_embed_type: string | null;
  addition_time_embed_dim: number | null;
  num_class_embeds: number | null;
  upcast_attention: boolean | null;
  resnet_time_scale_shift: string;
  projection_class_embeddings_input_dim: number | null;
  addition_embed_type_num_heads: number;
  [key: string]: unknown;
}

/** diffusers' defaults of the shared keys (UNet2DConditionModel and ControlNetModel agree on all of them). */
export const UNET_ENCODER_DEFAULTS: UNetEncoderConfig = {
  in_channels: 4,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  attention_head_dim: 8,
  num_attention_heads: null,
  use_linear_projection: false,
  class_embed_type: null,
  addition_embed_type: null,
  addition_time_embed_dim: null,
  num_class_embeds: null,
  upcast_attention: false,
  resnet_time_scale_shift: 'default',
  projection_class_embeddings_input_dim: null,
  addition_embed_type_num_heads: 64,
};

/** The shared keys with their checks done and per-block values expanded to one entry per down block. */
export interface ResolvedUNetEncoderConfig {
  inChannels: number;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: string[];
  blockOutChannels: number[];
  /** Per down block (up blocks use the reversed list). */
  onlyCrossAttention: boolean[];
  layersPerBlock: number[];
  transformerLayersPerBlock: (number | number[])[];
  /** Head COUNT per down block (diffusers: num_attention_heads or attention_head_dim). */
  numAttentionHeads: number[];
  crossAttentionDim: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  useLinearProjection: boolean;
  /** Width of the time embedding: 4 × block_out_channels[0]. */
  timeEmbedDim: number;
}

/** Keys whose only supported value is null (the embeddings and projections fewstep does not implement). */
const ONLY_NULL = ['class_embed_type', 'num_class_embeds', 'addition_embed_type', 'encoder_hid_dim', 'encoder_hid_dim_type', 'projection_class_embeddings_input_dim'];

/**
 * Checks the shared keys and expands them per block. `model` names the class in messages; `extraOnlyNull` adds
 * the model's own keys that must be null. Head counts are `num_attention_heads ?? attention_head_dim` (the
 * UNet rejects num_attention_heads before calling this, as diffusers v0.25.1 does).
 */
export function resolveUNetEncoderConfig(model: string, c: Readonly<UNetEncoderConfig>, extraOnlyNull: readonly string[] = []): ResolvedUNetEncoderConfig {
  const unsupported = (key: string, why: string): never => unsupportedConfig(model, c, key, why);
  for (const key of [...ONLY_NULL, ...extraOnlyNull]) if (c[key] !== undefined && c[key] !== null) unsupported(key, 'only null is supported');
  if (c.resnet_time_scale_shift !== 'default') unsupported('resnet_time_scale_shift', 'only "default" is supported');
  if (!['silu', 'swish'].includes(c.act_fn)) unsupported('act_fn', 'only "silu" is supported');
  if (c.norm_num_groups === null) unsupported('norm_num_groups', 'null is not supported');

  const down = c.down_block_types, blockOut = c.block_out_channels;
  const n = down.length;
  if (blockOut.length !== n) throw new ConfigError(`Must provide the same number of \`block_out_channels\` as \`down_block_types\`. \`block_out_channels\`: ${JSON.stringify(blockOut)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
  const perBlock = <T>(key: string, v: PerBlock<T>): T[] => {
    if (!Array.isArray(v)) return new Array<T>(n).fill(v);
    if (v.length !== n) throw new ConfigError(`Must provide the same number of \`${key}\` as \`down_block_types\`. \`${key}\`: ${JSON.stringify(v)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
    return v;
  };
  const headsKey = c.num_attention_heads !== null ? 'num_attention_heads' : 'attention_head_dim';
  const heads = perBlock<number | null>(headsKey, c.num_attention_heads ?? c.attention_head_dim);
  // A null entry leaves a block without a head count (diffusers fails there too).
  if (heads.some((h) => typeof h !== 'number')) unsupported(headsKey, 'every entry must be a number (the head count)');
  const tl = c.transformer_layers_per_block;
  return {
    inChannels: c.in_channels,
    flipSinToCos: c.flip_sin_to_cos,
    freqShift: c.freq_shift,
    downBlockTypes: down,
    blockOutChannels: blockOut,
    onlyCrossAttention: perBlock('only_cross_attention', c.only_cross_attention),
    layersPerBlock: perBlock('layers_per_block', c.layers_per_block),
    transformerLayersPerBlock: Array.isArray(tl) ? perBlock('transformer_layers_per_block', tl as (number | number[])[]) : new Array<number>(n).fill(tl),
    numAttentionHeads: heads as number[],
    crossAttentionDim: perBlock('cross_attention_dim', c.cross_attention_dim),
    downsamplePadding: c.downsample_padding,
    midBlockScaleFactor: c.mid_block_scale_factor,
    normNumGroups: c.norm_num_groups!,
    normEps: c.norm_eps,
    useLinearProjection: c.use_linear_projection,
    timeEmbedDim: blockOut[0]! * 4,
  };
}

/** What every block of the encoder shares: the time embedding width, the resnets' norm, the transformers' projection. */
function commonBlockConfig(r: ResolvedUNetEncoderConfig) {
  return { tembChannels: r.timeEmbedDim, resnetEps: r.normEps, resnetGroups: r.normNumGroups, useLinearProjection: r.useLinearProjection };
}

/** The down blocks, in order, with the arguments diffusers passes to get_down_block. */
export function downBlockPlan(r: ResolvedUNetEncoderConfig): { type: string; cfg: BlockConfig }[] {
  const n = r.blockOutChannels.length;
  let out = r.blockOutChannels[0]!;
  return r.downBlockTypes.map((type, i) => {
    const inCh = out;
    out = r.blockOutChannels[i]!;
    return {
      type,
      cfg: {
        ...commonBlockConfig(r),
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
    };
  });
}

/** The encoder's first half as both models build it: conv_in (odd `convInKernel`, same padding), the time embedding, the down blocks. */
export function buildEncoderStem(w: WeightScope, r: ResolvedUNetEncoderConfig, convInKernel: number) {
  const b0 = r.blockOutChannels[0]!;
  return {
    conv_in: Conv2d.build(w.pp('conv_in'), r.inChannels, b0, { kernel: convInKernel, padding: (convInKernel - 1) / 2 }),
    time_proj: new Timesteps(b0, r.flipSinToCos, r.freqShift),
    time_embedding: TimestepEmbedding.build(w.pp('time_embedding'), b0, r.timeEmbedDim),
    down_blocks: downBlockPlan(r).map((d, i) => getDownBlock(d.type, w.pp('down_blocks').pp(i), d.cfg)),
  };
}

/** UNetMidBlock2DCrossAttn's arguments (one resnet–transformer–resnet layer on the deepest block's channels). */
export function midBlockConfig(r: ResolvedUNetEncoderConfig): BlockConfig {
  const n = r.blockOutChannels.length;
  return {
    ...commonBlockConfig(r),
    numLayers: 1,
    transformerLayersPerBlock: r.transformerLayersPerBlock[n - 1],
    inChannels: r.blockOutChannels[n - 1]!,
    outChannels: r.blockOutChannels[n - 1]!,
    outputScaleFactor: r.midBlockScaleFactor,
    crossAttentionDim: r.crossAttentionDim[n - 1],
    numAttentionHeads: r.numAttentionHeads[n - 1],
  };
}

/** The timestep forms `forward` takes: one number for the batch, one per item, or an f32 tensor ([B] or one value). */
export type Timestep = number | readonly number[] | Tensor;

/** A timestep argument → f32 Tensor [B] (or [1], which broadcasts over the batch where the time embedding is added). */
export function timestepTensor(model: string, device: Device, timestep: Timestep, batch: number): Tensor {
  if (timestep instanceof Tensor) {
    if (timestep.size !== 1 && timestep.size !== batch) throw new ShapeError(`${model}: timestep tensor has ${timestep.size} values for batch ${batch}`, 'timestep');
    if (timestep.dtype !== 'f32') throw new ShapeError(`${model}: timestep tensor must be f32, got ${timestep.dtype}`, 'timestep');
    return timestep.reshape([timestep.size]);
  }
  const values = typeof timestep === 'number' ? new Array<number>(batch).fill(timestep) : [...timestep];
  if (values.length !== batch) throw new InvalidArgumentError(`${model}: ${values.length} timesteps for batch ${batch}`, 'timestep');
  return Tensor.from(device, values, [batch], 'f32');
}

/** `x` in the model's dtype (a cast when it is the other float dtype). */
export function toModelDType(x: Tensor, dtype: 'f32' | 'f16'): Tensor {
  return x.dtype === dtype ? x : cast(x, dtype);
}

/** SiLU(time_embedding(time_proj(t))): the activated time embedding every resnet of the UNet (or ControlNet) adds. */
export function timeEmbeddingAct(timeProj: Timesteps, timeEmbedding: TimestepEmbedding, t: Tensor, dtype: 'f32' | 'f16'): Tensor {
  return silu(timeEmbedding.forward(timeProj.forward(t, dtype)));
}

/**
 * The down path from conv_in's output `h`: → { hidden, skips } with skips = [h, then every resnet/attention/
 * downsampler output] — the UNet's skip connections, and the tensors a ControlNet turns into residuals.
 * Yields between the blocks' resnets and attentions (see Steps).
 */
export function* downBlockSteps(blocks: readonly UNetDownBlock[], h: Tensor, tembAct: Tensor, context: Tensor): Steps<{ hidden: Tensor; skips: Tensor[] }> {
  const skips: Tensor[] = [h];
  for (const block of blocks) {
    const o = yield* block.steps(h, tembAct, context);
    h = o.hidden;
    skips.push(...o.skips);
  }
  return { hidden: h, skips };
}
