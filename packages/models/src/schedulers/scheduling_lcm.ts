// LCMScheduler (diffusers v0.25.1 scheduling_lcm.py), float32-exact on CPU.
import { InvalidArgumentError, UnsupportedError } from '@fewstep/tensor';
import {
  type Scheduler, type StepOptions, type StepOutput, f, resolveConfig, oneOf, makeBetas, alphasCumprodOf,
  takeNoise, checkSameLength, indexOfTimestep, npLinspace,
} from './scheduler.js';
import { ddpmStyleAddNoise } from './scheduling_ddim.js';

export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  trained_betas: null as number[] | null,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};
export type LCMConfig = typeof LCM_DEFAULTS;

export class LCMScheduler implements Scheduler {
  readonly className = 'LCMScheduler';
  readonly config: LCMConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  readonly initNoiseSigma = 1.0;
  timesteps: number[];
  numInferenceSteps: number | null = null;
  private stepIndex: number | null = null;

  constructor(config?: Record<string, unknown>) {
    const c = (this.config = resolveConfig(this.className, LCM_DEFAULTS, config));
    oneOf(this.className, 'prediction_type', c.prediction_type, ['epsilon', 'sample', 'v_prediction']);
    if (c.thresholding) throw new UnsupportedError(`${this.className}: thresholding is not supported`);
    this.betas = makeBetas(this.className, c);
    this.alphasCumprod = alphasCumprodOf(this.betas);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
    this.timesteps = Array.from({ length: c.num_train_timesteps }, (_, i) => c.num_train_timesteps - 1 - i);
  }

  /**
   * Picks n evenly spaced indices out of the distillation schedule [k−1, 2k−1, …] (k = T / original
   * steps), from the top: e.g. 1 → [999], 2 → [999, 499], 4 → [999, 759, 499, 259].
   */
  setTimesteps(n: number, originalInferenceSteps?: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    const orig = originalInferenceSteps ?? c.original_inference_steps;
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${this.className}: num_inference_steps must be a positive integer, got ${n}`);
    if (orig > T) throw new InvalidArgumentError(`${this.className}: original_inference_steps ${orig} > num_train_timesteps ${T}`);
    if (n > T) throw new InvalidArgumentError(`${this.className}: num_inference_steps ${n} > num_train_timesteps ${T}`);
    if (n > orig) throw new InvalidArgumentError(`${this.className}: num_inference_steps ${n} > original_inference_steps ${orig}`);
    const k = Math.floor(T / orig);
    const origin = Array.from({ length: orig }, (_, i) => (i + 1) * k - 1).reverse();
    const idx = npLinspace(0, origin.length, n, false).map(Math.floor);
    this.timesteps = idx.map((i) => origin[i]!);
    this.numInferenceSteps = n;
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** c_skip, c_out of the consistency boundary condition, float32 as torch computes them. */
  boundaryScalings(t: number): [cSkip: number, cOut: number] {
    const st = f(t * this.config.timestep_scaling);
    const d = f(f(st * st) + 0.25);
    // python `0.25 / tensor` is tensor.reciprocal() * 0.25
    const cSkip = f(f(1 / d) * 0.25);
    const cOut = f(st / f(Math.sqrt(d)));
    return [cSkip, cOut];
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: StepOptions): StepOutput {
    if (this.numInferenceSteps === null) throw new InvalidArgumentError(`${this.className}: call setTimesteps first`);
    checkSameLength(this.className, modelOutput, sample, 'model output and sample');
    const c = this.config;
    if (this.stepIndex === null) this.stepIndex = indexOfTimestep(this.className, this.timesteps, t);
    const i = this.stepIndex;
    const prevT = i + 1 < this.timesteps.length ? this.timesteps[i + 1]! : t;
    const aT = this.alphasCumprod[t];
    if (aT === undefined || !Number.isInteger(t)) throw new InvalidArgumentError(`${this.className}: timestep ${t} is out of range`);
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
    const bT = f(1 - aT);
    const bPrev = f(1 - aPrev);
    const [cSkip, cOut] = this.boundaryScalings(t);
    const n = sample.length;
    const sqA = f(Math.sqrt(aT)), sqB = f(Math.sqrt(bT));
    let x0: Float32Array = new Float32Array(n);
    if (c.prediction_type === 'epsilon') {
      for (let j = 0; j < n; j++) x0[j] = f(f(sample[j]! - f(sqB * modelOutput[j]!)) / sqA);
    } else if (c.prediction_type === 'sample') {
      x0 = modelOutput;
    } else {
      for (let j = 0; j < n; j++) x0[j] = f(f(sqA * sample[j]!) - f(sqB * modelOutput[j]!));
    }
    if (c.clip_sample) {
      const r = c.clip_sample_range;
      x0 = x0.map((v) => Math.min(Math.max(v, -r), r));
    }
    const denoised = new Float32Array(n);
    for (let j = 0; j < n; j++) denoised[j] = f(f(cOut * x0[j]!) + f(cSkip * sample[j]!));
    let prev = denoised;
    // Every step but the last re-noises to the next timestep (so 1-step sampling draws no noise).
    if (i !== this.numInferenceSteps - 1) {
      const z = takeNoise(this.className, opts, n);
      const a = f(Math.sqrt(aPrev)), b = f(Math.sqrt(bPrev));
      prev = new Float32Array(n);
      for (let j = 0; j < n; j++) prev[j] = f(f(a * denoised[j]!) + f(b * z[j]!));
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, denoised };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return ddpmStyleAddNoise(this.className, this.alphasCumprod, original, noise, t);
  }
}
