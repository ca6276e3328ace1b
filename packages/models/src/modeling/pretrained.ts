/**
 * The loading entry points every model class shares, as diffusers' ModelMixin and transformers' PreTrainedModel
 * give every model the same `from_pretrained`: a class extends `PretrainedModel` and brings its name and its one
 * build walk (`static build(w, config)`); `load`, `describe`, `parameterCount`, `fromSource`, `fromFolder` and
 * `random` come from here, typed for that class (its config type in, an instance out).
 */
import type { Device, FileSource } from '@fewstep/tensor';
import { loadFromSource, openComponentWeights, readConfig, type FromFolderOptions, type FromSourceOptions } from './component.js';
import type { ConfigInput } from './config.js';
import { RandomSource, type RandomWeightsOptions } from './random_weights.js';
import { WeightScope, countParameters, loadModel, recordParameters, type TensorSource } from './weights.js';

/** What a model class brings (its static side). */
export interface ModelClass<C, M> {
  /** diffusers'/transformers' class name (errors name it). */
  readonly modelName: string;
  /** The one walk over the model's weights: loads them, or records key → shape with a recording scope. */
  build(w: WeightScope, config: ConfigInput<C>): M;
  /** config.json → the config `build` takes, naming the file in errors (default: as read). */
  parseConfig?(raw: Record<string, unknown>, where: string): ConfigInput<C>;
  /** The deterministic random weights `random` loads (default: RandomSource over the recorded shapes). */
  randomSource?(config: ConfigInput<C>, seed: number): TensorSource;
  /** A folder layout of the model's own (original TAESD files): the model, or undefined for the standard layout. */
  fromOtherFolder?(io: FileSource, dir: string, device: Device, opts: FromFolderOptions): Promise<M | undefined>;
}

export abstract class PretrainedModel {
  /** Builds from a loading scope (keys relative to it), checks that every key was used, then reads the weights. */
  static load<C, M>(this: ModelClass<C, M>, w: WeightScope, config: ConfigInput<C>): Promise<M> {
    return loadModel(w, this.modelName, (s) => this.build(s, config));
  }

  /** Every parameter key → shape the config implies (the checkpoint's names): `build` with a recording scope. */
  static describe<C, M>(this: ModelClass<C, M>, config: ConfigInput<C>): Map<string, number[]> {
    return recordParameters((w) => this.build(w, config));
  }

  /** Number of parameters the config implies. */
  static parameterCount<C, M>(this: ModelClass<C, M>, config: ConfigInput<C>): number {
    return countParameters(recordParameters((w) => this.build(w, config)));
  }

  /** Loads from any TensorSource holding exactly this model's keys. */
  static fromSource<C, M>(this: ModelClass<C, M>, src: TensorSource, config: ConfigInput<C>, device: Device, opts: FromSourceOptions = {}): Promise<M> {
    return loadFromSource(this.modelName, src, device, opts, (w) => this.build(w, config));
  }

  /** Loads a diffusers/transformers component folder: config.json + its weights (see findWeightFiles). */
  static async fromFolder<C, M>(this: ModelClass<C, M>, io: FileSource, dir: string, device: Device, opts: FromFolderOptions = {}): Promise<M> {
    const other = await this.fromOtherFolder?.(io, dir, device, opts);
    if (other !== undefined) return other;
    const raw = await readConfig(io, dir);
    const config = this.parseConfig ? this.parseConfig(raw, io.join(dir, 'config.json')) : (raw as ConfigInput<C>);
    const src = await openComponentWeights(io, dir, opts.variant);
    try {
      return await loadFromSource(this.modelName, src, device, opts, (w) => this.build(w, config));
    } finally {
      await src.close();
    }
  }

  /** The model with deterministic random weights (benchmarks, memory tests): realistic in scale, meaningless. */
  static random<C, M>(this: ModelClass<C, M>, config: ConfigInput<C>, device: Device, opts: RandomWeightsOptions = {}): Promise<M> {
    const seed = opts.seed ?? 0;
    const src = this.randomSource ? this.randomSource(config, seed) : new RandomSource(recordParameters((w) => this.build(w, config)), seed);
    return loadModel(WeightScope.create(src, device, opts.dtype ?? 'f32'), this.modelName, (w) => this.build(w, config));
  }
}
