/**
 * transformers `CLIPTextModel` (v4.36.2 `models/clip/modeling_clip.py`): token + position embeddings,
 * pre-LayerNorm encoder layers with a causal self-attention mask (plus an optional key padding mask),
 * and `final_layer_norm`. Property paths are the checkpoint keys under `text_model.`.
 *
 * SD1.x uses the OpenAI ViT-L/14 tower (hidden_act "quick_gelu"); SD2.x / SD-Turbo / SDXS-512 use the
 * OpenCLIP ViT-H/14 tower (hidden_act "gelu", exact erf). Both are this class with a different config.
 */
import { InvalidArgumentError, ShapeError, Tensor, UnsupportedError, type Device, type FileSource } from '@fewstep/tensor';
import { add, attention, embedding, unary, type UnaryOp } from '@fewstep/kernels';
import { loadFromSource, openComponentWeights, readConfig, type FromFolderOptions, type FromSourceOptions } from '../modeling/component.js';
import { Linear } from '../layers/linear.js';
import { LayerNorm } from '../layers/norm.js';
import { countParameters, disposeAll, loadModel, recordParameters, type TensorSource, type WeightScope } from '../modeling/weights.js';
import { RandomSource, type RandomWeightsOptions } from '../modeling/random_weights.js';
import type { ConfigInput } from '../modeling/config.js';
import { ConfigError } from '../errors.js';

/** `config.json` of a transformers CLIPTextModel; missing keys take CLIPTextConfig's defaults (4.36). */
export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
  [key: string]: unknown;
}

export const CLIP_TEXT_DEFAULTS: CLIPTextConfig = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
};

