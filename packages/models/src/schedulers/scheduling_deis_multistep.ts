// DEISMultistepScheduler (diffusers v0.25.1 scheduling_deis_multistep.py), float32-exact on CPU.
// Only algorithm_type "deis" with the "logrho" solver exists in v0.25.1 (other names are remapped).
import { InvalidArgumentError, UnsupportedError } from '@fewstep/tensor';
import {
  type Scheduler, type StepOutput, f, resolveConfig, oneOf, makeBetas, alphasCumprodOf,
  npLinspace, npArange, npInterpIndex, roundHalfEven, karrasSigmasF32, indexOfTimestep, checkSameLength,
} from './scheduler.js';

export const DEIS_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: 'deis',
  solver_type: 'logrho',
  lower_order_final: true,
  use_karras_sigmas: false,
  timestep_spacing: 'linspace',
  steps_offset: 0,
};
export type DEISConfig = typeof DEIS_DEFAULTS;

const log = (x: number) => f(Math.log(x));

/** σ ↦ (α_t, σ_t) with α_t = 1/sqrt(σ² + 1) (python `1 / t` is reciprocal()), σ_t = σ·α_t. */
function alphaSigma(sigma: number): [number, number] {
  const a = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
  return [a, f(sigma * a)];
}

export class DEISMultistepScheduler implements Scheduler {
  readonly className = 'DEISMultistepScheduler';
  readonly config: DEISConfig;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly initNoiseSigma = 1.0;
  timesteps: number[];
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  private stepIndex: number | null = null;
  /** Converted (ε) model outputs of the last solver_order steps, oldest first. */
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;

