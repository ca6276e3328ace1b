/**
 * diffusers `autoencoders/vae.py`: the KL autoencoder's `Encoder` (image → 2·latent moments) and
 * `Decoder` (latent → image). Resnets without time embedding, eps 1e-6, SiLU; a UNetMidBlock2D
 * with single-head spatial attention between the down/up paths.
 */
import { UnsupportedError, type Tensor } from '@fewstep/tensor';
import { Conv2d } from '../layers/conv2d.js';
import { GroupNorm } from '../layers/norm.js';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, type BlockConfig, type MidBlock2DConfig } from '../unets/unet_2d_blocks.js';
import type { WeightScope } from '../modeling/weights.js';

export interface VaeCoderConfig {
  inChannels: number;
  outChannels: number;
  blockTypes: string[];
  blockOutChannels: number[];
  layersPerBlock: number;
  normNumGroups: number;
  /** Encoder only: output 2·outChannels (mean and logvar). */
  doubleZ?: boolean | undefined;
  midBlockAddAttention?: boolean | undefined;
}

const EPS = 1e-6;

function midConfig(cfg: VaeCoderConfig): MidBlock2DConfig {
  const c = cfg.blockOutChannels[cfg.blockOutChannels.length - 1]!;
  return {
    numLayers: 1,
    inChannels: c,
    outChannels: c,
    tembChannels: null,
    resnetEps: EPS,
    resnetGroups: cfg.normNumGroups,
    outputScaleFactor: 1,
    attentionHeadDim: c,
    addAttention: cfg.midBlockAddAttention ?? true,
  };
}

function encoderBlocks(cfg: VaeCoderConfig): BlockConfig[] {
  let out = cfg.blockOutChannels[0]!;
  return cfg.blockTypes.map((type, i) => {
    if (type !== 'DownEncoderBlock2D') throw new UnsupportedError(`Encoder: down_block_types entry ${JSON.stringify(type)} is not supported (only "DownEncoderBlock2D")`);
    const inCh = out;
    out = cfg.blockOutChannels[i]!;
    return {
      numLayers: cfg.layersPerBlock,
      inChannels: inCh,
      outChannels: out,
      tembChannels: null,
      resnetEps: EPS,
      resnetGroups: cfg.normNumGroups,
      addDownsample: i !== cfg.blockOutChannels.length - 1,
      downsamplePadding: 0,
    };
  });
}

function decoderBlocks(cfg: VaeCoderConfig): BlockConfig[] {
  const rev = [...cfg.blockOutChannels].reverse();
  let out = rev[0]!;
  return cfg.blockTypes.map((type, i) => {
    if (type !== 'UpDecoderBlock2D') throw new UnsupportedError(`Decoder: up_block_types entry ${JSON.stringify(type)} is not supported (only "UpDecoderBlock2D")`);
    const prev = out;
    out = rev[i]!;
    return {
      numLayers: cfg.layersPerBlock + 1,
      inChannels: prev,
      outChannels: out,
      tembChannels: null,
      resnetEps: EPS,
      resnetGroups: cfg.normNumGroups,
      addUpsample: i !== rev.length - 1,
    };
  });
}

export class Encoder {
  private constructor(
    readonly conv_in: Conv2d,
    readonly down_blocks: DownEncoderBlock2D[],
    readonly mid_block: UNetMidBlock2D,
    readonly conv_norm_out: GroupNorm,
    readonly conv_out: Conv2d,
  ) {}

  static build(w: WeightScope, cfg: VaeCoderConfig): Encoder {
    const b = cfg.blockOutChannels, last = b[b.length - 1]!;
    const conv_in = Conv2d.build(w.pp('conv_in'), cfg.inChannels, b[0]!, { kernel: 3, padding: 1 });
    const down: DownEncoderBlock2D[] = [];
    for (const [i, bc] of encoderBlocks(cfg).entries()) down.push(DownEncoderBlock2D.build(w.pp('down_blocks').pp(i), bc));
    const mid = UNetMidBlock2D.build(w.pp('mid_block'), midConfig(cfg));
    const norm = GroupNorm.build(w.pp('conv_norm_out'), cfg.normNumGroups, last, EPS);
    const conv_out = Conv2d.build(w.pp('conv_out'), last, cfg.doubleZ === false ? cfg.outChannels : 2 * cfg.outChannels, { kernel: 3, padding: 1 });
    return new Encoder(conv_in, down, mid, norm, conv_out);
  }

  /** x [B, in, H, W] → [B, 2·latent (or latent), H/2^(n-1), W/2^(n-1)]. */
  forward(x: Tensor): Tensor {
    return x.device.scope(() => {
      let h = this.conv_in.forward(x);
      for (const block of this.down_blocks) h = block.forwardNoSkips(h);
      h = this.mid_block.forward(h);
      return this.conv_out.forward(this.conv_norm_out.forward(h, true));
    });
  }
}

export class Decoder {
  private constructor(
    readonly conv_in: Conv2d,
    readonly mid_block: UNetMidBlock2D,
    readonly up_blocks: UpDecoderBlock2D[],
    readonly conv_norm_out: GroupNorm,
    readonly conv_out: Conv2d,
  ) {}

  static build(w: WeightScope, cfg: VaeCoderConfig): Decoder {
    const b = cfg.blockOutChannels, last = b[b.length - 1]!;
    const conv_in = Conv2d.build(w.pp('conv_in'), cfg.inChannels, last, { kernel: 3, padding: 1 });
    const mid = UNetMidBlock2D.build(w.pp('mid_block'), midConfig(cfg));
    const up: UpDecoderBlock2D[] = [];
    for (const [i, bc] of decoderBlocks(cfg).entries()) up.push(UpDecoderBlock2D.build(w.pp('up_blocks').pp(i), bc));
    const norm = GroupNorm.build(w.pp('conv_norm_out'), cfg.normNumGroups, b[0]!, EPS);
    const conv_out = Conv2d.build(w.pp('conv_out'), b[0]!, cfg.outChannels, { kernel: 3, padding: 1 });
    return new Decoder(conv_in, mid, up, norm, conv_out);
  }

  /** z [B, latent, h, w] → [B, out, h·2^(n-1), w·2^(n-1)]. */
  forward(z: Tensor): Tensor {
    return z.device.scope(() => {
      let h = this.conv_in.forward(z);
      h = this.mid_block.forward(h);
      for (const block of this.up_blocks) h = block.forward(h, []);
      return this.conv_out.forward(this.conv_norm_out.forward(h, true));
    });
  }
}