/** transformers ACT2FN names → our unary kernels. */
const ACTIVATIONS: Record<string, UnaryOp> = {
  gelu: 'gelu',
  quick_gelu: 'quick_gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

/**
 * A config.json object → `model.config`: CLIPTextConfig's defaults for the keys it leaves out (null too), the
 * keys fewstep relies on checked, other keys kept. A full CLIPConfig (model_type "clip") gives its text_config.
 */
export function clipTextConfig(raw: ConfigInput<CLIPTextConfig>, where = 'config.json'): Readonly<CLIPTextConfig> {
  const src = raw['model_type'] === 'clip' && raw['text_config'] && typeof raw['text_config'] === 'object' ? (raw['text_config'] as Record<string, unknown>) : raw;
  const cfg: Record<string, unknown> = { ...src };
  for (const [k, def] of Object.entries(CLIP_TEXT_DEFAULTS)) {
    const v = src[k];
    if (v === undefined || v === null) cfg[k] = def;
    else if (typeof v !== typeof def) throw new ConfigError(`${where}: "${k}" must be a ${typeof def}, got ${JSON.stringify(v)}`);
  }
  const c = cfg as CLIPTextConfig;
  if (!ACTIVATIONS[c.hidden_act]) throw new UnsupportedError(`${where}: hidden_act "${c.hidden_act}" is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  if (c.hidden_size % c.num_attention_heads) {
    throw new ConfigError(`${where}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  return Object.freeze(c);
}

/** nn.Embedding: weight [num, dim]. */
export class EmbeddingTable {
  private constructor(readonly weight: Tensor) {}
  static build(w: WeightScope, num: number, dim: number): EmbeddingTable {
    return new EmbeddingTable(w.get('weight', [num, dim]));
  }
}

export class CLIPTextEmbeddings {
  private constructor(readonly token_embedding: EmbeddingTable, readonly position_embedding: EmbeddingTable) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPTextEmbeddings {
    const tok = EmbeddingTable.build(w.pp('token_embedding'), cfg.vocab_size, cfg.hidden_size);
    const pos = EmbeddingTable.build(w.pp('position_embedding'), cfg.max_position_embeddings, cfg.hidden_size);
    // Older checkpoints carry the (non-persistent since 4.31) position_ids buffer: arange(P). Not a parameter: skip it.
    if (w.has('position_ids')) {
      const shape = w.shape('position_ids');
      w.skip('position_ids', shape.length === 2 ? [1, cfg.max_position_embeddings] : [cfg.max_position_embeddings]);
    }
    return new CLIPTextEmbeddings(tok, pos);
  }

  /** ids i32 [B, L] → token_embedding(ids) + position_embedding(arange(L)): [B, L, D]. */
  forward(inputIds: Tensor): Tensor {
    return embedding(inputIds, this.token_embedding.weight, this.position_embedding.weight);
  }
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

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPAttention {
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

  /** Causal self-attention on x [B, L, D]; `keyMask` [B, L] (1 keep / 0 pad) as transformers' attention_mask. */
  forward(x: Tensor, keyMask?: Tensor): Tensor {
    const q = this.q_proj.forward(x), k = this.k_proj.forward(x), v = this.v_proj.forward(x);
    const o = attention(q, k, v, this.heads, { scale: this.scale, causal: true, keyMask });
    return this.out_proj.forward(o);
  }
}

export class CLIPMLP {
  private constructor(readonly fc1: Linear, readonly fc2: Linear, readonly act: UnaryOp) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPMLP {
    return new CLIPMLP(
      Linear.build(w.pp('fc1'), cfg.hidden_size, cfg.intermediate_size),
      Linear.build(w.pp('fc2'), cfg.intermediate_size, cfg.hidden_size),
      ACTIVATIONS[cfg.hidden_act]!,
    );
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(unary(this.act, this.fc1.forward(x)));
  }
}

export class CLIPEncoderLayer {
  private constructor(readonly self_attn: CLIPAttention, readonly layer_norm1: LayerNorm, readonly mlp: CLIPMLP, readonly layer_norm2: LayerNorm) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPEncoderLayer {
    return new CLIPEncoderLayer(
      CLIPAttention.build(w.pp('self_attn'), cfg),
      LayerNorm.build(w.pp('layer_norm1'), cfg.hidden_size, cfg.layer_norm_eps),
      CLIPMLP.build(w.pp('mlp'), cfg),
      LayerNorm.build(w.pp('layer_norm2'), cfg.hidden_size, cfg.layer_norm_eps),
    );
  }

  forward(x: Tensor, keyMask?: Tensor): Tensor {
    return x.device.scope(() => {
      const h = add(x, this.self_attn.forward(this.layer_norm1.forward(x), keyMask));
      return add(h, this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

export class CLIPEncoder {
  private constructor(readonly layers: CLIPEncoderLayer[]) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPEncoder {
    const layers: CLIPEncoderLayer[] = [];
    for (let i = 0; i < cfg.num_hidden_layers; i++) layers.push(CLIPEncoderLayer.build(w.pp('layers').pp(i), cfg));
    return new CLIPEncoder(layers);
  }
}

export class CLIPTextTransformer {
  private constructor(readonly embeddings: CLIPTextEmbeddings, readonly encoder: CLIPEncoder, readonly final_layer_norm: LayerNorm) {}

  static build(w: WeightScope, cfg: CLIPTextConfig): CLIPTextTransformer {
    return new CLIPTextTransformer(
      CLIPTextEmbeddings.build(w.pp('embeddings'), cfg),
      CLIPEncoder.build(w.pp('encoder'), cfg),
      LayerNorm.build(w.pp('final_layer_norm'), cfg.hidden_size, cfg.layer_norm_eps),
    );
  }
}

export interface CLIPTextForwardOptions {
  /** transformers' attention_mask [B, L]: 1 = real token, 0 = padding (masked as a key). f32, the model dtype, or i32 (`forward` converts it). */
  attentionMask?: Tensor | undefined;
  /** Skip the pooled output (saves the ids read-back). Default true. */
  pooler?: boolean | undefined;
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

export class CLIPTextModel {
  private constructor(
    /** config.json's keys with transformers' defaults (see modeling/config.ts). */
    readonly config: Readonly<CLIPTextConfig>,
    readonly text_model: CLIPTextTransformer,
    private readonly weights: readonly Tensor[],
    readonly dtype: 'f32' | 'f16',
  ) {}

  /** The one walk (keys start with `text_model.`): builds every module from the scope (a loading scope's tensors are filled by `materialize`). */
  static build(w: WeightScope, config: ConfigInput<CLIPTextConfig>): CLIPTextModel {
    const cfg = clipTextConfig(config);
    const first = w.loaded.length;
    const tm = CLIPTextTransformer.build(w.pp('text_model'), cfg);
    return new CLIPTextModel(cfg, tm, w.loaded.slice(first), w.dtype);
  }

  /** Builds from a loading scope, checks that every key was used, then reads the weights. */
  static load(w: WeightScope, config: ConfigInput<CLIPTextConfig>): Promise<CLIPTextModel> {
    return loadModel(w, 'CLIPTextModel', (s) => CLIPTextModel.build(s, config));
  }

  /** Every parameter key → shape the config implies (transformers state-dict names): `build` with a recording scope. */
  static describe(config: ConfigInput<CLIPTextConfig>): Map<string, number[]> {
    return recordParameters((w) => CLIPTextModel.build(w, config));
  }

  /** Number of parameters the config implies. */
  static parameterCount(config: ConfigInput<CLIPTextConfig>): number {
    return countParameters(CLIPTextModel.describe(config));
  }

  /** Loads a transformers `text_encoder/` folder (config.json + weights). */
  static async fromFolder(io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<CLIPTextModel> {
    const cfg = clipTextConfig(await readConfig(io, dir), io.join(dir, 'config.json'));
    const src = await openComponentWeights(io, dir, opts.variant);
    try {
      return await CLIPTextModel.fromSource(src, cfg, device, opts);
    } finally {
      await src.close();
    }
  }

  /** Loads from any TensorSource holding exactly this model's keys. */
  static async fromSource(src: TensorSource, config: ConfigInput<CLIPTextConfig>, device: Device, opts: FromSourceOptions = {}): Promise<CLIPTextModel> {
    return loadFromSource('CLIPTextModel', src, device, opts, (w) => CLIPTextModel.build(w, config));
  }

  /** A text encoder with deterministic random weights (benchmarks, memory tests). */
  static random(config: ConfigInput<CLIPTextConfig>, device: Device, opts: RandomWeightsOptions = {}): Promise<CLIPTextModel> {
    return CLIPTextModel.fromSource(new RandomSource(CLIPTextModel.describe(config), opts.seed ?? 0), config, device, opts);
  }

  get device(): Device {
    return this.text_model.final_layer_norm.weight.device;
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

  /**
   * inputIds i32 [B, L] (L ≤ max_position_embeddings). Reads the ids back once for the pooler's EOS
   * positions (skip with `pooler: false`); everything else stays on the GPU.
   */
  async forward(inputIds: Tensor, opts: CLIPTextForwardOptions = {}): Promise<CLIPTextOutput> {
    let eos: number[] | undefined;
    if (opts.pooler !== false) {
      this.checkIds(inputIds);
      eos = this.eosPositions(await inputIds.read(), inputIds.shape[0]!, inputIds.shape[1]!);
    }
    const m = opts.attentionMask;
    if (m && m.dtype === 'i32') {
      // The attention kernel takes an f32 (or model-dtype) mask; transformers' masks are integer.
      const f = Tensor.from(m.device, Float32Array.from(await m.read()), m.shape, 'f32');
      try {
        return this.forwardWithEos(inputIds, eos, { attentionMask: f });
      } finally {
        f.dispose();
      }
    }
    return this.forwardWithEos(inputIds, eos, opts);
  }

  /** Synchronous forward; `eos` (one position per row) gives the pooled output, as `forward` computes it. */
  forwardWithEos(inputIds: Tensor, eos: readonly number[] | undefined, opts: Omit<CLIPTextForwardOptions, 'pooler'> = {}): CLIPTextOutput {
    this.checkIds(inputIds);
    const [B, L] = inputIds.shape as [number, number];
    const D = this.config.hidden_size;
    const dev = inputIds.device;
    return dev.scope(() => {
      let keyMask: Tensor | undefined;
      if (opts.attentionMask) {
        const m = opts.attentionMask;
        if (m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== L) {
          throw new ShapeError(`CLIPTextModel: attention_mask has shape [${m.shape.join(', ')}], expected [${B}, ${L}] like input_ids`);
        }
        keyMask = m;
      }
      const tm = this.text_model;
      const hiddenStates: Tensor[] = [tm.embeddings.forward(inputIds)];
      for (const layer of tm.encoder.layers) hiddenStates.push(layer.forward(hiddenStates[hiddenStates.length - 1]!, keyMask));
      const lastHiddenState = tm.final_layer_norm.forward(hiddenStates[hiddenStates.length - 1]!);
      const out: CLIPTextOutput = {
        lastHiddenState,
        hiddenStates,
        penultimateHiddenState: hiddenStates[Math.max(0, hiddenStates.length - 2)]!,
      };
      if (eos) {
        if (eos.length !== B || eos.some((p) => !Number.isInteger(p) || p < 0 || p >= L)) throw new InvalidArgumentError(`CLIPTextModel: eos positions ${JSON.stringify(eos)} do not fit input_ids [${B}, ${L}]`);
        // Gather rows b·L + eos[b] of last_hidden_state [B·L, D] with the embedding kernel.
        const rows = Tensor.from(dev, eos.map((p, b) => b * L + p), [1, B], 'i32');
        out.poolerOutput = embedding(rows, lastHiddenState.reshape([B * L, D])).reshape([B, D]);
      }
      return out;
    });
  }

  /** final_layer_norm(x): diffusers' clip_skip path applies it to hidden_states[-(clip_skip + 1)]. */
  finalLayerNorm(x: Tensor): Tensor {
    return this.text_model.final_layer_norm.forward(x);
  }

  private checkIds(ids: Tensor): void {
    if (ids.dtype !== 'i32') throw new ShapeError(`CLIPTextModel: input_ids must be i32, got ${ids.dtype}`);
    if (ids.rank !== 2) throw new ShapeError(`CLIPTextModel: input_ids must be [batch, length], got [${ids.shape.join(', ')}]`);
    const L = ids.shape[1]!;
    if (L < 1 || L > this.config.max_position_embeddings) {
      throw new ShapeError(`CLIPTextModel: input_ids length ${L} must be between 1 and max_position_embeddings (${this.config.max_position_embeddings})`);
    }
  }

  dispose(): void {
    disposeAll(this.weights);
  }
}
