/**
 * transformers CLIP's vision tower (v4.36.2 `models/clip/modeling_clip.py`): `CLIPVisionEmbeddings` (the
 * patch-embedding convolution, the class token, position embeddings), `pre_layrnorm` (sic: transformers'
 * spelling, and the checkpoint key), the encoder shared with the text tower (modeling_clip.ts) run without any
 * mask, and `post_layernorm` on the class token (the pooled output). `CLIPVisionModelWithProjection` adds
 * `visual_projection`. Property paths are the checkpoint keys under `vision_model.`.
 */
import { ShapeError, Tensor, f32ArrayToF16, type Device, type TensorData } from '@fewstep/tensor';
import { add, cast, concat, permute, slice } from '@fewstep/kernels';
import { Conv2d } from '../layers/conv2d.js';
import { Linear } from '../layers/linear.js';
import { LayerNorm } from '../layers/norm.js';
import  { disposeAll, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { RandomSource } from '../modeling/random_weights.js';
import type { ConfigInput } from '../modeling/config.js';
import { clipVisionConfig, type CLIPVisionConfig } from './configuration_clip.js';
import { CLIPEncoder, EmbeddingTable, skipPositionIds } from './modeling_clip.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/**
 * Deterministic random weights for a CLIP parameter map (RandomSource), with the two kinds of parameter that have
 * no fan-in to size them: `class_embedding` ([D]) is drawn as a [1, D] row, uniform in ±1/sqrt(D) (transformers
 * initialises it normal with std D^-0.5), and each 0-dim tensor named in `scalars` (`logit_scale`) holds its
 * given value (its init value).
 */
export function clipRandomSource(shapes: ReadonlyMap<string, readonly number[]>, seed = 0, scalars: Readonly<Record<string, number>> = {}): TensorSource {
  const inner = new Map<string, readonly number[]>();
  for (const [k, sh] of shapes) {
    if (Object.hasOwn(scalars, k)) continue;
    inner.set(k, /(^|\.)class_embedding$/.test(k) ? [1, ...sh] : sh);
  }
  const random = new RandomSource(inner, seed);
  return {
    name: random.name,
    keys: () => [...shapes.keys()],
    has: (k) => shapes.has(k),
    shape: (k) => (shapes.has(k) ? [...shapes.get(k)!] : random.shape(k)),
    read: async (k, dtype): Promise<TensorData> => {
      if (!Object.hasOwn(scalars, k)) return random.read(k, dtype);
      const v = Float32Array.of(scalars[k]!);
      return dtype === 'f16' ? f32ArrayToF16(v) : v;
    },
  };
}

/** Patches per side: the stride-`patch_size` convolution's output size (floor, as torch's Conv2d). */
export const clipGridSize = (cfg: Pick<CLIPVisionConfig, 'image_size' | 'patch_size'>): number => Math.floor(cfg.image_size / cfg.patch_size);

export class CLIPVisionEmbeddings {
  private constructor(
    readonly class_embedding: Tensor,
    readonly patch_embedding: Conv2d,
    readonly position_embedding: EmbeddingTable,
  ) {}

  static build(w: WeightScope, cfg: CLIPVisionConfig): CLIPVisionEmbeddings {
    const D = cfg.hidden_size, P = cfg.patch_size;
    const positions = clipGridSize(cfg) ** 2 + 1;
    const cls = w.get('class_embedding', [D]);
    const patch = Conv2d.build(w.pp('patch_embedding'), cfg.num_channels, D, { kernel: P, stride: P, bias: false });
    const pos = EmbeddingTable.build(w.pp('position_embedding'), positions, D);
    skipPositionIds(w, positions);
    return new CLIPVisionEmbeddings(cls, patch, pos);
  }

  /**
   * pixel_values [B, C, S, S] (already the model dtype) → cat([class_embedding, patches]) + position_embedding:
   * [B, 1 + g², D], g = S / patch_size; patches in row-major order (flatten(2).transpose(1, 2)).
   */
  forward(pixelValues: Tensor): Tensor {
    const B = pixelValues.shape[0]!;
    const D = this.class_embedding.shape[0]!;
    const patches = this.patch_embedding.forward(pixelValues); // [B, D, g, g]
    const n = patches.shape[2]! * patches.shape[3]!;
    const tokens = permute(patches.reshape([B, D, n]), [0, 2, 1]); // [B, g², D]
    const cls = this.class_embedding.reshape([1, 1, D]);
    const x = concat([concat(Array<Tensor>(B).fill(cls), 0), tokens], 1); // class_embedding.expand(B, 1, D) first
    return add(x, this.position_embedding.weight.reshape([1, n + 1, D]));
  }
}

export interface CLIPVisionOutput {
  /** The encoder's last output (no post_layernorm, as transformers): [B, 1 + g², D]. */
  lastHiddenState: Tensor;
  /** post_layernorm(last_hidden_state[:, 0]): [B, D]. */
  poolerOutput: Tensor;
}

/** transformers' CLIPVisionTransformer (`vision_model.`). */
export class CLIPVisionTransformer {
  private constructor(
    readonly embeddings: CLIPVisionEmbeddings,
    readonly pre_layrnorm: LayerNorm,
    readonly encoder: CLIPEncoder,
    readonly post_layernorm: LayerNorm,
    readonly config: Readonly<CLIPVisionConfig>,
  ) {}

  static build(w: WeightScope, cfg: Readonly<CLIPVisionConfig>): CLIPVisionTransformer {
    return new CLIPVisionTransformer(
      CLIPVisionEmbeddings.build(w.pp('embeddings'), cfg),
      LayerNorm.build(w.pp('pre_layrnorm'), cfg.hidden_size, cfg.layer_norm_eps),
      CLIPEncoder.build(w.pp('encoder'), cfg),
      LayerNorm.build(w.pp('post_layernorm'), cfg.hidden_size, cfg.layer_norm_eps),
      cfg,
    );
  }

  get dtype(): 'f32' | 'f16' {
    return this.post_layernorm.weight.dtype as 'f32' | 'f16';
  }

  /** pixel_values must be float [batch, num_channels, image_size, image_size] (the position table fixes the size). */
  checkPixels(pixelValues: Tensor, what = 'CLIPVisionModel'): void {
    const { num_channels: C, image_size: S } = this.config;
    const want = `[batch, ${C}, ${S}, ${S}] (vision_config num_channels ${C}, image_size ${S})`;
    if (pixelValues.dtype === 'i32') throw new ShapeError(`${what}: pixel_values must be float (f32 or f16), got i32`, 'pixel_values');
    const [B, c, h, w] = pixelValues.shape;
    if (pixelValues.rank !== 4 || c !== C || h !== S || w !== S || B! < 1) {
      throw new ShapeError(`${what}: pixel_values has shape [${pixelValues.shape.join(', ')}], expected ${want}`, 'pixel_values');
    }
  }

  /** pixel_values [B, C, S, S] (f32 or f16; cast to the model dtype as transformers does) → last_hidden_state and pooled output. */
  forward(pixelValues: Tensor, what = 'CLIPVisionModel'): CLIPVisionOutput {
    this.checkPixels(pixelValues, what);
    return pixelValues.device.scope(() => {
      const px = pixelValues.dtype === this.dtype ? pixelValues : cast(pixelValues, this.dtype);
      const h = this.pre_layrnorm.forward(this.embeddings.forward(px));
      const lastHiddenState = this.encoder.forward(h, { causal: false });
      const [B, , D] = lastHiddenState.shape as [number, number, number];
      const poolerOutput = this.post_layernorm.forward(slice(lastHiddenState, 1, 0, 1).reshape([B, D]));
      return { lastHiddenState, poolerOutput };
    });
  }
}

export interface CLIPVisionModelWithProjectionOutput extends CLIPVisionOutput {
  /** visual_projection(pooler_output): [B, projection_dim], not normalised (transformers' `image_embeds`). */
  imageEmbeds: Tensor;
}

/** transformers `CLIPVisionModelWithProjection`: the vision tower (`vision_model.`) and `visual_projection` (no bias). */
export class CLIPVisionModelWithProjection extends PretrainedModel {
  static readonly modelName = 'CLIPVisionModelWithProjection';

  private constructor(
    readonly config: Readonly<CLIPVisionConfig>,
    readonly vision_model: CLIPVisionTransformer,
    readonly visual_projection: Linear,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {
    super();
  }

  static build(w: WeightScope, config: ConfigInput<CLIPVisionConfig>): CLIPVisionModelWithProjection {
    const cfg = clipVisionConfig(config);
    const first = w.loaded.length;
    const vm = CLIPVisionTransformer.build(w.pp('vision_model'), cfg);
    const proj = Linear.build(w.pp('visual_projection'), cfg.hidden_size, cfg.projection_dim, false);
    return new CLIPVisionModelWithProjection(cfg, vm, proj, w.loaded.slice(first), w.dtype);
  }

  static parseConfig(raw: Record<string, unknown>, where: string): CLIPVisionConfig {
    return clipVisionConfig(raw, where);
  }

  /** clipRandomSource: class_embedding ([D], no fan-in) drawn too. */
  static randomSource(config: ConfigInput<CLIPVisionConfig>, seed = 0): TensorSource {
    return clipRandomSource(CLIPVisionModelWithProjection.describe(config), seed);
  }

  get device(): Device {
    return this.visual_projection.weight.device;
  }

  /** pixel_values [B, C, S, S] → the tower's outputs and `imageEmbeds`. */
  forward(pixelValues: Tensor): CLIPVisionModelWithProjectionOutput {
    return pixelValues.device.scope(() => {
      const out = this.vision_model.forward(pixelValues, 'CLIPVisionModelWithProjection');
      return { ...out, imageEmbeds: this.visual_projection.forward(out.poolerOutput) };
    });
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}
