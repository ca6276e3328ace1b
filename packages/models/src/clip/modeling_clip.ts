/**
 * transformers CLIP (v4.36.2 `models/clip/modeling_clip.py`), the parts both towers share and the text tower.
 *
 * Shared: `CLIPEncoderLayer` (pre-LayerNorm self-attention + MLP) and `CLIPEncoder` (its stack). The text
 * tower runs it with a causal mask (plus an optional key padding mask), the vision tower
 * (modeling_clip_vision.ts) without any mask.
 *
 * Text: token + position embeddings, the encoder, `final_layer_norm`, and the pooled output (last_hidden_state
 * at each row's EOS token). `CLIPTextModel` (keys under `text_model.`) and `CLIPTextModelWithProjection` (plus
 * `text_projection`, SDXL's text_encoder_2 class). SD1.x uses the OpenAI ViT-L/14 tower (hidden_act
 * "quick_gelu"); SD2.x / SD-Turbo / SDXS-512 the OpenCLIP ViT-H/14 one ("gelu", exact erf).
 */
import { drain, drainAsync, type Steps } from '../modeling/steps.js';
import { InvalidArgumentError, ShapeError, Tensor, type Device } from '@fewstep/tensor';
import { add, attention, embedding, unary, type UnaryOp } from '@fewstep/kernels';
import { Linear } from '../layers/linear.js';
import { LayerNorm } from '../layers/norm.js';
import  { disposeAll, type WeightScope } from '../modeling/weights.js';
import type { ConfigInput } from '../modeling/config.js';
import { CLIP_ACTIVATIONS, clipTextConfig, type CLIPEncoderConfig, type CLIPTextConfig } from './configuration_clip.js';
import { PretrainedModel } from '../modeling/pretrained.js';

// The text config's names stay importable from here (they lived in this file first).
export { CLIP_TEXT_DEFAULTS, clipTextConfig, type CLIPTextConfig } from './configuration_clip.js';

/** nn.Embedding: weight [num, dim]. */
export class EmbeddingTable {
  private constructor(readonly weight: Tensor) {}
  static build(w: WeightScope, num: number, dim: number): EmbeddingTable {
    return new EmbeddingTable(w.get('weight', [num, dim]));
  }
}

/**
 * Older checkpoints carry the `embeddings.position_ids` buffer (non-persistent since transformers 4.31):
 * arange(P), [1, P] or [P]. Not a parameter: consumed, shape-checked, never loaded.
 */
export function skipPositionIds(w: WeightScope, positions: number): void {
  if (!w.has('position_ids')) return;
  w.skip('position_ids', w.shape('position_ids').length === 2 ? [1, positions] : [positions]);
}

/** What the encoder masks: the text tower is causal (plus a key padding mask), the vision tower neither. */
export interface CLIPAttentionMask {
  causal: boolean;
  /** [B, L], 1 keep / 0 padding (transformers' attention_mask, f32 or the model dtype). */
  keyMask?: Tensor | undefined;
}

export class CLIPAttention {
  private constructor(
    readonly q_proj: Linear,
    readonly k_proj: Linear,
    readonly v_proj: Linear,
    readonly out_proj: Linear,
    readonly heads: number,
    readonly scale: number,
  ) {}

  static build(w: WeightScope, cfg: CLIPEncoderConfig): CLIPAttention {
    const D = cfg.hidden_size;
    return new CLIPAttention(
      Linear.build(w.pp('q_proj'), D, D),
      Linear.build(w.pp('k_proj'), D, D),
      Linear.build(w.pp('v_proj'), D, D),
      Linear.build(w.pp('out_proj'), D, D),
      cfg.num_attention_heads,
      (D / cfg.num_attention_heads) ** -0.5,
    );
  }

  /** Self-attention on x [B, L, D] under `mask`. */
  forward(x: Tensor, mask: CLIPAttentionMask): Tensor {
    const q = this.q_proj.forward(x), k = this.k_proj.forward(x), v = this.v_proj.forward(x);
    const o = attention(q, k, v, this.heads, { scale: this.scale, causal: mask.causal, keyMask: mask.keyMask });
    return this.out_proj.forward(o);
  }
}

export class CLIPMLP {
  private constructor(readonly fc1: Linear, readonly fc2: Linear, readonly act: UnaryOp) {}

  static build(w: WeightScope, cfg: CLIPEncoderConfig): CLIPMLP {
    return new CLIPMLP(
      Linear.build(w.pp('fc1'), cfg.hidden_size, cfg.intermediate_size),
      Linear.build(w.pp('fc2'), cfg.intermediate_size, cfg.hidden_size),
      CLIP_ACTIVATIONS[cfg.hidden_act]!,
    );
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(unary(this.act, this.fc1.forward(x)));
  }
}

