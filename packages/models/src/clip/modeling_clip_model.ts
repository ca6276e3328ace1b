/**
 * transformers `CLIPModel` (v4.36.2 `models/clip/modeling_clip.py`): the text tower (`text_model.`, causal), the
 * vision tower (`vision_model.`), `text_projection` and `visual_projection` (no bias, both to the top-level
 * projection_dim) and the scalar `logit_scale`. The towers are modeling_clip.ts's and modeling_clip_vision.ts's
 * (one CLIPEncoderLayer for both); the keys are the checkpoint's, e.g. openai/clip-vit-large-patch14's
 * `model.safetensors` loads as is.
 *
 * `getTextFeatures` / `getImageFeatures` are transformers' get_text_features / get_image_features (projected, not
 * normalised, on the GPU in the model dtype). `forward` is CLIPModel.forward: the embeddings normalised, the
 * logits `exp(logit_scale) · text · imageᵀ` — that tail is a few KB and runs on the CPU in float32 (clip_score.ts),
 * its outputs come back as f32 tensors.
 */
import { Tensor, type Device } from '@fewstep/tensor';
import { Linear } from '../layers/linear.js';
import  { disposeAll, type TensorSource, type WeightScope } from '../modeling/weights.js';
import type { ConfigInput } from '../modeling/config.js';
import { clipConfig, type CLIPConfig } from './configuration_clip.js';
import { CLIPTextTransformer } from './modeling_clip.js';
import { CLIPVisionTransformer, clipRandomSource } from './modeling_clip_vision.js';
import { clipLogits, l2NormalizeRows } from './clip_score.js';
import { PretrainedModel } from '../modeling/pretrained.js';

/** CLIPModel.forward's inputs (transformers' argument names in camelCase). */
export interface CLIPModelInputs {
  /** i32 [Bt, L], L ≤ text max_position_embeddings. */
  inputIds: Tensor;
  /** float [Bi, num_channels, image_size, image_size] (the image processor's pixel_values). */
  pixelValues: Tensor;
  /** [Bt, L]: 1 real token, 0 padding (i32, f32 or the model dtype). */
  attentionMask?: Tensor | undefined;
}

/** CLIPModel.forward's outputs (transformers' CLIPOutput). */
export interface CLIPModelOutput {
  /** exp(logit_scale) · image_embeds · text_embedsᵀ: [Bi, Bt], f32. */
  logitsPerImage: Tensor;
  /** Its transpose: [Bt, Bi], f32. */
  logitsPerText: Tensor;
  /** text_projection(text pooler_output), L2-normalised: [Bt, projection_dim], f32. */
  textEmbeds: Tensor;
  /** visual_projection(vision pooler_output), L2-normalised: [Bi, projection_dim], f32. */
  imageEmbeds: Tensor;
  /** The text tower's last_hidden_state at each row's EOS token: [Bt, text hidden_size], model dtype. */
  textPoolerOutput: Tensor;
  /** post_layernorm of the vision tower's class token: [Bi, vision hidden_size], model dtype. */
  visionPoolerOutput: Tensor;
}

export class CLIPModel extends PretrainedModel {
  static readonly modelName = 'CLIPModel';

  private scale: number | undefined;

