/**
 * diffusers v0.25.1 `EncoderTiny` / `DecoderTiny` (models/autoencoders/vae.py) and
 * `AutoencoderTinyBlock` (models/unet_2d_blocks.py): the TAESD conv stacks. `layers[i]` is the
 * checkpoint's `layers.<i>`; parameterless layers (activations, upsamples) keep their index.
 */
import { UnsupportedError, type Tensor } from '@fewstep/tensor';
import { unary, upsampleNearest2x, type UnaryOp } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import type { WeightScope } from '../modeling/weights.js';
import { ConfigError } from '../errors.js';

/** diffusers `get_activation` names → our unary kernels ("mish" has no kernel). */
const ACTIVATIONS: Record<string, UnaryOp> = { relu: 'relu', silu: 'silu', swish: 'silu', gelu: 'gelu' };

export function tinyActivation(name: string, where: string): UnaryOp {
  const op = ACTIVATIONS[name];
  if (!op) throw new UnsupportedError(`${where}: act_fn "${name}" is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return op;
}

export interface TinyLayer {
  forward(x: Tensor): Tensor;
}

/** A parameterless activation layer (nn.ReLU, nn.SiLU, …). */
export class TinyActivation implements TinyLayer {
  constructor(readonly op: UnaryOp) {}
  forward(x: Tensor): Tensor {
    return unary(this.op, x);
  }
}

/** nn.Upsample(scale_factor=f), mode nearest (the only mode in v0.25.1); f must be a power of 2 (≥ 2). */
export class TinyUpsampleNearest implements TinyLayer {
  constructor(readonly factor: number) {
    if (!(factor >= 2) || !Number.isInteger(Math.log2(factor))) throw new UnsupportedError(`DecoderTiny: upsampling_scaling_factor ${factor} is not supported (powers of 2 only)`);
  }
  forward(x: Tensor): Tensor {
    let y = upsampleNearest2x(x);
    for (let f = this.factor / 2; f > 1; f /= 2) {
      const next = upsampleNearest2x(y);
      y.dispose();
      y = next;
    }
    return y;
  }
}

/** relu(conv(x) + skip(x)), conv = Conv3×3 → act → Conv3×3 → act → Conv3×3; skip = 1×1 conv (no bias) when channels change. */
export class AutoencoderTinyBlock implements TinyLayer {
  private constructor(readonly conv: readonly [Conv2d, null, Conv2d, null, Conv2d], readonly skip: Conv2d | undefined, readonly act: UnaryOp) {}

  static build(w: WeightScope, inChannels: number, outChannels: number, act: UnaryOp): AutoencoderTinyBlock {
    const c = w.pp('conv');
    const conv = [
      Conv2d.build(c.pp(0), inChannels, outChannels, { kernel: 3, padding: 1 }),
      null,
      Conv2d.build(c.pp(2), outChannels, outChannels, { kernel: 3, padding: 1 }),
      null,
      Conv2d.build(c.pp(4), outChannels, outChannels, { kernel: 3, padding: 1 }),
    ] as const;
    const skip = inChannels !== outChannels ? Conv2d.build(w.pp('skip'), inChannels, outChannels, { kernel: 1, bias: false }) : undefined;
    return new AutoencoderTinyBlock(conv, skip, act);
  }

  forward(x: Tensor): Tensor {
    return x.device.scope(() => {
      // ReLU (TAESD's activation) is fused into the convolution; other activations run after it.
      const convAct = (c: Conv2d, v: Tensor) => (this.act === 'relu' ? c.forward(v, { relu: true }) : unary(this.act, c.forward(v)));
      // Each intermediate is freed once the next exists, so its buffer serves the next conv (see runLayers).
      let h = convAct(this.conv[0], x);
      h = freeing(h, convAct(this.conv[2], h));
      // relu(conv(h) + skip(x)): the add and the ReLU ride on the last conv's output pass.
      const skip = this.skip ? this.skip.forward(x) : x;
      h = freeing(h, this.conv[4].forward(h, { residual: skip, relu: true }));
      if (skip !== x) skip.dispose();
      return h;
    });
  }
}

/** `next`, after freeing `prev` (an intermediate no longer needed: its buffer goes back to the pool for the next layer). */
function freeing(prev: Tensor, next: Tensor): Tensor {
  if (next !== prev) prev.dispose();
  return next;
}

/**
 * The layers in order. Intermediates are freed as soon as the next layer's output exists, not at the scope's end:
 * the decoder at 512² then holds a few of its 32 MB (f16) activations at a time, not all of them (~320 MB).
 */
function runLayers(layers: readonly TinyLayer[], x: Tensor): Tensor {
  return x.device.scope(() => {
    let h = x;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!, next = layers[i + 1];
      const prev = h;
      // Conv2d followed by a ReLU layer: one fused pass.
      if (l instanceof Conv2d && next instanceof TinyActivation && next.op === 'relu') {
        h = l.forward(h, { relu: true });
        i++;
      } else h = l.forward(h);
      if (prev !== x) freeing(prev, h);
    }
    return h;
  });
}

export interface EncoderTinyConfig {
  inChannels: number;
  outChannels: number;
  numBlocks: readonly number[];
  blockOutChannels: readonly number[];
  actFn: string;
}

/**
 * layers = [Conv(in→c0), blocks…, Conv(c1→c1, stride 2, no bias), blocks…, …, Conv(c_last→out)].
 * forward maps the image from [-1, 1] to TAESD's [0, 1] first.
 */
export class EncoderTiny {
  private constructor(readonly layers: readonly TinyLayer[]) {}

  static build(w: WeightScope, cfg: EncoderTinyConfig): EncoderTiny {
    if (cfg.numBlocks.length !== cfg.blockOutChannels.length) {
      throw new ConfigError(`EncoderTiny: num_encoder_blocks (${cfg.numBlocks.length}) and encoder_block_out_channels (${cfg.blockOutChannels.length}) differ in length`);
    }
    const act = tinyActivation(cfg.actFn, 'EncoderTiny');
    const lw = w.pp('layers');
    const layers: TinyLayer[] = [];
    for (const [i, n] of cfg.numBlocks.entries()) {
      const ch = cfg.blockOutChannels[i]!;
      if (i === 0) layers.push(Conv2d.build(lw.pp(layers.length), cfg.inChannels, ch, { kernel: 3, padding: 1 }));
      else layers.push(Conv2d.build(lw.pp(layers.length), ch, ch, { kernel: 3, padding: 1, stride: 2, bias: false }));
      for (let j = 0; j < n; j++) layers.push(AutoencoderTinyBlock.build(lw.pp(layers.length), ch, ch, act));
    }
    layers.push(Conv2d.build(lw.pp(layers.length), cfg.blockOutChannels[cfg.blockOutChannels.length - 1]!, cfg.outChannels, { kernel: 3, padding: 1 }));
    return new EncoderTiny(layers);
  }

  /** x [N, C, H, W] in [-1, 1] → latents [N, latent_channels, H/2^(k-1), W/2^(k-1)]. */
  forward(x: Tensor): Tensor {
    return x.device.scope(() => runLayers(this.layers, unary('scale', x, 0.5, 0.5)));
  }
}

export interface DecoderTinyConfig {
  inChannels: number;
  outChannels: number;
  numBlocks: readonly number[];
  blockOutChannels: readonly number[];
  upsamplingScalingFactor: number;
  actFn: string;
}

/**
 * layers = [Conv(in→c0), act, (blocks…, Upsample, Conv(no bias))…, blocks…, Conv(c_last→out, bias)].
 * forward soft-clamps the latents with tanh(z/3)·3 and maps the output from [0, 1] to [-1, 1].
 */
export class DecoderTiny {
  private constructor(readonly layers: readonly TinyLayer[]) {}

  static build(w: WeightScope, cfg: DecoderTinyConfig): DecoderTiny {
    if (cfg.numBlocks.length !== cfg.blockOutChannels.length) {
      throw new ConfigError(`DecoderTiny: num_decoder_blocks (${cfg.numBlocks.length}) and decoder_block_out_channels (${cfg.blockOutChannels.length}) differ in length`);
    }
    const act = tinyActivation(cfg.actFn, 'DecoderTiny');
    const lw = w.pp('layers');
    const layers: TinyLayer[] = [Conv2d.build(lw.pp(0), cfg.inChannels, cfg.blockOutChannels[0]!, { kernel: 3, padding: 1 }), new TinyActivation(act)];
    for (const [i, n] of cfg.numBlocks.entries()) {
      const last = i === cfg.numBlocks.length - 1;
      const ch = cfg.blockOutChannels[i]!;
      for (let j = 0; j < n; j++) layers.push(AutoencoderTinyBlock.build(lw.pp(layers.length), ch, ch, act));
      if (!last) layers.push(new TinyUpsampleNearest(cfg.upsamplingScalingFactor));
      layers.push(Conv2d.build(lw.pp(layers.length), ch, last ? cfg.outChannels : ch, { kernel: 3, padding: 1, bias: last }));
    }
    return new DecoderTiny(layers);
  }

  /** z [N, latent_channels, h, w] → image [N, out_channels, h·f^(k-1), w·f^(k-1)] in [-1, 1] (not clamped). */
  forward(z: Tensor): Tensor {
    return z.device.scope(() => {
      const clamped = unary('scale', unary('tanh', unary('scale', z, 1 / 3)), 3);
      return unary('scale', runLayers(this.layers, clamped), 2, -1);
    });
  }
}