export class CLIPEncoderLayer {
  private constructor(readonly self_attn: CLIPAttention, readonly layer_norm1: LayerNorm, readonly mlp: CLIPMLP, readonly layer_norm2: LayerNorm) {}

  static build(w: WeightScope, cfg: CLIPEncoderConfig): CLIPEncoderLayer {
    return new CLIPEncoderLayer(
      CLIPAttention.build(w.pp('self_attn'), cfg),
      LayerNorm.build(w.pp('layer_norm1'), cfg.hidden_size, cfg.layer_norm_eps),
      CLIPMLP.build(w.pp('mlp'), cfg),
      LayerNorm.build(w.pp('layer_norm2'), cfg.hidden_size, cfg.layer_norm_eps),
    );
  }

  forward(x: Tensor, mask: CLIPAttentionMask): Tensor {
    return x.device.scope(() => {
      const h = add(x, this.self_attn.forward(this.layer_norm1.forward(x), mask));
      return add(h, this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

export class CLIPEncoder {
  private constructor(readonly layers: CLIPEncoderLayer[]) {}

  static build(w: WeightScope, cfg: CLIPEncoderConfig): CLIPEncoder {
    const layers: CLIPEncoderLayer[] = [];
    for (let i = 0; i < cfg.num_hidden_layers; i++) layers.push(CLIPEncoderLayer.build(w.pp('layers').pp(i), cfg));
    return new CLIPEncoder(layers);
  }

  /** transformers' hidden_states: [x, output of layer 0, …, output of the last layer]. */
  hiddenStates(x: Tensor, mask: CLIPAttentionMask): Tensor[] {
    return drain(this.hiddenStateSteps(x, mask));
  }

  /** `hiddenStates`, yielding after each layer (see Steps). */
  *hiddenStateSteps(x: Tensor, mask: CLIPAttentionMask): Steps<Tensor[]> {
    const out = [x];
    for (const layer of this.layers) {
      out.push(layer.forward(out[out.length - 1]!, mask));
      yield;
    }
    return out;
  }

  /** The last layer's output only; each layer's input (but `x`) is freed as soon as the next one is computed. */
  forward(x: Tensor, mask: CLIPAttentionMask): Tensor {
    let h = x;
    for (const layer of this.layers) {
      const next = layer.forward(h, mask);
      if (h !== x) h.dispose();
      h = next;
    }
    return h;
  }
}

export class CLIPTextEmbeddings {
  private constructor(readonly token_embedding: EmbeddingTable, readonly position_embedding: EmbeddingTable) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPTextEmbeddings {
    const tok = EmbeddingTable.build(w.pp('token_embedding'), cfg.vocab_size, cfg.hidden_size);
    const pos = EmbeddingTable.build(w.pp('position_embedding'), cfg.max_position_embeddings, cfg.hidden_size);
    skipPositionIds(w, cfg.max_position_embeddings);
    return new CLIPTextEmbeddings(tok, pos);
  }

  /** ids i32 [B, L] → token_embedding(ids) + position_embedding(arange(L)): [B, L, D]. */
  forward(inputIds: Tensor): Tensor {
    return embedding(inputIds, this.token_embedding.weight, this.position_embedding.weight);
  }
}

export interface CLIPTextForwardOptions {
  /** transformers' attention_mask [B, L]: 1 = real token, 0 = padding (masked as a key). f32, the model dtype, or i32 (`forward` converts it). */
  attentionMask?: Tensor | undefined;
  /** Skip the pooled output (saves the ids read-back). Default true. */
  pooler?: boolean | undefined;
  /** Awaited after every layer: low memory's streamed weights pace their uploads there (ParameterCache.pace). */
  pause?: (() => Promise<void>) | undefined;
}

export interface CLIPTextOutput {
  /** final_layer_norm(hidden_states[-1]): [B, L, D]. */
  lastHiddenState: Tensor;
  /** hidden_states[0] = embeddings, [i] = output of layer i (all before final_layer_norm): num_hidden_layers + 1 tensors. */
  hiddenStates: Tensor[];
  /** hidden_states[-2] (the same tensor object as hiddenStates[length − 2]). */
  penultimateHiddenState: Tensor;
  /** last_hidden_state at each row's EOS position: [B, D] (absent when `pooler: false`). */
  poolerOutput?: Tensor | undefined;
}

/** transformers' CLIPTextTransformer (`text_model.`): embeddings, causal encoder, final_layer_norm, EOS pooling. */
export class CLIPTextTransformer {
  private constructor(
    readonly embeddings: CLIPTextEmbeddings,
    readonly encoder: CLIPEncoder,
    readonly final_layer_norm: LayerNorm,
    readonly config: Readonly<CLIPTextConfig>,
  ) {}

  static build(w: WeightScope, cfg: Readonly<CLIPTextConfig>): CLIPTextTransformer {
    return new CLIPTextTransformer(
      CLIPTextEmbeddings.build(w.pp('embeddings'), cfg),
      CLIPEncoder.build(w.pp('encoder'), cfg),
      LayerNorm.build(w.pp('final_layer_norm'), cfg.hidden_size, cfg.layer_norm_eps),
      cfg,
    );
  }

  /**
   * EOS position of each row, as transformers 4.36 pools: with the legacy eos_token_id 2 (configs
   * saved before the fix) the argmax of the ids (49407 is the largest id); otherwise the first
   * position holding eos_token_id (0 when there is none, like torch's argmax of an all-zero row).
   */
  eosPositions(ids: ArrayLike<number>, batch: number, len: number): number[] {
    const out: number[] = [];
    for (let b = 0; b < batch; b++) {
      let best = 0;
      if (this.config.eos_token_id === 2) {
        for (let l = 1; l < len; l++) if (ids[b * len + l]! > ids[b * len + best]!) best = l;
      } else {
        for (let l = 0; l < len; l++) if (ids[b * len + l] === this.config.eos_token_id) { best = l; break; }
      }
      out.push(best);
    }
    return out;
  }

  checkIds(ids: Tensor, what = 'CLIPTextModel'): void {
    if (ids.dtype !== 'i32') throw new ShapeError(`${what}: input_ids must be i32, got ${ids.dtype}`, 'input_ids');
    if (ids.rank !== 2) throw new ShapeError(`${what}: input_ids must be [batch, length], got [${ids.shape.join(', ')}]`, 'input_ids');
    const L = ids.shape[1]!;
    if (L < 1 || L > this.config.max_position_embeddings) {
      throw new ShapeError(`${what}: input_ids length ${L} must be between 1 and max_position_embeddings (${this.config.max_position_embeddings})`, 'input_ids');
    }
  }

  /**
   * inputIds i32 [B, L] (L ≤ max_position_embeddings). Reads the ids back once for the pooler's EOS positions
   * (skip with `pooler: false`) and an i32 attention mask once to convert it; everything else stays on the GPU.
   */
  async run(inputIds: Tensor, opts: CLIPTextForwardOptions = {}, what = 'CLIPTextModel'): Promise<CLIPTextOutput> {
    let eos: number[] | undefined;
    if (opts.pooler !== false) {
      this.checkIds(inputIds, what);
      eos = this.eosPositions(await inputIds.read(), inputIds.shape[0]!, inputIds.shape[1]!);
    }
    const m = opts.attentionMask;
    if (m && m.dtype === 'i32') {
      // The attention kernel takes an f32 (or model-dtype) mask; transformers' masks are integer.
      const f = Tensor.from(m.device, Float32Array.from(await m.read()), m.shape, 'f32');
      try {
        return await drainAsync(this.steps(inputIds, eos, f, what), opts.pause);
      } finally {
        f.dispose();
      }
    }
    return drainAsync(this.steps(inputIds, eos, m, what), opts.pause);
  }

  /** Synchronous forward; `eos` (one position per row) gives the pooled output, as `run` computes it. */
  forward(inputIds: Tensor, eos: readonly number[] | undefined, attentionMask: Tensor | undefined, what = 'CLIPTextModel'): CLIPTextOutput {
    return drain(this.steps(inputIds, eos, attentionMask, what));
  }

  private *steps(inputIds: Tensor, eos: readonly number[] | undefined, attentionMask: Tensor | undefined, what: string): Steps<CLIPTextOutput> {
    this.checkIds(inputIds, what);
    const [B, L] = inputIds.shape as [number, number];
    const D = this.config.hidden_size;
    const dev = inputIds.device;
    if (attentionMask) {
      const m = attentionMask;
      if (m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== L) {
        throw new ShapeError(`${what}: attention_mask has shape [${m.shape.join(', ')}], expected [${B}, ${L}] like input_ids`, 'attention_mask');
      }
    }
    if (eos && (eos.length !== B || eos.some((p) => !Number.isInteger(p) || p < 0 || p >= L))) {
      throw new InvalidArgumentError(`${what}: eos positions ${JSON.stringify(eos)} do not fit input_ids [${B}, ${L}]`, 'eos');
    }
    const scope = dev.openScope();
    let result: CLIPTextOutput | undefined;
    try {
      const hiddenStates = yield* this.encoder.hiddenStateSteps(this.embeddings.forward(inputIds), { causal: true, keyMask: attentionMask });
      const lastHiddenState = this.final_layer_norm.forward(hiddenStates[hiddenStates.length - 1]!);
      const out: CLIPTextOutput = {
        lastHiddenState,
        hiddenStates,
        penultimateHiddenState: hiddenStates[Math.max(0, hiddenStates.length - 2)]!,
      };
      if (eos) {
        // Gather rows b·L + eos[b] of last_hidden_state [B·L, D] with the embedding kernel.
        const rows = Tensor.from(dev, eos.map((p, b) => b * L + p), [1, B], 'i32');
        out.poolerOutput = embedding(rows, lastHiddenState.reshape([B * L, D])).reshape([B, D]);
      }
      return (result = out);
    } finally {
      scope.end(result);
    }
  }
}

export class CLIPTextModel extends PretrainedModel {
  static readonly modelName = 'CLIPTextModel';

  private constructor(
    /** config.json's keys with transformers' defaults (see modeling/config.ts). */
    readonly config: Readonly<CLIPTextConfig>,
    readonly text_model: CLIPTextTransformer,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {
    super();
  }

  /** The one walk (keys start with `text_model.`): builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ConfigInput<CLIPTextConfig>): CLIPTextModel {
    const cfg = clipTextConfig(config);
    const first = w.loaded.length;
    const tm = CLIPTextTransformer.build(w.pp('text_model'), cfg);
    return new CLIPTextModel(cfg, tm, w.loaded.slice(first), w.dtype);
  }

  /** A CLIPModel's config.json gives its text_config. */
  static parseConfig(raw: Record<string, unknown>, where: string): CLIPTextConfig {
    return clipTextConfig(raw, where);
  }

  get device(): Device {
    return this.text_model.final_layer_norm.weight.device;
  }

  /** See CLIPTextTransformer.eosPositions. */
  eosPositions(ids: ArrayLike<number>, batch: number, len: number): number[] {
    return this.text_model.eosPositions(ids, batch, len);
  }

  /**
   * inputIds i32 [B, L] (L ≤ max_position_embeddings). Reads the ids back once for the pooler's EOS
   * positions (skip with `pooler: false`); everything else stays on the GPU.
   */
  forward(inputIds: Tensor, opts: CLIPTextForwardOptions = {}): Promise<CLIPTextOutput> {
    return this.text_model.run(inputIds, opts);
  }

  /** Synchronous forward; `eos` (one position per row) gives the pooled output, as `forward` computes it. */
  forwardWithEos(inputIds: Tensor, eos: readonly number[] | undefined, opts: Omit<CLIPTextForwardOptions, 'pooler'> = {}): CLIPTextOutput {
    return this.text_model.forward(inputIds, eos, opts.attentionMask);
  }

  /** final_layer_norm(x): diffusers' clip_skip path applies it to hidden_states[-(clip_skip + 1)]. */
  finalLayerNorm(x: Tensor): Tensor {
    return this.text_model.final_layer_norm.forward(x);
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}

export interface CLIPTextModelWithProjectionOutput extends CLIPTextOutput {
  /** text_projection(pooler_output): [B, projection_dim], not normalised (transformers' `text_embeds`). */
  textEmbeds: Tensor;
  poolerOutput: Tensor;
}

/**
 * transformers `CLIPTextModelWithProjection`: the text tower (`text_model.`) and `text_projection`
 * (Linear hidden_size → projection_dim, no bias). SDXL's `text_encoder_2` is this class.
 */
export class CLIPTextModelWithProjection extends PretrainedModel {
  static readonly modelName = 'CLIPTextModelWithProjection';

  private constructor(
    readonly config: Readonly<CLIPTextConfig>,
    readonly text_model: CLIPTextTransformer,
    readonly text_projection: Linear,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {
    super();
  }

  static build(w: WeightScope, config: ConfigInput<CLIPTextConfig>): CLIPTextModelWithProjection {
    const cfg = clipTextConfig(config);
    const first = w.loaded.length;
    const tm = CLIPTextTransformer.build(w.pp('text_model'), cfg);
    const proj = Linear.build(w.pp('text_projection'), cfg.hidden_size, cfg.projection_dim, false);
    return new CLIPTextModelWithProjection(cfg, tm, proj, w.loaded.slice(first), w.dtype);
  }

  static parseConfig(raw: Record<string, unknown>, where: string): CLIPTextConfig {
    return clipTextConfig(raw, where);
  }

  get device(): Device {
    return this.text_projection.weight.device;
  }

  /** input_ids i32 [B, L], optional attention_mask [B, L] → the text tower's outputs and `textEmbeds`. */
  async forward(inputIds: Tensor, opts: Omit<CLIPTextForwardOptions, 'pooler'> = {}): Promise<CLIPTextModelWithProjectionOutput> {
    const out = await this.text_model.run(inputIds, { attentionMask: opts.attentionMask }, 'CLIPTextModelWithProjection');
    const pooled = out.poolerOutput!;
    return { ...out, poolerOutput: pooled, textEmbeds: inputIds.device.scope(() => this.text_projection.forward(pooled)) };
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}
