/**
 * Shared scheduler interface and the numeric helpers that reproduce diffusers v0.25.1 / torch /
 * numpy rounding. Schedulers run on the CPU on Float32Array latents. Arithmetic is done in float64
 * and rounded to float32 (`f`) after every operation that torch performs on a float32 tensor, so
 * results match diffusers bit for bit in almost every element.
 */

import { InvalidArgumentError, ShapeError, UnsupportedError } from '@fewstep/tensor';
import { fmaf } from '../random/torch_randn.js';
import { ConfigError } from '../errors.js';

export const f = Math.fround;

export type NoiseSource = Float32Array | (() => Float32Array);

export interface StepOptions {
  /**
   * Noise for stochastic steps (DDPM variance, LCM re-noising, Euler's always-drawn churn noise).
   * A function is called exactly when diffusers calls `randn_tensor` inside step(), so a
   * torch-exact generator behind it stays in sync with diffusers' stream.
   */
  noise?: NoiseSource | undefined;
}

export interface StepOutput {
  prevSample: Float32Array;
  /** x0 prediction (DDPM, DDIM, Euler). */
  predOriginalSample?: Float32Array | undefined;
  /** LCM's boundary-condition output (`denoised`). */
  denoised?: Float32Array | undefined;
}

export interface Scheduler {
  readonly className: string;
  /** Effective config after from_config resolution (class defaults + recognised keys). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** Timesteps after setTimesteps (integers, except EulerDiscrete which may be fractional). */
  timesteps: number[];
  /** Sigma table where the algorithm has one (Euler, DEIS), float32 values. */
  sigmas?: Float32Array | undefined;
  /** Multiplier for the initial noise (float32 value). */
  readonly initNoiseSigma: number;
  numInferenceSteps: number | null;
  setTimesteps(numInferenceSteps: number): void;
  scaleModelInput(sample: Float32Array, t: number): Float32Array;
  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: StepOptions): StepOutput;
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array;
}

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | 'sigmoid';

// ---------------------------------------------------------------------------------------------
// Config resolution (ConfigMixin.from_config semantics)

/**
 * Class defaults overridden by the config's values for keys the class knows. Keys the class does
 * not know are ignored; keys named in `_use_default_values` are dropped first (diffusers'
 * extract_init_dict), and `null` means "use the default" like a missing key.
 */
export function resolveConfig<T extends object>(className: string, defaults: T, config: Record<string, unknown> | undefined): T {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  if (config) {
    const dflt = defaults as Record<string, unknown>;
    const useDefaults = new Set(Array.isArray(config['_use_default_values']) ? (config['_use_default_values'] as string[]) : []);
    for (const [k, v] of Object.entries(config)) {
      if (k.startsWith('_') || useDefaults.has(k) || !(k in defaults) || v === null || v === undefined) continue;
      const d = dflt[k];
      if (d !== null && typeof d !== typeof v && !(Array.isArray(v) && d === null)) {
        throw new ConfigError(`${className}: config key "${k}" should be ${typeof d}, got ${JSON.stringify(v)}`);
      }
      out[k] = v;
    }
  }
  return out as T;
}

export function oneOf<T extends string>(className: string, key: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UnsupportedError(`${className}: ${key} "${v}" is not supported (supported: ${allowed.join(', ')})`);
  }
  return v as T;
}

// ---------------------------------------------------------------------------------------------
// Beta schedules and alphas_cumprod (torch float32)

/**
 * `torch.linspace(start, end, n, dtype=float32)` on CPU (torch 1.13 x86 build, verified bit-exact on
 * the golden betas): float step; the first half is start + step·i, the second end − step·(n−1−i),
 * both compiled to FMAs; written 8 lanes at a time as fma(k, step, base) with base taken at the lane
 * group's first index; the tail past the last full 16 is scalar.
 */
export function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const s = f(start), e = f(end);
  if (n === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const at = (i: number) => (i < half ? fmaf(step, i, s) : fmaf(-step, n - i - 1, e));
  const vecEnd = n - (n % 16);
  for (let i = 0; i < vecEnd; i += 8) {
    const base = at(i);
    for (let k = 0; k < 8; k++) out[i + k] = fmaf(k, step, base);
  }
  for (let i = vecEnd; i < n; i++) out[i] = at(i);
  return out;
}

