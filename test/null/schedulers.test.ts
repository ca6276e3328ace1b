// Schedulers vs diffusers v0.25.1 golden chains (test/fixtures/golden/schedulers and schedulers_deis):
// timestep tables, sigmas, init_noise_sigma, alphas_cumprod, and full step() chains with the
// reference's injected noise. Our chain runs on its own outputs, so errors would accumulate.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import {
  schedulerFromConfig, DDPMScheduler, EulerDiscreteScheduler, DEISMultistepScheduler, LCMScheduler, DDIMScheduler,
  type Scheduler,
} from '../../packages/models/src/schedulers';
import { compareArrays, type Tol } from '../helpers/compare';

const root = new URL('../fixtures/golden/', import.meta.url).pathname;

async function open(name: string) {
  const io = await SafetensorsFile.open(nodeFiles, join(root, name, 'io.safetensors'));
  const caseJson = JSON.parse(await nodeFiles.readText(join(root, name, 'case.json')));
  const config = JSON.parse(await nodeFiles.readText(join(root, name, 'config.json')));
  /** Float tensors as Float32Array, int64 as numbers. */
  const f32 = async (k: string) => (await io.read(k, 'f32')) as Float32Array;
  const nums = async (k: string) => Array.from(await io.read(k, 'f32'));
  return { io, caseJson, config, f32, nums };
}

// Worst errors per check, printed at the end for the report.
const stats = new Map<string, { maxAbs: number; exact: number; total: number }>();
function check(kind: string, got: Float32Array, ref: Float32Array, tol: Tol, what: string) {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const r = compareArrays(got, ref, tol);
  let exact = 0;
  for (let i = 0; i < ref.length; i++) if (Object.is(got[i], ref[i]) || got[i] === ref[i]) exact++;
  const s = stats.get(kind) ?? { maxAbs: 0, exact: 0, total: 0 };
  s.maxAbs = Math.max(s.maxAbs, r.maxAbs);
  s.exact += exact;
  s.total += ref.length;
  stats.set(kind, s);
  if (r.failures) expect.fail(`${what}: ${r.failures}/${ref.length} outside atol=${tol.atol} rtol=${tol.rtol}; max abs ${r.maxAbs.toExponential(3)}\n  ${r.first.join('\n  ')}`);
}
afterAll(() => {
  const lines = [...stats].map(([k, s]) => `${k}: max abs ${s.maxAbs.toExponential(3)}, bit-exact ${s.exact}/${s.total}`);
  console.log(`scheduler errors vs golden:\n  ${lines.join('\n  ')}`);
});

/** Noise callback that replays the reference's per-step noise tensors and counts the draws. */
function noiseReplay(tensors: Float32Array[]) {
  let used = 0;
  return {
    fn: () => {
      const z = tensors[used++];
      if (!z) throw new Error(`step drew noise #${used} but the reference drew only ${tensors.length}`);
      return z;
    },
    get used() {
      return used;
    },
  };
}

// The case gives no per-tensor tolerance; the chains are float32 and values reach ~65, so use the
// DEIS case's atol/rtol 1e-5 (the reference's own f32-vs-f64 gap is ≤ 1.6e-5 absolute on |x| ≤ 66).
const TOL: Tol = { atol: 1e-5, rtol: 1e-5 };

