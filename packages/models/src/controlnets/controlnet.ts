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
import { drain, drainAsync, type Steps } from '../modeling/steps.js';
import { InvalidArgumentError, ShapeError, UnsupportedError, type Tensor } from '@fewstep/tensor';
import { add, concat, scale, silu, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { Timesteps, TimestepEmbedding } from '../blocks/embeddings.js';
import { UNetMidBlock2D, UNetMidBlock2DCrossAttn, type MidBlock2DConfig, type UNetDownBlock } from '../unets/unet_2d_blocks.js';
import {
  UNET_ENCODER_DEFAULTS,
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
} from '../unets/unet_encoder.js';
import  { disposeAll, type WeightScope } from '../modeling/weights.js';
import { unsupportedConfig, withDefaults, type ConfigInput } from '../modeling/config.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/**
 * config.json of a ControlNetModel, every key diffusers v0.25.1 takes (`model.config`: defaults applied). It
 * takes one layers_per_block and one cross_attention_dim for every block.
 */
export interface ControlNetConfig extends UNetEncoderConfig {
  conditioning_channels: number;
  layers_per_block: number;
  cross_attention_dim: number;
  controlnet_conditioning_channel_order: string;
  conditioning_embedding_out_channels: number[] | null;
  global_pool_conditions: boolean;
}

/** diffusers v0.25.1's `ControlNetModel.__init__` defaults. */
export const CONTROLNET_DEFAULTS: ControlNetConfig = {
  ...UNET_ENCODER_DEFAULTS,
  conditioning_channels: 3,
  layers_per_block: 2,
  cross_attention_dim: 1280,
  controlnet_conditioning_channel_order: 'rgb',
  conditioning_embedding_out_channels: [16, 32, 96, 256],
  global_pool_conditions: false,
};

/** A config.json object → `model.config`: diffusers' defaults for the keys it leaves out. */
export function controlNetConfig(raw: ConfigInput<ControlNetConfig>): Readonly<ControlNetConfig> {
  return withDefaults(CONTROLNET_DEFAULTS, raw);
}

/** `model.resolvedConfig`: the config checked, per-block values expanded (layers and cross-attention width alike for every block). */
export interface ResolvedControlNetConfig extends ResolvedUNetEncoderConfig {
  conditioningChannels: number;
  midBlockType: 'UNetMidBlock2DCrossAttn' | 'UNetMidBlock2D';
  /** 'bgr': the control image's channels are flipped before the conditioning embedding. */
  channelOrder: 'rgb' | 'bgr';
  conditioningEmbeddingOutChannels: number[];
}

/** Applies diffusers' defaults and checks; throws one clear error naming the unsupported key. */
export function resolveControlNetConfig(config: ConfigInput<ControlNetConfig>): ResolvedControlNetConfig {
  const c = controlNetConfig(config);
  const unsupported = (key: string, why: string): never => unsupportedConfig('ControlNetModel', c, key, why);
  const enc = resolveUNetEncoderConfig('ControlNetModel', c);
  if (c.global_pool_conditions) unsupported('global_pool_conditions', 'only false is supported');
  const order = c.controlnet_conditioning_channel_order;
  if (order !== 'rgb' && order !== 'bgr') throw new UnsupportedError(`ControlNetModel: unknown controlnet_conditioning_channel_order ${JSON.stringify(order)} (rgb or bgr)`);
  const midType = c.mid_block_type;
  // diffusers raises "unknown mid_block_type" for anything else, null included.
  if (midType !== 'UNetMidBlock2DCrossAttn' && midType !== 'UNetMidBlock2D') throw new UnsupportedError(`ControlNetModel: unknown mid_block_type ${JSON.stringify(midType)} (UNetMidBlock2DCrossAttn or UNetMidBlock2D)`);
  const condOut = c.conditioning_embedding_out_channels;
  if (!Array.isArray(condOut) || condOut.length === 0 || !condOut.every((v) => Number.isInteger(v) && v > 0)) {
    unsupported('conditioning_embedding_out_channels', 'a non-empty list of channel counts is needed');
  }
  if (!Number.isInteger(c.layers_per_block) || c.layers_per_block < 1) unsupported('layers_per_block', 'ControlNetModel takes one positive integer');
  if (typeof c.cross_attention_dim !== 'number') unsupported('cross_attention_dim', 'ControlNetModel takes one integer');
  return { ...enc, conditioningChannels: c.conditioning_channels, midBlockType: midType, channelOrder: order, conditioningEmbeddingOutChannels: condOut! };
}

/** The down and mid block configs and the zero convs' widths; the same arguments diffusers passes. */
function blockPlan(r: ResolvedControlNetConfig) {
  const n = r.blockOutChannels.length;
  const crossMid = midBlockConfig(r);
  const mid: MidBlock2DConfig =
    r.midBlockType === 'UNetMidBlock2D'
      ? // UNetMidBlock2D: num_layers 0, no attention (one resnet).
        { ...crossMid, numLayers: 0, addAttention: false }
      : crossMid;
  // One zero conv per skip tensor of the UNet: conv_in's output, every resnet/attention output, every downsampler.
  const controlnetChannels = [r.blockOutChannels[0]!];
  for (let i = 0; i < n; i++) {
    for (let l = 0; l < r.layersPerBlock[i]!; l++) controlnetChannels.push(r.blockOutChannels[i]!);
    if (i !== n - 1) controlnetChannels.push(r.blockOutChannels[i]!);
  }
  return { mid, controlnetChannels, midChannels: r.blockOutChannels[n - 1]! };
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

export class ControlNetModel extends PretrainedModel {
  static readonly modelName = 'ControlNetModel';

  private constructor(
    /** config.json's keys with diffusers' defaults (see modeling/config.ts). */
    readonly config: Readonly<ControlNetConfig>,
    /** The config checked and expanded per block. */
    readonly resolvedConfig: ResolvedControlNetConfig,
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
  ) {
    super();
  }

  /** The one walk: builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ConfigInput<ControlNetConfig>): ControlNetModel {
    const c = controlNetConfig(config);
    const r = resolveControlNetConfig(c);
    const first = w.loaded.length;
    const b0 = r.blockOutChannels[0]!;
    const plan = blockPlan(r);
    const { conv_in, time_proj, time_embedding, down_blocks: down } = buildEncoderStem(w, r, 3);
    const cond = ControlNetConditioningEmbedding.build(w.pp('controlnet_cond_embedding'), b0, r.conditioningChannels, r.conditioningEmbeddingOutChannels);
    const zeroConvs = plan.controlnetChannels.map((ch, i) => Conv2d.build(w.pp('controlnet_down_blocks').pp(i), ch, ch, { kernel: 1 }));
    const mid = r.midBlockType === 'UNetMidBlock2DCrossAttn' ? UNetMidBlock2DCrossAttn.build(w.pp('mid_block'), plan.mid) : UNetMidBlock2D.build(w.pp('mid_block'), plan.mid);
    const midConv = Conv2d.build(w.pp('controlnet_mid_block'), plan.midChannels, plan.midChannels, { kernel: 1 });
    return new ControlNetModel(c, r, conv_in, time_proj, time_embedding, cond, down, zeroConvs, mid, midConv, w.dtype, w.loaded.slice(first));
  }

  /** Pixels of control image per latent pixel (8 for conditioning_embedding_out_channels of length 4). */
  get conditioningScaleFactor(): number {
    return 2 ** (this.resolvedConfig.conditioningEmbeddingOutChannels.length - 1);
  }

  /**
   * diffusers `ControlNetModel.forward(sample, timestep, encoder_hidden_states, controlnet_cond,
   * conditioning_scale)` with guess_mode off. sample [B, in_channels, h, w]; timestep: one number, one per
   * item, or an f32 Tensor [B]; encoderHiddenStates [B, L, cross_attention_dim]; controlnetCond
   * [B (or 1), conditioning_channels, H, W] in [0, 1] with H, W the latent size × 8 (more exactly: what the
   * embedding's stride-2 convs bring down to h, w). Returns tensors in the model's dtype (the caller owns them).
   */
  forward(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions = {}): ControlNetOutput {
    return drain(this.steps(sample, timestep, encoderHiddenStates, controlnetCond, opts));
  }

  /** `forward`, awaiting `pause()` (when given) after every resnet and attention (streamed weights: see UNet2DConditionModel.forwardAsync). */
  forwardAsync(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions, pause?: (() => Promise<void>) | undefined): Promise<ControlNetOutput> {
    return drainAsync(this.steps(sample, timestep, encoderHiddenStates, controlnetCond, opts), pause);
  }

  private *steps(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor, controlnetCond: Tensor, opts: ControlNetForwardOptions): Steps<ControlNetOutput> {
    const device = sample.device;
    const r = this.resolvedConfig;
    const D = this.config.cross_attention_dim;
    const [B, C, H, W] = sample.shape as [number, number, number, number];
    if (sample.rank !== 4 || C !== r.inChannels) throw new ShapeError(`ControlNetModel: sample must be [B, ${r.inChannels}, H, W], got [${sample.shape.join(', ')}]`, 'sample');
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B || encoderHiddenStates.shape[2] !== D) {
      throw new ShapeError(`ControlNetModel: encoder_hidden_states must be [${B}, L, ${D}], got [${encoderHiddenStates.shape.join(', ')}]`, 'encoder_hidden_states');
    }
    const [cb, cc, ch, cw] = controlnetCond.shape as [number, number, number, number];
    if (controlnetCond.rank !== 4 || cc !== r.conditioningChannels || (cb !== B && cb !== 1)) {
      throw new ShapeError(`ControlNetModel: controlnet_cond must be [${B}, ${r.conditioningChannels}, H, W], got [${controlnetCond.shape.join(', ')}]`, 'controlnet_cond');
    }
    const emb = this.controlnet_cond_embedding;
    if (emb.outputSize(ch) !== H || emb.outputSize(cw) !== W) {
      const f = this.conditioningScaleFactor;
      throw new ShapeError(`ControlNetModel: controlnet_cond is ${ch}×${cw} but the sample is ${H}×${W}; the control image must be ${f}× the latent size (${H * f}×${W * f})`, 'controlnet_cond');
    }
    const s = opts.conditioningScale ?? 1;
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new InvalidArgumentError(`ControlNetModel: conditioningScale must be a finite number, got ${JSON.stringify(s)}`, 'conditioningScale');
    const scope = device.openScope();
    let out: ControlNetOutput | undefined;
    try {
      const x = toModelDType(sample, this.dtype);
      const context = toModelDType(encoderHiddenStates, this.dtype);
      let cond = toModelDType(controlnetCond, this.dtype);
      if (r.channelOrder === 'bgr') cond = concat(Array.from({ length: cc }, (_, i) => slice(cond, 1, cc - 1 - i, cc - i)), 1);

      // 1. time
      const t = timestepTensor('ControlNetModel', device, timestep, B);
      const tembAct = timeEmbeddingAct(this.time_proj, this.time_embedding, t, this.dtype);

      // 2. pre-process: the control image enters once, added to conv_in's output; 3. down
      const down = yield* downBlockSteps(this.down_blocks, add(this.conv_in.forward(x), emb.forward(cond)), tembAct, context);
      let h = down.hidden;

      // 4. mid
      h = this.mid_block instanceof UNetMidBlock2DCrossAttn ? yield* this.mid_block.steps(h, tembAct, context) : this.mid_block.forward(h, tembAct);

      // 5. zero convs, 6. scaling (a plain multiply; × 1 is skipped since it changes nothing)
      const scaled = (y: Tensor) => (s === 1 ? y : scale(y, s));
      const downBlockResSamples = down.skips.map((sk, i) => scaled(this.controlnet_down_blocks[i]!.forward(sk)));
      const midBlockResSample = scaled(this.controlnet_mid_block.forward(h));
      return (out = { downBlockResSamples, midBlockResSample });
    } finally {
      scope.end(out);
    }
  }

  dispose(): void {
    disposeAll(this.weights);
    this.weights.length = 0;
  }
}