  private constructor(
    /** config.json's keys with transformers' defaults; `text_config` / `vision_config` resolved likewise. */
    readonly config: Readonly<CLIPConfig>,
    readonly text_model: CLIPTextTransformer,
    readonly vision_model: CLIPVisionTransformer,
    readonly visual_projection: Linear,
    readonly text_projection: Linear,
    /** The learned temperature, a 0-dim tensor; the logits use exp(logit_scale). */
    readonly logit_scale: Tensor,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {
    super();
  }

  /** The one walk: `text_model.*`, `vision_model.*`, `visual_projection.weight`, `text_projection.weight`, `logit_scale`. */
  static build(w: WeightScope, config: ConfigInput<CLIPConfig>): CLIPModel {
    const cfg = clipConfig(config);
    const { text_config: tc, vision_config: vc, projection_dim: P } = cfg;
    const first = w.loaded.length;
    const text = CLIPTextTransformer.build(w.pp('text_model'), tc);
    const vision = CLIPVisionTransformer.build(w.pp('vision_model'), vc);
    const visual = Linear.build(w.pp('visual_projection'), vc.hidden_size, P, false);
    const textProj = Linear.build(w.pp('text_projection'), tc.hidden_size, P, false);
    const scale = w.get('logit_scale', []);
    return new CLIPModel(cfg, text, vision, visual, textProj, scale, w.loaded.slice(first), w.dtype);
  }

  static parseConfig(raw: Record<string, unknown>, where: string): CLIPConfig {
    return clipConfig(raw, where);
  }

  /** The weights `random` loads: clipRandomSource (RandomSource; logit_scale = the config's logit_scale_init_value). */
  static randomSource(config: ConfigInput<CLIPConfig>, seed = 0): TensorSource {
    const cfg = clipConfig(config);
    return clipRandomSource(CLIPModel.describe(cfg), seed, { logit_scale: cfg.logit_scale_init_value });
  }

  get device(): Device {
    return this.logit_scale.device;
  }

  /** transformers' get_text_features: text_projection(pooled EOS token), [B, projection_dim], model dtype, not normalised. */
  async getTextFeatures(inputIds: Tensor, attentionMask?: Tensor): Promise<Tensor> {
    return (await this.textForward(inputIds, attentionMask)).textFeatures;
  }

  /** transformers' get_image_features: visual_projection(pooled class token), [B, projection_dim], model dtype, not normalised. */
  getImageFeatures(pixelValues: Tensor): Tensor {
    return this.imageForward(pixelValues).imageFeatures;
  }

  /** exp(logit_scale) in float32 (read once from the GPU, then cached). */
  async logitScale(): Promise<number> {
    this.scale ??= Math.fround(Math.exp((await this.logit_scale.readF32())[0]!));
    return this.scale;
  }

  /** CLIPModel.forward: both towers, the normalised embeddings and the logits. */
  async forward(inputs: CLIPModelInputs): Promise<CLIPModelOutput> {
    const dev = inputs.inputIds.device;
    this.vision_model.checkPixels(inputs.pixelValues, 'CLIPModel');
    this.text_model.checkIds(inputs.inputIds, 'CLIPModel');
    const scale = await this.logitScale();
    return dev.scope(async () => {
      const text = await this.textForward(inputs.inputIds, inputs.attentionMask);
      const image = this.imageForward(inputs.pixelValues);
      const P = this.config.projection_dim;
      const [bt, bi] = [inputs.inputIds.shape[0]!, inputs.pixelValues.shape[0]!];
      const textEmbeds = l2NormalizeRows({ data: await text.textFeatures.readF32(), shape: [bt, P] }, 'text_embeds');
      const imageEmbeds = l2NormalizeRows({ data: await image.imageFeatures.readF32(), shape: [bi, P] }, 'image_embeds');
      const logits = clipLogits({ data: imageEmbeds, shape: [bi, P] }, { data: textEmbeds, shape: [bt, P] }, scale);
      return {
        logitsPerImage: Tensor.from(dev, logits.logitsPerImage, [bi, bt]),
        logitsPerText: Tensor.from(dev, logits.logitsPerText, [bt, bi]),
        textEmbeds: Tensor.from(dev, textEmbeds, [bt, P]),
        imageEmbeds: Tensor.from(dev, imageEmbeds, [bi, P]),
        textPoolerOutput: text.poolerOutput,
        visionPoolerOutput: image.poolerOutput,
      };
    });
  }

  private async textForward(inputIds: Tensor, attentionMask: Tensor | undefined): Promise<{ poolerOutput: Tensor; textFeatures: Tensor }> {
    return inputIds.device.scope(async () => {
      const out = await this.text_model.run(inputIds, { attentionMask }, 'CLIPModel');
      const poolerOutput = out.poolerOutput!;
      return { poolerOutput, textFeatures: this.text_projection.forward(poolerOutput) };
    });
  }

  private imageForward(pixelValues: Tensor): { poolerOutput: Tensor; imageFeatures: Tensor } {
    return pixelValues.device.scope(() => {
      const { poolerOutput } = this.vision_model.forward(pixelValues, 'CLIPModel');
      return { poolerOutput, imageFeatures: this.visual_projection.forward(poolerOutput) };
    });
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}