describe('schedulers golden (DDPM, Euler, DDIM, LCM × sd15, sd21_base, sd_turbo, sdxs)', async () => {
  const g = await open('schedulers');
  const bases = Object.keys(g.caseJson.base_configs) as string[];

  for (const base of bases) {
    it(`${base}: betas and alphas_cumprod (float32, DDPM of that config)`, async () => {
      const s = new DDPMScheduler(g.caseJson.base_configs[base]);
      check('betas', s.betas, await g.f32(`${base}.betas`), { atol: 0, rtol: 0 }, `${base}.betas`);
      check('alphas_cumprod', s.alphasCumprod, await g.f32(`${base}.alphas_cumprod`), { atol: 0, rtol: 0 }, `${base}.alphas_cumprod`);
    });
  }

  for (const key of Object.keys(g.config)) {
    it(`${key}: effective config after from_config`, () => {
      const [base, cls] = key.split('.') as [string, string];
      const s = schedulerFromConfig(g.caseJson.base_configs[base], cls);
      const want = g.config[key] as Record<string, unknown>;
      for (const [k, v] of Object.entries(s.config)) {
        expect(k in want, `${key}: our key ${k} missing from the reference config`).toBe(true);
        expect(v, `${key}.${k}`).toEqual(want[k] ?? null);
      }
    });
  }

  for (const [combo, info] of Object.entries(g.caseJson.combos) as [string, any][]) {
    it(`${combo}: timesteps, sigmas, init_noise_sigma and the step chain`, async () => {
      const [base, cls, nStr] = combo.split('.') as [string, string, string];
      const n = Number(nStr.slice(1));
      const s: Scheduler = schedulerFromConfig(g.caseJson.base_configs[base], cls);
      s.setTimesteps(n);
      expect(s.timesteps, `${combo}.timesteps`).toEqual(info.timesteps);
      expect(s.timesteps).toEqual(await g.nums(`${combo}.timesteps`));
      if (info.sigmas) {
        expect(Array.from(s.sigmas!), `${combo}.sigmas`).toEqual(info.sigmas);
        check('sigmas', s.sigmas!, await g.f32(`${combo}.sigmas`), { atol: 0, rtol: 0 }, `${combo}.sigmas`);
      }
      expect(s.initNoiseSigma, `${combo}.init_noise_sigma`).toBe(info.init_noise_sigma);

      const xT = await g.f32(`${combo}.x_T`);
      let sample: Float32Array = xT.map((v) => Math.fround(v * s.initNoiseSigma));
      check('sample_init', sample, await g.f32(`${combo}.sample_init`), TOL, `${combo}.sample_init`);
      let drawn = 0;
      for (let i = 0; i < s.timesteps.length; i++) {
        const p = `${combo}.step${i}`;
        const t = s.timesteps[i]!;
        expect(t, `${p}.t`).toBe((await g.nums(`${p}.t`))[0]);
        check('sample_in', sample, await g.f32(`${p}.sample_in`), TOL, `${p}.sample_in`);
        check('scaled_model_input', s.scaleModelInput(sample, t), await g.f32(`${p}.scaled_model_input`), TOL, `${p}.scaled_model_input`);
        const noises: Float32Array[] = [];
        for (let j = 0; g.io.has(`${p}.noise${j}`); j++) noises.push(await g.f32(`${p}.noise${j}`));
        const replay = noiseReplay(noises);
        const out = s.step(await g.f32(`${p}.model_output`), t, sample, { noise: replay.fn });
        expect(replay.used, `${p}: noise tensors drawn`).toBe(noises.length);
        drawn += replay.used;
        check('prev_sample', out.prevSample, await g.f32(`${p}.prev_sample`), TOL, `${p}.prev_sample`);
        const x0 = cls === 'LCMScheduler' ? out.denoised : out.predOriginalSample;
        check('pred_original_sample', x0!, await g.f32(`${p}.pred_original_sample`), TOL, `${p}.pred_original_sample`);
        sample = out.prevSample;
      }
      expect(drawn, `${combo}: noise tensors drawn`).toBe(info.noise_tensors_drawn);
      check('final', sample, await g.f32(`${combo}.final`), TOL, `${combo}.final`);
    });
  }
});

describe('schedulers golden (DEISMultistep, order 2, linspace/leading/trailing, 1–8 steps)', async () => {
  const g = await open('schedulers_deis');
  const tol: Tol = { atol: g.caseJson.tolerance.atol, rtol: g.caseJson.tolerance.rtol };
  for (const [run, info] of Object.entries(g.caseJson.runs) as [string, any][]) {
    it(`${run}`, async () => {
      const s = schedulerFromConfig(g.config, { timestep_spacing: info.spacing });
      expect(s).toBeInstanceOf(DEISMultistepScheduler);
      s.setTimesteps(info.num_inference_steps);
      expect(s.timesteps).toEqual(info.timesteps);
      expect(s.timesteps).toEqual(await g.nums(`${run}.timesteps`));
      check('deis sigmas', s.sigmas!, await g.f32(`${run}.sigmas`), { atol: 0, rtol: 0 }, `${run}.sigmas`);
      expect(s.initNoiseSigma).toBe(info.init_noise_sigma);
      let sample: Float32Array = (await g.f32(`${run}.x_T`)).map((v) => Math.fround(v * s.initNoiseSigma));
      for (let i = 0; i < s.timesteps.length; i++) {
        const p = `${run}.step${i}`;
        check('deis sample_in', sample, await g.f32(`${p}.sample_in`), tol, `${p}.sample_in`);
        const out = s.step(await g.f32(`${p}.model_output`), s.timesteps[i]!, s.scaleModelInput(sample, s.timesteps[i]!));
        check('deis prev_sample', out.prevSample, await g.f32(`${p}.prev_sample`), tol, `${p}.prev_sample`);
        sample = out.prevSample;
      }
      check('deis final', sample, await g.f32(`${run}.final`), tol, `${run}.final`);
    });
  }
});

