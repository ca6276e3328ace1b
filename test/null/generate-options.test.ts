// resolveGenerateOptions: the one place a generation's rules live (pure: no GPU). The CLI calls it before it
// downloads anything, the pipeline first thing in generate(); each bad value is an InvalidArgumentError whose
// `field` names the option.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@fewstep/tensor';
import { MAX_IMAGE_SIDE, modelInfoFromConfigs, resolveGenerateOptions, type GenerateOptions, type ModelInfo, type RGBImage } from '@fewstep/models';

const SDXS: ModelInfo = modelInfoFromConfigs({
  unet: { sample_size: 64, mid_block_type: null, in_channels: 4 },
  scheduler: { _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' },
  vae: { _class_name: 'AutoencoderTiny', decoder_block_out_channels: [64, 64, 64, 64] },
  textEncoder: { num_hidden_layers: 23 },
});
const SD15: ModelInfo = modelInfoFromConfigs({
  unet: { sample_size: 64, in_channels: 4 },
  scheduler: { _class_name: 'PNDMScheduler' },
  schedulerOverride: 'DDIMScheduler',
  vae: { block_out_channels: [128, 256, 512, 512] },
});
const img = (w: number, h: number): RGBImage => ({ width: w, height: h, data: new Uint8Array(w * h * 3) });
const plan = (o: GenerateOptions, m = SDXS) => resolveGenerateOptions(o, m, () => 7);

function rejects(o: GenerateOptions, field: string, message: RegExp, m = SDXS): void {
  let err: unknown;
  try {
    plan(o, m);
  } catch (e) {
    err = e;
  }
  expect(err, `${field}: ${message}`).toBeInstanceOf(InvalidArgumentError);
  const e = err as InvalidArgumentError;
  expect(e.code).toBe('invalid_argument');
  expect(e.field).toBe(field);
  expect(e.message).toMatch(message);
}

describe('modelInfoFromConfigs', () => {
  it('SDXS (no mid block): 1 step, guidance 0, 512², Euler; SD1.5 with DDIM: 25 steps, 7.5', () => {
    expect(SDXS).toEqual({ defaults: { steps: 1, guidance: 0, width: 512, height: 512 }, vaeScaleFactor: 8, latentChannels: 4, hasControlNet: false, textEncoderLayers: 23, scheduler: 'EulerDiscreteScheduler' });
    expect(SD15.defaults).toEqual({ steps: 25, guidance: 7.5, width: 512, height: 512 });
    expect(SD15.scheduler).toBe('DDIMScheduler');
  });
  it('LCM → 4 steps, guidance 1; caller defaults win (YOSO)', () => {
    const lcm = modelInfoFromConfigs({ unet: {}, scheduler: { _class_name: 'PNDMScheduler' }, schedulerOverride: 'LCMScheduler', defaults: { steps: 2, guidance: 1.5 } });
    expect(lcm.defaults).toEqual({ steps: 2, guidance: 1.5, width: 512, height: 512 });
  });
  it('an unknown scheduler fails here, before any weights', () => {
    expect(() => modelInfoFromConfigs({ unet: {}, scheduler: { _class_name: 'PNDMScheduler' } })).toThrow(/PNDMScheduler is not implemented/);
  });
});

describe('resolveGenerateOptions', () => {
  it('applies the model defaults and draws a seed', () => {
    const p = plan({ prompt: 'a cat' });
    expect(p).toMatchObject({ prompts: ['a cat'], negatives: [''], steps: 1, denoisingSteps: 1, guidance: 0, cfg: false, seed: 7n, width: 512, height: 512, latentShape: [1, 4, 64, 64], init: { kind: 'noise' }, control: null, resize: 'crop', warnings: [] });
    expect(plan({ prompt: 'a', seed: -1 }).seed).toBe(7n);
    expect(plan({ prompt: 'a', seed: 2n ** 64n - 1n }).seed).toBe(2n ** 64n - 1n);
  });

  it('batches prompts × batchSize; negative prompts per prompt; CFG only above guidance 1', () => {
    const p = plan({ prompt: ['a', 'b'], negativePrompt: ['x', 'y'], batchSize: 3, guidance: 2 });
    expect([p.images, p.cfg, p.latentShape[0], p.negatives]).toEqual([6, true, 6, ['x', 'y']]);
    expect(plan({ prompt: 'a', negativePrompt: 'blurry' }).warnings).toEqual(['the negative prompt has no effect at guidance 0 (classifier-free guidance needs guidance > 1)']);
  });

  it('img2img: strength 1 by default for one-step models, 0.8 (with a longer schedule) otherwise', () => {
    const sdxs = plan({ prompt: 'x', init: { kind: 'image', image: img(640, 480) } });
    expect(sdxs.init).toMatchObject({ kind: 'image', strength: 1 });
    expect([sdxs.steps, sdxs.denoisingSteps, sdxs.width, sdxs.height]).toEqual([1, 1, 640, 480]);
    const sd = plan({ prompt: 'x', init: { kind: 'image', image: img(512, 512) } }, SD15);
    expect([sd.steps, sd.denoisingSteps]).toEqual([32, 25]);
    // Strength given, steps not: the smallest schedule that still runs the default step count.
    const half = plan({ prompt: 'x', init: { kind: 'image', image: img(64, 64), strength: 0.5 } });
    expect([half.steps, half.denoisingSteps]).toEqual([2, 1]);
  });

  it('an image sets the default size (floored to 8, as diffusers) unless width/height are given', () => {
    expect(plan({ prompt: 'x', init: { kind: 'image', image: img(517, 389) } })).toMatchObject({ width: 512, height: 384 });
    expect(plan({ prompt: 'x', width: 256, height: 256, init: { kind: 'image', image: img(517, 389) } })).toMatchObject({ width: 256, height: 256 });
    expect(plan({ prompt: 'x', control: { image: img(96, 64) } }, { ...SDXS, hasControlNet: true })).toMatchObject({ width: 96, height: 64, control: { scale: 1 } });
  });

  it('latents and informative references fix the size', () => {
    const lat = { data: new Float32Array(2 * 4 * 8 * 16), shape: [2, 4, 8, 16] };
    expect(plan({ prompt: ['a', 'b'], init: { kind: 'latents', latents: lat } })).toMatchObject({ width: 128, height: 64 });
    expect(plan({ prompt: 'a', init: { kind: 'informative', reference: { latents: lat } } })).toMatchObject({ width: 128, height: 64, latentShape: [1, 4, 8, 16] });
    expect(plan({ prompt: 'a', init: { kind: 'informative', reference: { images: [img(64, 64), img(64, 64)] } } })).toMatchObject({ width: 64, height: 64 });
  });

  it('promptEmbeds instead of prompt', () => {
    const e = { data: new Float32Array(2 * 77 * 8), shape: [2, 77, 8] };
    const p = plan({ promptEmbeds: e, batchSize: 2 });
    expect([p.prompts, p.promptCount, p.images]).toEqual([null, 2, 4]);
  });

  it('rejects what cannot work, naming the option', () => {
    const lat1 = { data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] };
    rejects({ prompt: [] }, 'prompt', /must be a string or a non-empty list of strings/);
    rejects({}, 'prompt', /a prompt \(or promptEmbeds\) is required/);
    rejects({ prompt: 'x', promptEmbeds: { data: new Float32Array(8), shape: [1, 1, 8] } }, 'prompt', /either prompt or promptEmbeds/);
    rejects({ prompt: 'x', steps: 0 }, 'steps', /must be an integer from 1 to 1000, got 0/);
    rejects({ prompt: 'x', steps: 1.5 }, 'steps', /must be an integer/);
    rejects({ prompt: 'x', height: 100 }, 'height', /must be a multiple of 8 from 8 to 4096, got 100/);
    rejects({ prompt: 'x', width: MAX_IMAGE_SIDE + 8 }, 'width', /from 8 to 4096/);
    rejects({ prompt: 'x', batchSize: 0 }, 'batchSize', /must be an integer from 1 to 64/);
    rejects({ prompt: ['a', 'b'], batchSize: 40 }, 'batchSize', /2 prompts × batchSize 40 = 80 images; at most 64/);
    rejects({ prompt: 'x', guidance: NaN }, 'guidance', /must be a finite number ≥ 0/);
    rejects({ prompt: 'x', seed: 1.5 }, 'seed', /must be an integer/);
    rejects({ prompt: 'x', seed: -2 }, 'seed', /or -1 for a random seed/);
    rejects({ prompt: ['a', 'b'], negativePrompt: ['n'] }, 'negativePrompt', /has 1 entries but there are 2 prompts/);
    rejects({ prompt: 'x', init: { kind: 'image', image: img(16, 16), strength: 0 } }, 'init.strength', /must be in \(0, 1\]/);
    rejects({ prompt: 'x', init: { kind: 'image', image: img(16, 16), strength: 1.5 } }, 'init.strength', /must be in \(0, 1\]/);
    rejects({ prompt: 'x', steps: 2, init: { kind: 'image', image: img(16, 16), strength: 0.2 } }, 'init.strength', /0.2 with steps 2 runs no denoising step .* raise steps to 5 or strength to 0.5/);
    rejects({ prompt: 'x', init: { kind: 'image', image: img(4, 16) } }, 'init.image', /is 4×16, smaller than 8×8/);
    rejects({ prompt: 'x', init: { kind: 'image', image: img(8200, 8) } }, 'init.image', /larger than 4096 pixels a side; pass width and height/);
    rejects({ prompt: 'x', init: { kind: 'image', image: { width: 16, height: 16, data: new Uint8Array(10) } } }, 'init.image', /data has 10 bytes/);
    rejects({ prompt: 'x', width: 128, init: { kind: 'latents', latents: lat1 } }, 'width', /128 does not match init.latents \(8 × 8 = 64\)/);
    rejects({ prompt: ['a', 'b'], init: { kind: 'latents', latents: lat1 } }, 'init.latents', /shape \[1, 4, 8, 8\] must be \[2, 4, height\/8, width\/8\]/);
    rejects({ prompt: 'x', init: { kind: 'informative', reference: { latents: lat1 } } }, 'init.reference.latents', /holds 1 latent; the informative init needs at least 2/);
    rejects({ prompt: 'x', init: { kind: 'informative', reference: { images: [img(8, 8)] } } }, 'init.reference.images', /needs at least 2 images/);
    rejects({ prompt: 'x', init: { kind: 'nope' } as never }, 'init', /kind must be/);
    rejects({ prompt: 'x', control: { image: img(64, 64) } }, 'control', /needs a ControlNet/);
    rejects({ prompt: 'x', init: { kind: 'image', image: img(64, 64) }, control: { image: img(64, 64) } }, 'control', /not supported/, { ...SDXS, hasControlNet: true });
    rejects({ prompt: 'x', control: { image: img(64, 64), scale: -1 } }, 'control.scale', /≥ 0/, { ...SDXS, hasControlNet: true });
    rejects({ prompt: 'x', clipSkip: 23 }, 'clipSkip', /from 0 to 22/);
    rejects({ prompt: 'x', resize: 'squash' as never }, 'resize', /crop, fit, stretch/);
  });
});
