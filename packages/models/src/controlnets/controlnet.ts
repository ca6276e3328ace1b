/**
 * diffusers `controlnet.py` (v0.25.1): `ControlNetConditioningEmbedding` and `ControlNetModel`, for the SD1.x /
 * SD2.x / SDXS family (IDKiro/sdxs-512-dreamshaper-sketch). The model is a copy of the UNet's encoder half —
 * conv_in, time embedding, the same down blocks and a mid block — that also sees a control image through a
 * small conv stack, and emits one residual per UNet skip tensor (through zero-initialised 1×1 convs,
 * `controlnet_down_blocks.<i>`) plus one for the mid block (`controlnet_mid_block`). Module and weight names are
 * diffusers' own, so a `diffusion_pytorch_model.safetensors` loads by key.
 *
 * Not supported (one clear error at load): class/addition embeddings, encoder_hid_proj, global_pool_conditions,
 * and the forward's guess_mode (the pipeline never enables it).
 */
import { Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { add, cast, concat, scale, silu, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { Timesteps, TimestepEmbedding } from '../blocks/embeddings.js';
import {
  getDownBlock,
  UNetMidBlock2D,
  UNetMidBlock2DCrossAttn,
  type BlockConfig,
  type MidBlock2DConfig,
  type UNetDownBlock,
} from '../unets/unet_2d_blocks.js';
import { countParameters, disposeAll, loadModel, recordParameters, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { RandomSource, type RandomWeightsOptions } from '../modeling/random_weights.js';
import { loadFromFolder, loadFromSource, type FromFolderOptions, type FromSourceOptions } from '../modeling/component.js';

type PerBlock<T> = T | T[];

/** config.json of a ControlNetModel; keys verbatim, every one optional (diffusers defaults). */
export interface ControlNetConfig {
  in_channels?: number | undefined;
  conditioning_channels?: number | undefined;
  flip_sin_to_cos?: boolean | undefined;
  freq_shift?: number | undefined;
  down_block_types?: string[] | undefined;
  mid_block_type?: string | null | undefined;
  only_cross_attention?: PerBlock<boolean> | undefined;
  block_out_channels?: number[] | undefined;
  layers_per_block?: number | undefined;
  downsample_padding?: number | undefined;
  mid_block_scale_factor?: number | undefined;
  act_fn?: string | undefined;
  norm_num_groups?: number | null | undefined;
  norm_eps?: number | undefined;
  cross_attention_dim?: number | undefined;
  transformer_layers_per_block?: PerBlock<number | number[]> | undefined;
  encoder_hid_dim?: number | null | undefined;
  encoder_hid_dim_type?: string | null | undefined;
  attention_head_dim?: PerBlock<number | null> | undefined;
  num_attention_heads?: PerBlock<number> | null | undefined;
  use_linear_projection?: boolean | undefined;
  class_embed_type?: string | null | undefined;
  addition_embed_type?: string | null | undefined;
  addition_time_embed_dim?: number | null | undefined;
  num_class_embeds?: number | null | undefined;
  upcast_attention?: boolean | undefined;
  resnet_time_scale_shift?: string | undefined;
  projection_class_embeddings_input_dim?: number | null | undefined;
  controlnet_conditioning_channel_order?: string | undefined;
  conditioning_embedding_out_channels?: number[] | null | undefined;
  global_pool_conditions?: boolean | undefined;
  addition_embed_type_num_heads?: number | undefined;
  [extra: string]: unknown;
}

/** The config with defaults applied and per-block values expanded to lists. */
export interface ResolvedControlNetConfig {
  inChannels: number;
  conditioningChannels: number;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: string[];
  midBlockType: 'UNetMidBlock2DCrossAttn' | 'UNetMidBlock2D';
  blockOutChannels: number[];
  onlyCrossAttention: boolean[];
  /** One value for every down block (diffusers' ControlNetModel takes an int). */
  layersPerBlock: number;
  transformerLayersPerBlock: (number | number[])[];
  /** Head COUNT per down block (num_attention_heads, else attention_head_dim: diffusers' naming quirk). */
  numAttentionHeads: number[];
  crossAttentionDim: number;
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  useLinearProjection: boolean;
  timeEmbedDim: number;
  /** 'bgr': the control image's channels are flipped before the conditioning embedding. */
  channelOrder: 'rgb' | 'bgr';
  conditioningEmbeddingOutChannels: number[];
}

const DEFAULTS = {
  in_channels: 4,
  conditioning_channels: 3,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  attention_head_dim: 8,
  conditioning_embedding_out_channels: [16, 32, 96, 256],
};

/** Applies diffusers' defaults and checks; throws one clear error naming the unsupported key. */
export function resolveControlNetConfig(config: ControlNetConfig): ResolvedControlNetConfig {
  const c = config;
  const unsupported = (key: string, why: string): never => {
    throw new Error(`ControlNetModel: config ${key} = ${JSON.stringify(c[key])} is not supported by fewstep (${why})`);
  };
  const isSet = (key: string) => c[key] !== undefined && c[key] !== null;
  for (const key of ['class_embed_type', 'num_class_embeds', 'addition_embed_type', 'encoder_hid_dim', 'encoder_hid_dim_type', 'projection_class_embeddings_input_dim']) {
    if (isSet(key)) unsupported(key, 'only null is supported');
  }
  if (c.global_pool_conditions) unsupported('global_pool_conditions', 'only false is supported');
  if ((c.resnet_time_scale_shift ?? 'default') !== 'default') unsupported('resnet_time_scale_shift', 'only "default" is supported');
  if (!['silu', 'swish'].includes(c.act_fn ?? 'silu')) unsupported('act_fn', 'only "silu" is supported');
  if (c.norm_num_groups === null) unsupported('norm_num_groups', 'null is not supported');
  const order = c.controlnet_conditioning_channel_order ?? 'rgb';
  if (order !== 'rgb' && order !== 'bgr') throw new Error(`ControlNetModel: unknown controlnet_conditioning_channel_order ${JSON.stringify(order)} (rgb or bgr)`);
  const midType = c.mid_block_type === undefined ? DEFAULTS.mid_block_type : c.mid_block_type;
  // diffusers raises "unknown mid_block_type" for anything else, null included.
  if (midType !== 'UNetMidBlock2DCrossAttn' && midType !== 'UNetMidBlock2D') throw new Error(`ControlNetModel: unknown mid_block_type ${JSON.stringify(midType)} (UNetMidBlock2DCrossAttn or UNetMidBlock2D)`);
  const condOut = c.conditioning_embedding_out_channels === undefined ? DEFAULTS.conditioning_embedding_out_channels : c.conditioning_embedding_out_channels;
  if (!Array.isArray(condOut) || condOut.length === 0 || !condOut.every((v) => Number.isInteger(v) && v > 0)) {
    unsupported('conditioning_embedding_out_channels', 'a non-empty list of channel counts is needed');
  }

  const down = c.down_block_types ?? DEFAULTS.down_block_types;
  const blockOut = c.block_out_channels ?? DEFAULTS.block_out_channels;
  const n = down.length;
  if (blockOut.length !== n) throw new Error(`Must provide the same number of \`block_out_channels\` as \`down_block_types\`. \`block_out_channels\`: ${JSON.stringify(blockOut)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
  const perBlock = <T>(key: string, v: T | T[]): T[] => {
    if (!Array.isArray(v)) return new Array<T>(n).fill(v);
    if (v.length !== n) throw new Error(`Must provide the same number of \`${key}\` as \`down_block_types\`. \`${key}\`: ${JSON.stringify(v)}. \`down_block_types\`: ${JSON.stringify(down)}.`);
    return v;
  };
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the historic misnomer).
  const headsKey = c.num_attention_heads !== undefined && c.num_attention_heads !== null ? 'num_attention_heads' : 'attention_head_dim';
  const heads = perBlock(headsKey, (headsKey === 'num_attention_heads' ? c.num_attention_heads : c.attention_head_dim ?? DEFAULTS.attention_head_dim) as PerBlock<number | null>);
  if (heads.some((h) => typeof h !== 'number')) unsupported(headsKey, 'every entry must be a number (the head count)');
  const layers = c.layers_per_block ?? DEFAULTS.layers_per_block;
  if (!Number.isInteger(layers) || layers < 1) unsupported('layers_per_block', 'ControlNetModel takes one positive integer');
  const cross = c.cross_attention_dim ?? DEFAULTS.cross_attention_dim;
  if (typeof cross !== 'number') unsupported('cross_attention_dim', 'ControlNetModel takes one integer');
  const tl = c.transformer_layers_per_block ?? DEFAULTS.transformer_layers_per_block;
  return {
    inChannels: c.in_channels ?? DEFAULTS.in_channels,
    conditioningChannels: c.conditioning_channels ?? DEFAULTS.conditioning_channels,
    flipSinToCos: c.flip_sin_to_cos ?? DEFAULTS.flip_sin_to_cos,
    freqShift: c.freq_shift ?? DEFAULTS.freq_shift,
    downBlockTypes: down,
    midBlockType: midType,
    blockOutChannels: blockOut,
    onlyCrossAttention: perBlock('only_cross_attention', c.only_cross_attention ?? false),
    layersPerBlock: layers,
    transformerLayersPerBlock: Array.isArray(tl) ? perBlock('transformer_layers_per_block', tl as (number | number[])[]) : new Array<number>(n).fill(tl),
    numAttentionHeads: heads as number[],
    crossAttentionDim: cross,
    downsamplePadding: c.downsample_padding ?? DEFAULTS.downsample_padding,
    midBlockScaleFactor: c.mid_block_scale_factor ?? DEFAULTS.mid_block_scale_factor,
    normNumGroups: c.norm_num_groups ?? DEFAULTS.norm_num_groups,
    normEps: c.norm_eps ?? DEFAULTS.norm_eps,
    useLinearProjection: c.use_linear_projection ?? false,
    timeEmbedDim: blockOut[0]! * 4,
    channelOrder: order,
    conditioningEmbeddingOutChannels: condOut!,
  };
}

/** The down and mid block configs; the same arguments diffusers passes. */
function blockPlan(r: ResolvedControlNetConfig) {
  const n = r.blockOutChannels.length;
  const common = { tembChannels: r.timeEmbedDim, resnetEps: r.normEps, resnetGroups: r.normNumGroups, useLinearProjection: r.useLinearProjection, crossAttentionDim: r.crossAttentionDim };
  const down: { type: string; cfg: BlockConfig }[] = [];
  let out = r.blockOutChannels[0]!;
  for (let i = 0; i < n; i++) {
    const inCh = out;
    out = r.blockOutChannels[i]!;
    down.push({
      type: r.downBlockTypes[i]!,
      cfg: {
        ...common,
        numLayers: r.layersPerBlock,
        transformerLayersPerBlock: r.transformerLayersPerBlock[i],
        inChannels: inCh,
        outChannels: out,
        addDownsample: i !== n - 1,
        downsamplePadding: r.downsamplePadding,
        numAttentionHeads: r.numAttentionHeads[i],
        onlyCrossAttention: r.onlyCrossAttention[i],
      },
    });
  }
  const last = r.blockOutChannels[n - 1]!;
  const mid: MidBlock2DConfig = {
    ...common,
    // UNetMidBlock2DCrossAttn: one resnet–transformer–resnet layer; UNetMidBlock2D: num_layers 0, no attention (one resnet).
    numLayers: r.midBlockType === 'UNetMidBlock2D' ? 0 : 1,
    addAttention: r.midBlockType !== 'UNetMidBlock2D',
    transformerLayersPerBlock: r.transformerLayersPerBlock[n - 1],
    inChannels: last,
    outChannels: last,
    outputScaleFactor: r.midBlockScaleFactor,
    numAttentionHeads: r.numAttentionHeads[n - 1],
  };
  // One zero conv per skip tensor of the UNet: conv_in's output, every resnet/attention output, every downsampler.
  const controlnetChannels = [r.blockOutChannels[0]!];
  for (let i = 0; i < n; i++) {
    for (let l = 0; l < r.layersPerBlock; l++) controlnetChannels.push(r.blockOutChannels[i]!);
    if (i !== n - 1) controlnetChannels.push(r.blockOutChannels[i]!);
  }
  return { down, mid, controlnetChannels, midChannels: last };
}

/**
 * The control image encoder: conv_in 3×3 → SiLU, then per step of `blockOutChannels` a 3×3 conv and a 3×3
 * stride-2 conv (each → SiLU), then conv_out 3×3 (zero-initialised in training; no activation). Downsamples
 * by 2^(len − 1): 8 for the usual [16, 32, 96, 256], from image to latent resolution.
 */
export class ControlNetConditioningEmbedding {
  private constructor(readonly conv_in: Conv2d, readonly blocks: Conv2d[], readonly conv_out: Conv2d) {}

  static build(w: WeightScope, conditioningEmbeddingChannels: number, conditioningChannels: number, blockOutChannels: readonly number[]): ControlNetConditioningEmbedding {
    const conv_in = Conv2d.build(w.pp('conv_in'), conditioningChannels, blockOutChannels[0]!, { kernel: 3, padding: 1 });
    const blocks: Conv2d[] = [];
    for (let i = 0; i < blockOutChannels.length - 1; i++) {
      const cin = blockOutChannels[i]!, cout = blockOutChannels[i + 1]!;
      blocks.push(Conv2d.build(w.pp('blocks').pp(2 * i), cin, cin, { kernel: 3, padding: 1 }));
      blocks.push(Conv2d.build(w.pp('blocks').pp(2 * i + 1), cin, cout, { kernel: 3, padding: 1, stride: 2 }));
    }
    const conv_out = Conv2d.build(w.pp('conv_out'), blockOutChannels[blockOutChannels.length - 1]!, conditioningEmbeddingChannels, { kernel: 3, padding: 1 });
    return new ControlNetConditioningEmbedding(conv_in, blocks, conv_out);
  }

  /** Spatial size of the embedding for a control image of size `n` (each stride-2 conv, padding 1: ⌈n/2⌉). */
  outputSize(n: number): number {
    for (let i = 1; i < this.blocks.length; i += 2) n = Math.ceil(n / 2);
    return n;
  }

  forward(x: Tensor): Tensor {
    return x.device.scope(() => {
      let h = silu(this.conv_in.forward(x));
      for (const block of this.blocks) h = silu(block.forward(h));
      return this.conv_out.forward(h);
    });
  }
}

export interface ControlNetForwardOptions {
  /** diffusers `conditioning_scale`: every residual is multiplied by it. Default 1. */
  conditioningScale?: number | undefined;
}

/** diffusers `ControlNetOutput`: residuals for the UNet's `down_block_additional_residuals` / `mid_block_additional_residual`. */
export interface ControlNetOutput {
  downBlockResSamples: Tensor[];
  midBlockResSample: Tensor;
}

export class ControlNetModel {
  private constructor(
    readonly config: ResolvedControlNetConfig,
    readonly conv_in: Conv2d,
    readonly time_proj: Timesteps,
    readonly time_embedding: TimestepEmbedding,
    readonly controlnet_cond_embedding: ControlNetConditioningEmbedding,
    readonly down_blocks: UNetDownBlock[],
    readonly controlnet_down_blocks: Conv2d[],
    readonly mid_block: UNetMidBlock2DCrossAttn | UNetMidBlock2D,
    readonly controlnet_mid_block: Conv2d,
    readonly dtype: 'f32' | 'f16',
    private readonly weights: Tensor[],
  ) {}

  /** The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ControlNetConfig): ControlNetModel {
    const r = resolveControlNetConfig(config);
    const first = w.loaded.length;
    const b0 = r.blockOutChannels[0]!;
    const plan = blockPlan(r);
    const conv_in = Conv2d.build(w.pp('conv_in'), r.inChannels, b0, { kernel: 3, padding: 1 });
    const time_embedding = TimestepEmbedding.build(w.pp('time_embedding'), b0, r.timeEmbedDim);
    const cond = ControlNetConditioningEmbedding.build(w.pp('controlnet_cond_embedding'), b0, r.conditioningChannels, r.conditioningEmbeddingOutChannels);
    const down = plan.down.map((d, i) => getDownBlock(d.type, w.pp('down_blocks').pp(i), d.cfg));
    const zeroConvs = plan.controlnetChannels.map((ch, i) => Conv2d.build(w.pp('controlnet_down_blocks').pp(i), ch, ch, { kernel: 1 }));
    const mid = r.midBlockType === 'UNetMidBlock2DCrossAttn' ? UNetMidBlock2DCrossAttn.build(w.pp('mid_block'), plan.mid) : UNetMidBlock2D.build(w.pp('mid_block'), plan.mid);
    const midConv = Conv2d.build(w.pp('controlnet_mid_block'), plan.midChannels, plan.midChannels, { kernel: 1 });
    return new ControlNetModel(r, conv_in, new Timesteps(b0, r.flipSinToCos, r.freqShift), time_embedding, cond, down, zeroConvs, mid, midConv, w.dtype, w.loaded.slice(first));
  }

  /** Builds from a loading scope (keys relative to it), checks that every key was used, then reads the weights. */
  static load(w: WeightScope, config: ControlNetConfig): Promise<ControlNetModel> {
    return loadModel(w, 'ControlNetModel', (s) => ControlNetModel.build(s, config));
  }

  /** Every parameter key → shape the config implies (diffusers state-dict names): `build` with a recording scope. */
  static describe(config: ControlNetConfig): Map<string, number[]> {
    return recordParameters((w) => ControlNetModel.build(w, config));
  }

  /** Number of parameters the config implies. */
  static parameterCount(config: ControlNetConfig): number {
    return countParameters(ControlNetModel.describe(config));
  }

  /** Loads a diffusers `controlnet/` folder (config.json + weights). */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<ControlNetModel> {
    return loadFromFolder<ControlNetConfig, ControlNetModel>(io, dir, opts.variant, (src, config) => ControlNetModel.fromSource(src, config, device, opts));
  }

  /** Loads from any TensorSource holding exactly this model's keys. */
  static async fromSource(src: TensorSource, config: ControlNetConfig, device: Device, opts: FromSourceOptions = {}): Promise<ControlNetModel> {
    return loadFromSource('ControlNetModel', src, device, opts, (w) => ControlNetModel.build(w, config));
  }

  /** A ControlNet with deterministic random weights (benchmarks, memory tests). */
  static random(config: ControlNetConfig, device: Device, opts: RandomWeightsOptions = {}): Promise<ControlNetModel> {
    return ControlNetModel.fromSource(new RandomSource(ControlNetModel.describe(config), opts.seed ?? 0), config, device, opts);
  }

  /** Pixels of control image per latent pixel (8 for conditioning_embedding_out_channels of length 4). */
  get conditioningScaleFactor(): number {
    return 2 ** (this.config.conditioningEmbeddingOutChannels.length - 1);
  }

  /**
   * diffusers `ControlNetModel.forward(sample, timestep, encoder_hidden_states, controlnet_cond,
   * conditioning_scale)` with guess_mode off. sample [B, in_channels, h, w]; timestep: one number, one per
   * item, or an f32 Tensor [B]; encoderHiddenStates [B, L, cross_attention_dim]; controlnetCond
   * [B (or 1), conditioning_channels, H, W] in [0, 1] with H, W the latent size × 8 (more exactly: what the
   * embedding's stride-2 convs bring down to h, w). Returns tensors in the model's dtype (the caller owns them).
   */
  forward(sample: Tensor, timestep: number | readonly number[] | Tensor, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions = {}): ControlNetOutput {
    const device = sample.device;
    const r = this.config;
    const [B, C, H, W] = sample.shape as [number, number, number, number];
    if (sample.rank !== 4 || C !== r.inChannels) throw new Error(`ControlNetModel: sample must be [B, ${r.inChannels}, H, W], got [${sample.shape.join(', ')}]`);
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B || encoderHiddenStates.shape[2] !== r.crossAttentionDim) {
      throw new Error(`ControlNetModel: encoder_hidden_states must be [${B}, L, ${r.crossAttentionDim}], got [${encoderHiddenStates.shape.join(', ')}]`);
    }
    const [cb, cc, ch, cw] = controlnetCond.shape as [number, number, number, number];
    if (controlnetCond.rank !== 4 || cc !== r.conditioningChannels || (cb !== B && cb !== 1)) {
      throw new Error(`ControlNetModel: controlnet_cond must be [${B}, ${r.conditioningChannels}, H, W], got [${controlnetCond.shape.join(', ')}]`);
    }
    const emb = this.controlnet_cond_embedding;
    if (emb.outputSize(ch) !== H || emb.outputSize(cw) !== W) {
      const f = this.conditioningScaleFactor;
      throw new Error(`ControlNetModel: controlnet_cond is ${ch}×${cw} but the sample is ${H}×${W}; the control image must be ${f}× the latent size (${H * f}×${W * f})`);
    }
    const s = opts.conditioningScale ?? 1;
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`ControlNetModel: conditioningScale must be a finite number, got ${JSON.stringify(s)}`);
    return device.scope(() => {
      const x = this.toModelDType(sample);
      const context = this.toModelDType(encoderHiddenStates);
      let cond = this.toModelDType(controlnetCond);
      if (r.channelOrder === 'bgr') cond = concat(Array.from({ length: cc }, (_, i) => slice(cond, 1, cc - 1 - i, cc - i)), 1);

      // 1. time
      const t = timestepTensor(device, timestep, B);
      const tembAct = silu(this.time_embedding.forward(this.time_proj.forward(t, this.dtype)));

      // 2. pre-process: the control image enters once, added to conv_in's output.
      let h = add(this.conv_in.forward(x), emb.forward(cond));

      // 3. down
      const skips: Tensor[] = [h];
      for (const block of this.down_blocks) {
        const o = block.forward(h, tembAct, context);
        h = o.hidden;
        skips.push(...o.skips);
      }

      // 4. mid
      h = this.mid_block instanceof UNetMidBlock2DCrossAttn ? this.mid_block.forward(h, tembAct, context) : this.mid_block.forward(h, tembAct);

      // 5. zero convs, 6. scaling (a plain multiply; × 1 is skipped since it changes nothing)
      const scaled = (y: Tensor) => (s === 1 ? y : scale(y, s));
      const downBlockResSamples = skips.map((sk, i) => scaled(this.controlnet_down_blocks[i]!.forward(sk)));
      const midBlockResSample = scaled(this.controlnet_mid_block.forward(h));
      return { downBlockResSamples, midBlockResSample };
    });
  }

  private toModelDType(x: Tensor): Tensor {
    return x.dtype === this.dtype ? x : cast(x, this.dtype);
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}

/** One number for the batch, one per item, or an f32 tensor → f32 Tensor [B] (as the UNet takes it). */
function timestepTensor(device: Device, timestep: number | readonly number[] | Tensor, batch: number): Tensor {
  if (timestep instanceof Tensor) {
    if (timestep.size !== 1 && timestep.size !== batch) throw new Error(`ControlNetModel: timestep tensor has ${timestep.size} values for batch ${batch}`);
    if (timestep.dtype !== 'f32') throw new Error(`ControlNetModel: timestep tensor must be f32, got ${timestep.dtype}`);
    // A single value broadcasts over the batch where the time embedding is added.
    return timestep.reshape([timestep.size]);
  }
  const values = typeof timestep === 'number' ? new Array<number>(batch).fill(timestep) : [...timestep];
  if (values.length !== batch) throw new Error(`ControlNetModel: ${values.length} timesteps for batch ${batch}`);
  return Tensor.from(device, values, [batch], 'f32');
}
