// DDPMScheduler (diffusers v0.25.1 scheduling_ddpm.py), float32-exact on CPU.
import { InvalidArgumentError, UnsupportedError } from '@fewstep/tensor';
import {
  type Scheduler, type StepOptions, type StepOutput, f, resolveConfig, oneOf, makeBetas, alphasCumprodOf,
  takeNoise, checkSameLength,
} from './scheduler.js';
import { integerTimesteps, ddpmStyleAddNoise } from './scheduling_ddim.js';

export const DDPM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  variance_type: 'fixed_small',
  clip_sample: true,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type DDPMConfig = typeof DDPM_DEFAULTS;

export class DDPMScheduler implements Scheduler {
  readonly className = 'DDPMScheduler';
  readonly config: DDPMConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly initNoiseSigma = 1.0;
  timesteps: number[];
  numInferenceSteps: number | null = null;

  constructor(config?: Record<string, unknown>) {
    const c = (this.config = resolveConfig(this.className, DDPM_DEFAULTS, config));
    oneOf(this.className, 'prediction_type', c.prediction_type, ['epsilon', 'sample', 'v_prediction']);
    oneOf(this.className, 'variance_type', c.variance_type, ['fixed_small', 'fixed_small_log', 'fixed_large']);
    oneOf(this.className, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    if (c.thresholding) throw new UnsupportedError(`${this.className}: thresholding is not supported`);
    this.betas = makeBetas(this.className, c);
    this.alphasCumprod = alphasCumprodOf(this.betas);
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

  private previousTimestep(t: number): number {
    return t - Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps ?? this.config.num_train_timesteps));
  }

  /** The variance term's coefficient for the noise (already square-rooted where diffusers does). */
  private noiseScale(aT: number, aPrev: number): number {
    const curBeta = f(1 - f(aT / aPrev));
    let variance = f(f(f(1 - aPrev) / f(1 - aT)) * curBeta);
    variance = Math.max(variance, f(1e-20));
    switch (this.config.variance_type) {
      case 'fixed_small': return f(Math.sqrt(variance));
      case 'fixed_small_log': return f(Math.exp(f(0.5 * f(Math.log(variance)))));
      default: return f(Math.sqrt(curBeta)); // fixed_large
    }
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: StepOptions): StepOutput {
    checkSameLength(this.className, modelOutput, sample, 'model output and sample');
    const c = this.config;
    const prevT = this.previousTimestep(t);
    const aT = this.alphasCumprod[t];
    if (aT === undefined || !Number.isInteger(t)) throw new InvalidArgumentError(`${this.className}: timestep ${t} is out of range`);
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : 1;
    const bT = f(1 - aT);
    const bPrev = f(1 - aPrev);
    const curAlpha = f(aT / aPrev);
    const curBeta = f(1 - curAlpha);
    const n = sample.length;
    let x0: Float32Array = new Float32Array(n);
    const sqA = f(Math.sqrt(aT)), sqB = f(Math.sqrt(bT));
    if (c.prediction_type === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = f(f(sample[i]! - f(sqB * modelOutput[i]!)) / sqA);
    } else if (c.prediction_type === 'sample') {
      x0 = modelOutput;
    } else {
      for (let i = 0; i < n; i++) x0[i] = f(f(sqA * sample[i]!) - f(sqB * modelOutput[i]!));
    }
    if (c.clip_sample) {
      const r = c.clip_sample_range;
      x0 = x0.map((v) => Math.min(Math.max(v, -r), r));
    }
    const x0Coef = f(f(f(Math.sqrt(aPrev)) * curBeta) / bT);
    const xtCoef = f(f(f(Math.sqrt(curAlpha)) * bPrev) / bT);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = f(f(x0Coef * x0[i]!) + f(xtCoef * sample[i]!));
    if (t > 0) {
      const z = takeNoise(this.className, opts, n);
      const s = this.noiseScale(aT, aPrev);
      for (let i = 0; i < n; i++) prev[i] = f(prev[i]! + f(s * z[i]!));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return ddpmStyleAddNoise(this.className, this.alphasCumprod, original, noise, t);
  }
}
