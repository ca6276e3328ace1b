/**
 * diffusers `resnet.py`: `ResnetBlock2D` with the default `time_embedding_norm` ("default": the
 * projected time embedding is added after conv1), pre-norm, SiLU.
 */
import { InvalidArgumentError, type Tensor } from '@fewstep/tensor';
import { add, binary, scale } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { GroupNorm } from '../layers/norm.js';
import { Linear } from '../layers/linear.js';
import type { WeightScope } from '../modeling/weights.js';

export interface ResnetBlock2DConfig {
  inChannels: number;
  /** Defaults to inChannels. */
  outChannels?: number | undefined;
  /** null: no time embedding (VAE). */
  tembChannels: number | null;
  groups: number;
  eps: number;
  outputScaleFactor?: number | undefined;
}

export class ResnetBlock2D {
  private constructor(
    readonly norm1: GroupNorm,
    readonly conv1: Conv2d,
    readonly time_emb_proj: Linear | undefined,
    readonly norm2: GroupNorm,
    readonly conv2: Conv2d,
    readonly conv_shortcut: Conv2d | undefined,
    readonly outputScaleFactor: number,
  ) {}

  static build(w: WeightScope, cfg: ResnetBlock2DConfig): ResnetBlock2D {
    const cin = cfg.inChannels, cout = cfg.outChannels ?? cfg.inChannels;
    return new ResnetBlock2D(
      GroupNorm.build(w.pp('norm1'), cfg.groups, cin, cfg.eps),
      Conv2d.build(w.pp('conv1'), cin, cout, { kernel: 3, padding: 1 }),
      cfg.tembChannels === null ? undefined : Linear.build(w.pp('time_emb_proj'), cfg.tembChannels, cout),
      GroupNorm.build(w.pp('norm2'), cfg.groups, cout, cfg.eps),
      Conv2d.build(w.pp('conv2'), cout, cout, { kernel: 3, padding: 1 }),
      cin !== cout ? Conv2d.build(w.pp('conv_shortcut'), cin, cout, { kernel: 1 }) : undefined,
      cfg.outputScaleFactor ?? 1,
    );
  }

  /**
   * x [B, Cin, H, W]; `tembAct` = SiLU(temb) [B or 1, temb_channels] — the activation every resnet
   * applies to the shared time embedding, computed once by the caller.
   */
  forward(x: Tensor, tembAct?: Tensor): Tensor {
    return x.device.scope(() => {
      let h = this.conv1.forward(this.norm1.forward(x, true));
      if (this.time_emb_proj) {
        if (!tembAct) throw new InvalidArgumentError('ResnetBlock2D: this block has time_emb_proj but no time embedding was given');
        const t = this.time_emb_proj.forward(tembAct);
        h = add(h, t.reshape([t.shape[0]!, t.shape[1]!, 1, 1]));
      }
      h = this.conv2.forward(this.norm2.forward(h, true));
      const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
      const out = binary('add', shortcut, h);
      return this.outputScaleFactor === 1 ? out : scale(out, 1 / this.outputScaleFactor);
    });
  }
}