describe('scheduler construction', () => {
  const sd15 = {
    _class_name: 'PNDMScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
    num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false,
  };
  it('PNDM configs need a class override; unknown keys are ignored, missing keys take class defaults', () => {
    expect(() => schedulerFromConfig(sd15)).toThrow(/PNDMScheduler is not implemented/);
    const lcm = schedulerFromConfig(sd15, 'LCMScheduler') as LCMScheduler;
    expect(lcm).toBeInstanceOf(LCMScheduler);
    expect(lcm.config.set_alpha_to_one).toBe(false);
    expect(lcm.config.original_inference_steps).toBe(50);
    expect('skip_prk_steps' in lcm.config).toBe(false);
    const ddim = schedulerFromConfig(sd15, { _class_name: 'DDIMScheduler', timestep_spacing: 'trailing' }) as DDIMScheduler;
    ddim.setTimesteps(4);
    expect(ddim.timesteps).toEqual([999, 749, 499, 249]);
  });
  it('LCM schedules and boundary scalings (models.md §3.2)', () => {
    const s = new LCMScheduler();
    for (const [n, ts] of [[1, [999]], [2, [999, 499]], [4, [999, 759, 499, 259]], [8, [999, 879, 759, 639, 499, 379, 259, 139]]] as const) {
      s.setTimesteps(n);
      expect(s.timesteps).toEqual(ts);
    }
    const [cSkip, cOut] = s.boundaryScalings(999);
    expect(cSkip).toBeCloseTo(0.25 / (9990 ** 2 + 0.25), 12);
    expect(cOut).toBeCloseTo(1, 6);
  });
  it('SDXS-0.9 Euler numbers (models.md §7.2; torch gives σ_999 = 14.614645, not the notes\' 14.6146555)', () => {
    const s = new EulerDiscreteScheduler({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', timestep_spacing: 'trailing', steps_offset: 1 });
    s.setTimesteps(1);
    expect(s.timesteps).toEqual([999]);
    expect(s.initNoiseSigma).toBe(Math.fround(14.614645004272461));
    // unet_in = z·σ / sqrt(σ² + 1) = 0.99766725·z
    expect(s.scaleModelInput(new Float32Array([s.initNoiseSigma]), 999)[0]).toBeCloseTo(0.99766725, 6);
  });
  it('rejects unsupported options clearly', () => {
    expect(() => new EulerDiscreteScheduler({ use_karras_sigmas: true })).toThrow(/use_karras_sigmas/);
    expect(() => new DDIMScheduler({ timestep_spacing: 'karras' })).toThrow(/timestep_spacing/);
    expect(() => new DDPMScheduler({ beta_schedule: 'exp' })).toThrow(/beta_schedule/);
    const ddpm = new DDPMScheduler();
    ddpm.setTimesteps(2);
    expect(() => ddpm.step(new Float32Array(4), ddpm.timesteps[0]!, new Float32Array(4))).toThrow(/opts.noise/);
  });
  it('DEIS leading/trailing/linspace tables and the order-1/2 switch', () => {
    const s = new DEISMultistepScheduler({ solver_order: 1, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 666, 333]);
    const x = new Float32Array([0.5, -1]);
    for (const t of s.timesteps) expect(s.step(new Float32Array([0.1, 0.2]), t, x).prevSample.length).toBe(2);
  });
});
