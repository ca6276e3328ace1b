import { UnsupportedError } from '@fewstep/tensor';
import type { Scheduler } from './scheduler.js';
import { EulerDiscreteScheduler } from './scheduling_euler_discrete.js';
import { DDIMScheduler } from './scheduling_ddim.js';
import { DDPMScheduler } from './scheduling_ddpm.js';
import { LCMScheduler } from './scheduling_lcm.js';
import { DEISMultistepScheduler } from './scheduling_deis_multistep.js';
import { ConfigError } from '../errors.js';

export {
  type Scheduler, type StepOptions, type StepOutput, type NoiseSource, type BetaSchedule, type BetaConfig,
  makeBetas, alphasCumprodOf, torchLinspaceF32, resolveConfig,
} from './scheduler.js';
export { EulerDiscreteScheduler, EULER_DEFAULTS, type EulerDiscreteConfig, type EulerStepOptions } from './scheduling_euler_discrete.js';
export { DDIMScheduler, DDIM_DEFAULTS, type DDIMConfig, type DDIMStepOptions } from './scheduling_ddim.js';
export { DDPMScheduler, DDPM_DEFAULTS, type DDPMConfig } from './scheduling_ddpm.js';
export { LCMScheduler, LCM_DEFAULTS, type LCMConfig } from './scheduling_lcm.js';
export { DEISMultistepScheduler, DEIS_DEFAULTS, type DEISConfig } from './scheduling_deis_multistep.js';

const CLASSES: Record<string, new (config?: Record<string, unknown>) => Scheduler> = {
  EulerDiscreteScheduler,
  DDIMScheduler,
  DDPMScheduler,
  LCMScheduler,
  DEISMultistepScheduler,
};

export type SchedulerClassName = 'EulerDiscreteScheduler' | 'DDIMScheduler' | 'DDPMScheduler' | 'LCMScheduler' | 'DEISMultistepScheduler';
export const SCHEDULER_CLASSES = Object.keys(CLASSES) as SchedulerClassName[];

/**
 * `<Class>.from_config(config)`: the class comes from `override` (a class name, or an object whose
 * `_class_name` names it) or else from the config's `_class_name`. Like diffusers, keys the class
 * does not take are ignored and missing keys take that class's defaults, so an SD1.5
 * PNDMScheduler config can build any of these. An object override's other keys replace the
 * config's (e.g. `{ timestep_spacing: 'trailing' }`).
 */
export function schedulerFromConfig(config: Record<string, unknown>, override?: string | Record<string, unknown>): Scheduler {
  const extra = typeof override === 'string' ? { _class_name: override } : (override ?? {});
  const name = (extra['_class_name'] ?? config['_class_name']) as string | undefined;
  if (!name) throw new ConfigError(`schedulerFromConfig: no _class_name in the config and no class override`);
  const Cls = CLASSES[name];
  if (!Cls) {
    throw new UnsupportedError(
      `schedulerFromConfig: ${name} is not implemented; pass a class override (one of ${SCHEDULER_CLASSES.join(', ')})`,
    );
  }
  const merged: Record<string, unknown> = { ...config };
  for (const [k, v] of Object.entries(extra)) {
    if (k === '_class_name') continue;
    merged[k] = v;
    // An explicit value must win over a "this was a default" marker in the stored config.
    if (Array.isArray(merged['_use_default_values'])) merged['_use_default_values'] = (merged['_use_default_values'] as string[]).filter((x) => x !== k);
  }
  return new Cls(merged);
}
