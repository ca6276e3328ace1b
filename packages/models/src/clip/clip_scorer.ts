/**
 * `CLIPScorer`: torchmetrics' CLIPScore (`torchmetrics.multimodal.CLIPScore`, the `_get_clip_score` path) with
 * a transformers CLIPModel folder — the tokenizer, the image processor and the model from one directory (as
 * openai/clip-vit-large-patch14 ships them: config.json, model.safetensors, vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json, preprocessor_config.json):
 *
 *  1. images → CLIPImageProcessor → pixel_values → get_image_features;
 *  2. prompts → CLIPTokenizer with `padding=True` (to the longest prompt, attention_mask 0 on padding) and no
 *     truncation, then cut to the text tower's max_position_embeddings (77) as torchmetrics does — a prompt
 *     longer than that loses its EOS token, and the pooled token is then the one transformers picks;
 *  3. score[i] = 100 · max(cos(image_features[i], text_features[i]), 0) (clip_score.ts).
 *
 * Padding to the longest prompt or to 77 gives the same features (the text tower is causal and the EOS token
 * comes before any padding), so batches are split freely (`batchSize`).
 */
import { InvalidArgumentError, Tensor, type Device, type FileSource } from '@fewstep/tensor';
import { readConfig, type FromFolderOptions } from '../modeling/component.js';
import { ModelFolderError } from '../errors.js';
import type { RGBImage } from '../image/rgb_image.js';
import { CLIPImageProcessor } from './image_processing_clip.js';
import { CLIPTokenizer } from './tokenization_clip.js';
import { CLIPModel } from './modeling_clip_model.js';
import { clipConfig } from './configuration_clip.js';
import { clipScore } from './clip_score.js';

export interface CLIPScorerOptions extends FromFolderOptions {
  /** Images (and prompts) per forward pass; default 16. */
  batchSize?: number | undefined;
}

/** Token ids of a batch of prompts as torchmetrics feeds them: [batch, length], row-major. */
export interface CLIPScoreTokens {
  inputIds: Int32Array;
  attentionMask: Int32Array;
  shape: [number, number];
}

export class CLIPScorer {
  readonly batchSize: number;

  constructor(
    readonly model: CLIPModel,
    readonly tokenizer: CLIPTokenizer,
    readonly processor: CLIPImageProcessor,
    opts: { batchSize?: number | undefined } = {},
  ) {
    const b = opts.batchSize ?? 16;
    if (!Number.isInteger(b) || b < 1) throw new InvalidArgumentError(`CLIPScorer: batchSize must be a positive integer, got ${b}`, 'batchSize');
    this.batchSize = b;
  }

  /**
   * Loads the tokenizer, the image processor and the CLIPModel of one folder. The text files are checked before
   * any weight is read: a folder without them is a ModelFolderError naming what is missing.
   */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: CLIPScorerOptions = {}): Promise<CLIPScorer> {
    clipConfig(await readConfig(io, dir), io.join(dir, 'config.json')); // a bad config.json fails before anything else is read
    const pre = [io.join(dir, 'preprocessor_config.json'), io.join(dir, 'feature_extractor', 'preprocessor_config.json')];
    if (!(await io.exists(pre[0]!)) && !(await io.exists(pre[1]!))) {
      throw new ModelFolderError(`${dir}: no preprocessor_config.json (CLIP score needs the CLIPModel folder's image processor config, as openai/clip-vit-large-patch14 has it)`, dir);
    }
    const tokenizer = await CLIPTokenizer.fromFolder(io, dir);
    const processor = await CLIPImageProcessor.fromFolder(io, dir);
    const model = await CLIPModel.fromFolder(io, dir, device, opts);
    return new CLIPScorer(model, tokenizer, processor, opts);
  }

  /** `tokenizer(prompts, padding=True)`, then cut to max_position_embeddings (torchmetrics' truncation). */
  tokenize(prompts: readonly string[]): CLIPScoreTokens {
    if (prompts.length === 0) throw new InvalidArgumentError('CLIPScorer: no prompts', 'prompts');
    const max = this.model.config.text_config.max_position_embeddings;
    const rows = prompts.map((p, i) => {
      if (typeof p !== 'string') throw new InvalidArgumentError(`CLIPScorer: prompts[${i}] is not a string`, 'prompts');
      return this.tokenizer.encodeUntruncated(p).slice(0, max);
    });
    const L = Math.max(...rows.map((r) => r.length));
    const inputIds = new Int32Array(rows.length * L).fill(this.tokenizer.padTokenId);
    const attentionMask = new Int32Array(rows.length * L);
    rows.forEach((r, b) => {
      inputIds.set(r, b * L);
      attentionMask.fill(1, b * L, b * L + r.length);
    });
    return { inputIds, attentionMask, shape: [rows.length, L] };
  }

  /** get_text_features for each prompt: [prompts, projection_dim] (not normalised). */
  async textFeatures(prompts: readonly string[]): Promise<Float32Array> {
    const P = this.model.config.projection_dim;
    const out = new Float32Array(prompts.length * P);
    const dev = this.model.device;
    for (let i = 0; i < prompts.length; i += this.batchSize) {
      const t = this.tokenize(prompts.slice(i, i + this.batchSize));
      const f = await dev.scope(async () => {
        const ids = Tensor.from(dev, t.inputIds, t.shape, 'i32');
        const mask = Tensor.from(dev, t.attentionMask, t.shape, 'i32');
        return (await this.model.getTextFeatures(ids, mask)).readF32();
      });
      out.set(f, i * P);
    }
    return out;
  }

  /** get_image_features for each image (through the image processor): [images, projection_dim] (not normalised). */
  async imageFeatures(images: readonly RGBImage[]): Promise<Float32Array> {
    if (images.length === 0) throw new InvalidArgumentError('CLIPScorer: no images', 'images');
    const P = this.model.config.projection_dim;
    const out = new Float32Array(images.length * P);
    const dev = this.model.device;
    for (let i = 0; i < images.length; i += this.batchSize) {
      const { pixelValues, shape } = this.processor.preprocess(images.slice(i, i + this.batchSize));
      const f = await dev.scope(() => this.model.getImageFeatures(Tensor.from(dev, pixelValues, shape, 'f32')).readF32());
      out.set(f, i * P);
    }
    return out;
  }

  /** torchmetrics' CLIP score of each pair (images[i], prompts[i]): 100 · max(cos, 0). */
  async score(images: readonly RGBImage[], prompts: readonly string[]): Promise<number[]> {
    if (images.length !== prompts.length) {
      throw new InvalidArgumentError(`CLIPScorer.score pairs images[i] with prompts[i]: got ${images.length} images and ${prompts.length} prompts`, 'prompts');
    }
    if (images.length === 0) return [];
    const P = this.model.config.projection_dim;
    const img = await this.imageFeatures(images);
    const txt = await this.textFeatures(prompts);
    return [...clipScore({ data: img, shape: [images.length, P] }, { data: txt, shape: [prompts.length, P] })];
  }

  dispose(): void {
    this.model.dispose();
  }
}