/** diffusers betas_for_alpha_bar (cosine), computed in float64 then stored as float32. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: number[] | null;
  rescale_betas_zero_snr?: boolean | undefined;
}

export function makeBetas(className: string, c: BetaConfig): Float32Array {
  let betas: Float32Array;
  if (c.trained_betas) betas = Float32Array.from(c.trained_betas);
  else if (c.beta_schedule === 'linear') betas = torchLinspaceF32(c.beta_start, c.beta_end, c.num_train_timesteps);
  else if (c.beta_schedule === 'scaled_linear') {
    betas = torchLinspaceF32(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end), c.num_train_timesteps);
    for (let i = 0; i < betas.length; i++) betas[i] = f(betas[i]! * betas[i]!);
  } else if (c.beta_schedule === 'squaredcos_cap_v2') betas = betasForAlphaBar(c.num_train_timesteps);
  else if (c.beta_schedule === 'sigmoid' && className === 'DDPMScheduler') {
    // torch.sigmoid may differ from this by an ulp; only DDPM offers this schedule.
    const x = torchLinspaceF32(-6, 6, c.num_train_timesteps);
    betas = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) betas[i] = f(f(f(1 / (1 + Math.exp(-x[i]!))) * f(c.beta_end - c.beta_start)) + c.beta_start);
  } else throw new UnsupportedError(`${className}: beta_schedule "${c.beta_schedule}" is not implemented`);
  if (c.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** `torch.cumprod(1 - betas)`: CPU cumprod accumulates in double and stores each prefix as float. */
export function alphasCumprodOf(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/** diffusers rescale_zero_terminal_snr (arXiv 2305.08891, Alg. 1), float32 tensor ops. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const ac = alphasCumprodOf(betas);
  const s = ac.map((a) => f(Math.sqrt(a)));
  const s0 = s[0]!, sT = s[n - 1]!;
  const scale = f(s0 / f(s0 - sT));
  for (let i = 0; i < n; i++) s[i] = f(f(s[i]! - sT) * scale);
  const bar = s.map((v) => f(v * v));
  const out = new Float32Array(n);
  out[0] = f(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f(1 - f(bar[i]! / bar[i - 1]!));
  return out;
}

// ---------------------------------------------------------------------------------------------
// numpy helpers for timestep tables (float64)

/** np.round / ndarray.round: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num, endpoint) in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  if (div <= 0) return num === 1 ? [start] : [];
  const step = (stop - start) / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(step === 0 ? (i / div) * (stop - start) + start : i * step + start);
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for a float step (numpy fills start + i·(v1 − v0)). */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  if (len === 0) return out;
  const delta = start + step - start;
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : start + i * delta);
  return out;
}

/** np.interp(x, arange(len(fp)), fp) for x inside the table (float64 result). */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0]!;
  if (x >= n - 1) return fp[n - 1]!;
  const j = Math.floor(x);
  if (x === j) return fp[j]!;
  const slope = (fp[j + 1]! - fp[j]!) / 1;
  return slope * (x - j) + fp[j]!;
}

/** `((1 − ᾱ) / ᾱ) ** 0.5` as torch computes it on the float32 table. */
export function karrasSigmasF32(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => f(Math.sqrt(f(f(1 - a) / a))));
}

// ---------------------------------------------------------------------------------------------
// Step plumbing

/** Pulls the next noise tensor, checking its size. */
export function takeNoise(className: string, opts: StepOptions | undefined, n: number): Float32Array {
  const src = opts?.noise;
  if (!src) throw new InvalidArgumentError(`${className}.step: this step injects noise; pass opts.noise (a tensor or a generator callback)`);
  const z = typeof src === 'function' ? src() : src;
  if (z.length !== n) throw new ShapeError(`${className}.step: noise has ${z.length} elements, expected ${n}`);
  return z;
}

export function checkSameLength(className: string, a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new ShapeError(`${className}: ${what} lengths differ (${a.length} vs ${b.length})`);
}

/**
 * diffusers `_init_step_index`: the position of t in the schedule (the second match when t
 * appears twice, so img2img starting mid-schedule does not skip a sigma).
 */
export function indexOfTimestep(className: string, timesteps: readonly number[], t: number, fallbackLast = false): number {
  const hits: number[] = [];
  for (let i = 0; i < timesteps.length; i++) if (timesteps[i] === t) hits.push(i);
  if (hits.length === 0) {
    if (fallbackLast) return timesteps.length - 1;
    throw new InvalidArgumentError(`${className}: timestep ${t} is not in the schedule [${timesteps.join(', ')}]`);
  }
  return hits.length > 1 ? hits[1]! : hits[0]!;
}

/** x ↦ a·x + b·y elementwise in float32 (two products, one sum, as torch does). */
export function axpby(a: number, x: Float32Array, b: number, y: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(f(a * x[i]!) + f(b * y[i]!));
  return out;
}
