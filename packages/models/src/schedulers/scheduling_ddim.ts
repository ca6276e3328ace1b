// DDIMScheduler (diffusers v0.25.1 scheduling_ddim.py), float32-exact on CPU.
import { InvalidArgumentError, UnsupportedError } from '@fewstep/tensor';
import {
  type Scheduler, type StepOptions, type StepOutput, f, resolveConfig, oneOf, makeBetas, alphasCumprodOf,
  npLinspace, npArange, roundHalfEven, takeNoise, checkSameLength, axpby,
} from './scheduler.js';

export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};
export type DDIMConfig = typeof DDIM_DEFAULTS;

/** Integer timestep tables shared by DDIM and DDPM (int64 in diffusers). */
export function integerTimesteps(className: string, spacing: string, T: number, n: number, stepsOffset: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${className}: num_inference_steps must be a positive integer, got ${n}`);
  if (n > T) throw new InvalidArgumentError(`${className}: num_inference_steps ${n} > num_train_timesteps ${T}`);
  if (spacing === 'linspace') return npLinspace(0, T - 1, n).map(roundHalfEven).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, i) => i * ratio + stepsOffset).reverse();
  }
  if (spacing === 'trailing') return npArange(T, 0, -T / n).map((v) => roundHalfEven(v) - 1);
  throw new UnsupportedError(`${className}: timestep_spacing "${spacing}" is not supported (linspace, leading, trailing)`);
}

export interface DDIMStepOptions extends StepOptions {
  /** η of the DDIM paper; 0 (the pipeline default) is deterministic, > 0 consumes opts.noise. */
  eta?: number | undefined;
}

export class DDIMScheduler implements Scheduler {
  readonly className = 'DDIMScheduler';
  readonly config: DDIMConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  readonly initNoiseSigma = 1.0;
  timesteps: number[];
  numInferenceSteps: number | null = null;

  constructor(config?: Record<string, unknown>) {
    const c = (this.config = resolveConfig(this.className, DDIM_DEFAULTS, config));
    oneOf(this.className, 'prediction_type', c.prediction_type, ['epsilon', 'sample', 'v_prediction']);
    oneOf(this.className, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    if (c.thresholding) throw new UnsupportedError(`${this.className}: thresholding is not supported`);
    this.betas = makeBetas(this.className, c);
    this.alphasCumprod = alphasCumprodOf(this.betas);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
    this.timesteps = Array.from({ length: c.num_train_timesteps }, (_, i) => c.num_train_timesteps - 1 - i);
  }

  setTimesteps(n: number): void {
    const c = this.config;
    this.timesteps = integerTimesteps(this.className, c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset);
    this.numInferenceSteps = n;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: DDIMStepOptions): StepOutput {
    if (this.numInferenceSteps === null) throw new InvalidArgumentError(`${this.className}: call setTimesteps first`);
    checkSameLength(this.className, modelOutput, sample, 'model output and sample');
    const c = this.config;
    const eta = opts?.eta ?? 0;
    const prevT = t - Math.floor(c.num_train_timesteps / this.numInferenceSteps);
    const aT = this.alphasCumprod[t]!;
    if (aT === undefined) throw new InvalidArgumentError(`${this.className}: timestep ${t} is out of range`);
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
    const bT = f(1 - aT);
    const sqA = f(Math.sqrt(aT)), sqB = f(Math.sqrt(bT));
    const n = sample.length;
    let x0: Float32Array = new Float32Array(n);
    let eps: Float32Array = new Float32Array(n);
    if (c.prediction_type === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = f(f(sample[i]! - f(sqB * modelOutput[i]!)) / sqA);
      eps = modelOutput;
    } else if (c.prediction_type === 'sample') {
      x0 = modelOutput;
      for (let i = 0; i < n; i++) eps[i] = f(f(sample[i]! - f(sqA * x0[i]!)) / sqB);
    } else {
      for (let i = 0; i < n; i++) x0[i] = f(f(sqA * sample[i]!) - f(sqB * modelOutput[i]!));
      for (let i = 0; i < n; i++) eps[i] = f(f(sqA * modelOutput[i]!) + f(sqB * sample[i]!));
    }
    if (c.clip_sample) {
      const r = c.clip_sample_range;
      x0 = x0.map((v) => Math.min(Math.max(v, -r), r));
    }
    // _get_variance: (β_prev/β_t)·(1 − ᾱ_t/ᾱ_prev)
    const bPrev = f(1 - aPrev);
    const variance = f(f(bPrev / bT) * f(1 - f(aT / aPrev)));
    const std = f(eta * f(Math.sqrt(variance)));
    const dirCoef = f(Math.sqrt(f(f(1 - aPrev) - f(std * std))));
    const sqAPrev = f(Math.sqrt(aPrev));
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = f(f(sqAPrev * x0[i]!) + f(dirCoef * eps[i]!));
    if (eta > 0) {
      const z = takeNoise(this.className, opts, n);
      for (let i = 0; i < n; i++) prev[i] = f(prev[i]! + f(std * z[i]!));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return ddpmStyleAddNoise(this.className, this.alphasCumprod, original, noise, t);
  }
}

/** sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise (DDPM/DDIM/LCM add_noise). */
export function ddpmStyleAddNoise(className: string, ac: Float32Array, original: Float32Array, noise: Float32Array, t: number): Float32Array {
  checkSameLength(className, original, noise, 'sample and noise');
  const a = ac[t];
  if (a === undefined || !Number.isInteger(t)) throw new InvalidArgumentError(`${className}.addNoise: timestep ${t} is out of range`);
  return axpby(f(Math.sqrt(a)), original, f(Math.sqrt(f(1 - a))), noise);
}
