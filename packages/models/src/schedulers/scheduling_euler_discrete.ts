// EulerDiscreteScheduler (diffusers v0.25.1 scheduling_euler_discrete.py), float32-exact on CPU.
import { InvalidArgumentError, UnsupportedError } from '@fewstep/tensor';
import {
  type Scheduler, type StepOptions, type StepOutput, f, resolveConfig, oneOf, makeBetas, alphasCumprodOf,
  npLinspace, npArange, npInterpIndex, roundHalfEven, karrasSigmasF32, indexOfTimestep, checkSameLength,
} from './scheduler.js';

export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  prediction_type: 'epsilon',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  timestep_spacing: 'linspace',
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type EulerDiscreteConfig = typeof EULER_DEFAULTS;

export interface EulerStepOptions extends StepOptions {
  /** Stochastic churn (k-diffusion); 0 (the pipeline default) gives the deterministic Euler step. */
  sChurn?: number | undefined;
  sTmin?: number | undefined;
  sTmax?: number | undefined;
  sNoise?: number | undefined;
}

export class EulerDiscreteScheduler implements Scheduler {
  readonly className = 'EulerDiscreteScheduler';
  readonly config: EulerDiscreteConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  private stepIndex: number | null = null;

  constructor(config?: Record<string, unknown>) {
    const c = (this.config = resolveConfig(this.className, EULER_DEFAULTS, config));
    oneOf(this.className, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample', 'original_sample']);
    oneOf(this.className, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    oneOf(this.className, 'interpolation_type', c.interpolation_type, ['linear']);
    oneOf(this.className, 'timestep_type', c.timestep_type, ['discrete', 'continuous']);
    if (c.use_karras_sigmas) throw new UnsupportedError(`${this.className}: use_karras_sigmas is not supported`);
    this.betas = makeBetas(this.className, c);
    this.alphasCumprod = alphasCumprodOf(this.betas);
    // Close to 0 without being 0 so the first sigma is finite (diffusers does the same).
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    const s = karrasSigmasF32(this.alphasCumprod).reverse();
    this.sigmas = new Float32Array(s.length + 1);
    this.sigmas.set(s);
    this.timesteps = npLinspace(0, c.num_train_timesteps - 1, c.num_train_timesteps).reverse().map(f);
  }

  /**
   * σ_max for linspace/trailing spacing, sqrt(σ_max² + 1) for leading: the diffusers v0.25.1 quirk
   * (trailing returns σ_max, not the true std of the initial noise).
   */
  get initNoiseSigma(): number {
    let max = 0;
    for (const v of this.sigmas) max = Math.max(max, v);
    if (this.config.timestep_spacing === 'linspace' || this.config.timestep_spacing === 'trailing') return max;
    return f(Math.sqrt(f(f(max * max) + 1)));
  }

  setTimesteps(n: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${this.className}: num_inference_steps must be a positive integer, got ${n}`);
    this.numInferenceSteps = n;
    let ts: number[];
    if (c.timestep_spacing === 'linspace') {
      ts = npLinspace(0, T - 1, n).map(f).reverse();
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(T / n);
      ts = Array.from({ length: n }, (_, i) => i * ratio).reverse().map((v) => f(v + c.steps_offset));
    } else {
      ts = npArange(T, 0, -T / n).map((v) => f(roundHalfEven(v) - 1));
    }
    const table = karrasSigmasF32(this.alphasCumprod);
    const sig = new Float32Array(ts.length + 1);
    // np.interp runs in float64 on the float32 inputs; the result is stored as float32.
    for (let i = 0; i < ts.length; i++) sig[i] = npInterpIndex(ts[i]!, table);
    if (c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction') {
      ts = Array.from(sig.subarray(0, ts.length), (s) => f(0.25 * f(Math.log(s))));
    }
    this.timesteps = ts;
    this.sigmas = sig;
    this.stepIndex = null;
  }

  private ensureStepIndex(t: number): number {
    if (this.stepIndex === null) this.stepIndex = indexOfTimestep(this.className, this.timesteps, t);
    return this.stepIndex;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    const sigma = this.sigmas[this.ensureStepIndex(t)]!;
    const d = f(Math.sqrt(f(f(sigma * sigma) + 1)));
    return sample.map((x) => f(x / d));
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: EulerStepOptions): StepOutput {
    if (this.numInferenceSteps === null) throw new InvalidArgumentError(`${this.className}: call setTimesteps first`);
    checkSameLength(this.className, modelOutput, sample, 'model output and sample');
    const i = this.ensureStepIndex(t);
    if (i + 1 >= this.sigmas.length) throw new InvalidArgumentError(`${this.className}: step called past the end of the schedule`);
    const sigma = this.sigmas[i]!;
    const sChurn = opts?.sChurn ?? 0, sTmin = opts?.sTmin ?? 0, sTmax = opts?.sTmax ?? Infinity, sNoise = opts?.sNoise ?? 1;
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    // diffusers draws this noise on every step, even when gamma = 0 multiplies it away; calling
    // the callback keeps a shared torch generator in step with the reference.
    const src = opts?.noise;
    const noise = typeof src === 'function' ? src() : src;
    const sigmaHat = f(sigma * f(gamma + 1));
    let x = sample;
    if (gamma > 0) {
      if (!noise || noise.length !== sample.length) throw new InvalidArgumentError(`${this.className}.step: s_churn > 0 needs opts.noise of ${sample.length} elements`);
      const k = f(Math.sqrt(f(f(sigmaHat * sigmaHat) - f(sigma * sigma))));
      x = sample.map((v, j) => f(v + f(f(noise[j]! * f(sNoise)) * k)));
    }
    const n = x.length;
    const x0 = new Float32Array(n);
    const pt = this.config.prediction_type;
    if (pt === 'epsilon') {
      for (let j = 0; j < n; j++) x0[j] = f(x[j]! - f(sigmaHat * modelOutput[j]!));
    } else if (pt === 'v_prediction') {
      const s2p1 = f(f(sigma * sigma) + 1);
      const cOut = f(-sigma / f(Math.sqrt(s2p1)));
      for (let j = 0; j < n; j++) x0[j] = f(f(modelOutput[j]! * cOut) + f(x[j]! / s2p1));
    } else {
      x0.set(modelOutput);
    }
    const dt = f(this.sigmas[i + 1]! - sigmaHat);
    const prev = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      const derivative = f(f(x[j]! - x0[j]!) / sigmaHat);
      prev[j] = f(x[j]! + f(derivative * dt));
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /** original + noise·σ(t), σ looked up by the timestep's position in the schedule. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    checkSameLength(this.className, original, noise, 'sample and noise');
    const idx = this.timesteps.indexOf(t);
    if (idx < 0) throw new InvalidArgumentError(`${this.className}.addNoise: timestep ${t} is not in the schedule`);
    const sigma = this.sigmas[idx]!;
    return original.map((x, j) => f(x + f(noise[j]! * sigma)));
  }
}