  constructor(config?: Record<string, unknown>) {
    const c = resolveConfig(this.className, DEIS_DEFAULTS, config);
    // diffusers maps DPM-Solver names onto DEIS/logrho rather than failing.
    if (c.algorithm_type === 'dpmsolver' || c.algorithm_type === 'dpmsolver++') c.algorithm_type = 'deis';
    if (['midpoint', 'heun', 'bh1', 'bh2'].includes(c.solver_type)) c.solver_type = 'logrho';
    oneOf(this.className, 'algorithm_type', c.algorithm_type, ['deis']);
    oneOf(this.className, 'solver_type', c.solver_type, ['logrho']);
    oneOf(this.className, 'prediction_type', c.prediction_type, ['epsilon', 'sample', 'v_prediction']);
    oneOf(this.className, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    if (![1, 2, 3].includes(c.solver_order)) throw new UnsupportedError(`${this.className}: solver_order ${c.solver_order} is not supported (1, 2, 3)`);
    if (c.thresholding) throw new UnsupportedError(`${this.className}: thresholding is not supported`);
    if (c.use_karras_sigmas) throw new UnsupportedError(`${this.className}: use_karras_sigmas is not supported`);
    this.config = c;
    this.betas = makeBetas(this.className, c);
    this.alphasCumprod = alphasCumprodOf(this.betas);
    this.sigmas = karrasSigmasF32(this.alphasCumprod);
    this.timesteps = npLinspace(0, c.num_train_timesteps - 1, c.num_train_timesteps).reverse();
    this.modelOutputs = new Array<Float32Array | null>(c.solver_order).fill(null);
  }

  setTimesteps(n: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${this.className}: num_inference_steps must be a positive integer, got ${n}`);
    let ts: number[];
    if (c.timestep_spacing === 'linspace') {
      ts = npLinspace(0, T - 1, n + 1).map(roundHalfEven).reverse().slice(0, n);
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(T / (n + 1));
      ts = Array.from({ length: n + 1 }, (_, i) => i * ratio).reverse().slice(0, n).map((v) => v + c.steps_offset);
    } else {
      ts = npArange(T, 0, -T / n).map((v) => roundHalfEven(v) - 1);
    }
    const table = karrasSigmasF32(this.alphasCumprod);
    const sig = new Float32Array(ts.length + 1);
    for (let i = 0; i < ts.length; i++) sig[i] = npInterpIndex(ts[i]!, table);
    // The final target is σ at t = 0 (not 0), so the last step lands on ᾱ_0.
    sig[ts.length] = table[0]!;
    this.sigmas = sig;
    this.timesteps = ts;
    this.numInferenceSteps = ts.length;
    this.modelOutputs.fill(null);
    this.lowerOrderNums = 0;
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** Model output → x0 prediction → back to ε (DEIS works on ε). */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array): Float32Array {
    const [aT, sT] = alphaSigma(this.sigmas[this.stepIndex!]!);
    const n = sample.length;
    const x0 = new Float32Array(n);
    const pt = this.config.prediction_type;
    for (let i = 0; i < n; i++) {
      x0[i] =
        pt === 'epsilon' ? f(f(sample[i]! - f(sT * modelOutput[i]!)) / aT)
        : pt === 'sample' ? modelOutput[i]!
        : f(f(aT * sample[i]!) - f(sT * modelOutput[i]!));
    }
    const eps = new Float32Array(n);
    for (let i = 0; i < n; i++) eps[i] = f(f(sample[i]! - f(aT * x0[i]!)) / sT);
    return eps;
  }

  private firstOrder(m0: Float32Array, sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const [aT, sT] = alphaSigma(this.sigmas[i + 1]!);
    const [aS, sS] = alphaSigma(this.sigmas[i]!);
    const h = f(f(log(aT) - log(sT)) - f(log(aS) - log(sS)));
    const ca = f(aT / aS);
    const ce = f(sT * f(f(Math.exp(h)) - 1));
    return sample.map((x, j) => f(f(ca * x) - f(ce * m0[j]!)));
  }

  private secondOrder(sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const [aT, sT] = alphaSigma(this.sigmas[i + 1]!);
    const [a0, s0] = alphaSigma(this.sigmas[i]!);
    const [a1, s1] = alphaSigma(this.sigmas[i - 1]!);
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!, m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const rT = f(sT / aT), r0 = f(s0 / a0), r1 = f(s1 / a1);
    // ∫ of the log-rho Lagrange basis; numpy float32 scalars, so float32 after every op.
    const ind = (t: number, b: number, c: number) => f(f(t * f(f(-log(c) + log(t)) - 1)) / f(log(b) - log(c)));
    const c1 = f(ind(rT, r0, r1) - ind(r0, r0, r1));
    const c2 = f(ind(rT, r1, r0) - ind(r0, r1, r0));
    return sample.map((x, j) => f(aT * f(f(f(x / a0) + f(c1 * m0[j]!)) + f(c2 * m1[j]!))));
  }

  /** Third order (solver_order 3); same formulas as diffusers, not covered by the golden data. */
  private thirdOrder(sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const [aT, sT] = alphaSigma(this.sigmas[i + 1]!);
    const [a0, s0] = alphaSigma(this.sigmas[i]!);
    const [a1, s1] = alphaSigma(this.sigmas[i - 1]!);
    const [a2, s2] = alphaSigma(this.sigmas[i - 2]!);
    const L = this.modelOutputs.length;
    const m0 = this.modelOutputs[L - 1]!, m1 = this.modelOutputs[L - 2]!, m2 = this.modelOutputs[L - 3]!;
    const rT = f(sT / aT), r0 = f(s0 / a0), r1 = f(s1 / a1), r2 = f(s2 / a2);
    const ind = (t: number, b: number, c: number, d: number) => {
      const lt = log(t), lb = log(b), lc = log(c), ld = log(d);
      const inner = f(f(f(f(f(lc * f(f(ld - lt) + 1)) - f(ld * lt)) + ld) + f(lt * lt)) - f(2 * lt));
      const num = f(t * f(inner + 2));
      return f(num / f(f(lb - lc) * f(lb - ld)));
    };
    const c1 = f(ind(rT, r0, r1, r2) - ind(r0, r0, r1, r2));
    const c2 = f(ind(rT, r1, r2, r0) - ind(r0, r1, r2, r0));
    const c3 = f(ind(rT, r2, r0, r1) - ind(r0, r2, r0, r1));
    return sample.map((x, j) => f(aT * f(f(f(f(x / a0) + f(c1 * m0[j]!)) + f(c2 * m1[j]!)) + f(c3 * m2[j]!))));
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    if (this.numInferenceSteps === null) throw new InvalidArgumentError(`${this.className}: call setTimesteps first`);
    checkSameLength(this.className, modelOutput, sample, 'model output and sample');
    const c = this.config;
    if (this.stepIndex === null) this.stepIndex = indexOfTimestep(this.className, this.timesteps, t, true);
    const i = this.stepIndex;
    const nT = this.timesteps.length;
    // Few-step schedules finish with lower orders (diffusers: only below 15 steps).
    const lowerFinal = i === nT - 1 && c.lower_order_final && nT < 15;
    const lowerSecond = i === nT - 2 && c.lower_order_final && nT < 15;
    const m = this.convertModelOutput(modelOutput, sample);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    let prev: Float32Array;
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerFinal) prev = this.firstOrder(m, sample);
    else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerSecond) prev = this.secondOrder(sample);
    else prev = this.thirdOrder(sample);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    checkSameLength(this.className, original, noise, 'sample and noise');
    const idx = indexOfTimestep(this.className, this.timesteps, t, true);
    const [a, s] = alphaSigma(this.sigmas[idx]!);
    return original.map((x, j) => f(f(a * x) + f(s * noise[j]!)));
  }
}
