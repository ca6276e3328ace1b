// fewstep generate: flags → inputs → the model's configs → the request checked (resolveGenerateOptions) →
// weights downloaded and loaded → one generate() → image files. Everything that can be checked is checked
// before any weights are downloaded.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { invertControlImage, resolveGenerateOptions, type GenerateOptions, type GenerationInfo, type GenerationPlan, type HostTensor, type RGBImage } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { checkLoras } from '../lora_source.js';
import { writeAtomic } from '../write_atomic.js';
import { checkControlNetSource } from '../generation/controlnet_source.js';
import { LOW_MEMORY_FLAG, MODEL_FLAGS, QUIET_FLAG, RESIZE_FLAG, SAMPLING_FLAGS, modelOptions, requestError, resizeOption, samplingOptions, seedOption } from '../generation/flags.js';
import { readImageFlag, readLatentsFlag } from '../generation/image_inputs.js';
import { YOSO_NOTE, loadModel, planModel } from '../generation/model.js';
import { OUTPUT_FORMATS, checkOutDir, checkOutFile, encodeImage, generationInfo, imageFileName, type OutputFormat } from '../generation/outputs.js';
import { createProgressUI, formatTimings } from '../generation/progress.js';

/** What the flags say the denoising starts from, with the files behind it. */
type InitFlags =
  | { kind: 'noise' }
  | { kind: 'latents'; path: string }
  | { kind: 'image'; path: string; strength: number | undefined }
  | { kind: 'reference-latents'; path: string }
  | { kind: 'reference-images'; paths: string[] };

/** Flag combinations (which init, which ControlNet flags go together); the values are resolveGenerateOptions' to judge. */
function initFlags(flags: Record<string, unknown>): InitFlags {
  const strength = flags['strength'] as number | undefined;
  const initPath = flags['init-image'] as string | undefined, latentsPath = flags['latents'] as string | undefined;
  const refPath = flags['init-latents'] as string | undefined, refImages = flags['init-images'] as string[] | undefined;
  const mode = flags['init'] as 'noise' | 'latent-mean' | undefined;
  if (strength !== undefined && initPath === undefined) throw new UsageError('--strength needs --init-image');
  if (initPath !== undefined && latentsPath !== undefined) throw new UsageError('--init-image and --latents cannot be used together');
  const informative = mode === 'latent-mean' || refPath !== undefined || refImages !== undefined;
  if (informative) {
    if (mode === 'noise') throw new UsageError(`${refPath !== undefined ? '--init-latents' : '--init-images'} sets the informative init; it cannot be combined with --init noise`);
    if (latentsPath !== undefined || initPath !== undefined) throw new UsageError('--init latent-mean replaces the initial noise; it cannot be combined with --latents or --init-image');
    if (refPath !== undefined && refImages !== undefined) throw new UsageError('give either --init-latents or --init-images, not both');
    if (refPath !== undefined) return { kind: 'reference-latents', path: refPath };
    if (refImages !== undefined) return { kind: 'reference-images', paths: refImages };
    throw new UsageError('--init latent-mean needs --init-latents <file.safetensors> or --init-images <a.png> <b.jpg>... (reference latents or images for the mean and std)');
  }
  if (latentsPath !== undefined) return { kind: 'latents', path: latentsPath };
  if (initPath !== undefined) return { kind: 'image', path: initPath, strength };
  return { kind: 'noise' };
}

/** Where the images go: a file (its extension is the format), stdout (one PNG), or a folder. */
type Destination = { kind: 'file'; path: string; format: OutputFormat } | { kind: 'stdout' } | { kind: 'dir'; dir: string; format: OutputFormat };

export const generate: Command = {
  name: 'generate',
  usage:
    'fewstep generate <prompt>... (-o <file.png|.jpg|.webp|-> | --out-dir <dir> [--format png|jpeg|webp]) [-p <prompt>]... [--model <id|dir>]\n' +
    '       [-s N] [--steps N] [--guidance G] [-W W -H H] [--batch N] [--dtype f32|f16] [--vae tiny|large] [--vae-dtype f32|f16] [--scheduler Name]\n' +
    '       [--lora <file|repo>[:scale]]... [-n <negative prompt>] [--clip-skip N] [--init-image <image> [--strength S]] [--resize crop|fit|stretch]\n' +
    '       [--latents f.safetensors] [--init latent-mean (--init-latents ref.safetensors | --init-images a.png b.jpg ...)]\n' +
    '       [--controlnet <id|dir> --control-image <image> [--control-scale S] [--invert-control]] [--revision R] [--json] [--quiet]',
  description:
    'Text-to-image (and image-to-image with --init-image) with a diffusers StableDiffusionPipeline folder or Hugging Face\n' +
    'repo. Only the files the pipeline needs are downloaded into the HF cache (HF_HUB_OFFLINE=1 works from the cache), and\n' +
    'only after the request has been checked against the model\'s small config files: a value that cannot work is one\n' +
    'error line naming the flag (exit 2) before any weights are downloaded.\n' +
    'Prompts are the arguments plus every -p; several make one batch, like diffusers `prompt=[...]`; --batch N gives N\n' +
    'images per prompt. -o takes exactly one image (-o - writes it as PNG to stdout); --out-dir writes 0000-<prompt>.png,\n' +
    '... in batch order. The seed is random unless given (or -1), and printed.\n' +
    'Images in: PNG, JPEG or WebP (transparency over white). An --init-image, --control-image or reference image of another\n' +
    'size than the output is fit by --resize (default crop: scaled to cover, center-cropped); without --width/--height the\n' +
    'output takes the image\'s size (rounded down to a multiple of 8).\n' +
    'Images out: PNG carries the parameters as an A1111 "parameters" text chunk and a "fewstep" JSON chunk; JPEG and WebP\n' +
    '(--out x.jpg / x.webp, or --format) carry the same text as EXIF UserComment (ASCII: other characters transliterated)\n' +
    'and exactly in XMP (dc:description; the JSON as fewstep:parameters).\n' +
    '--latents takes a safetensors file with one tensor "latents" [batch, 4, H/8, W/8], used like diffusers\' `latents=`.\n' +
    'YOSO\'s one-step informative init starts from the mean and std of reference latents: --init-images (≥ 2 images,\n' +
    'encoded by the model\'s own VAE) or --init-latents (VAE latents as `fewstep run <vae> --method encode` writes them).\n' +
    '--controlnet runs diffusers\' StableDiffusionControlNetPipeline with --control-image as `image=` (RGB, uint8/255;\n' +
    '--invert-control first makes it 255 − image).\n' +
    'Progress goes to stderr (a status line on a terminal); --json prints a summary on stdout. Ctrl-C cancels (exit 130,\n' +
    'no partial file). Use -- before prompts that start with "-".',
  flags: {
    prompt: { type: 'string', short: 'p', multiple: true, arg: 'text', help: 'A prompt (besides the positional ones)' },
    out: { type: 'string', short: 'o', arg: 'file|-', help: 'Output file: .png, .jpg/.jpeg or .webp (only when one image results); - = PNG on stdout' },
    'out-dir': { type: 'string', arg: 'dir', help: 'Output folder: one file per image, named in batch order' },
    format: { type: 'string', choices: OUTPUT_FORMATS, help: 'File format in --out-dir (default png)' },
    seed: { type: 'int', short: 's', arg: 'N', help: 'Generator seed, as torch.Generator("cpu").manual_seed(N); -1 = random (default, printed)' },
    batch: { type: 'int', default: 1, arg: 'N', help: 'Images per prompt' },
    ...MODEL_FLAGS,
    ...LOW_MEMORY_FLAG,
    ...SAMPLING_FLAGS,
    'init-image': { type: 'string', arg: 'image', help: 'PNG, JPEG or WebP to start from (image-to-image)' },
    strength: { type: 'number', help: 'With --init-image: how much to change it, 0 < S ≤ 1 (default 1 for one-step models, else 0.8)' },
    ...RESIZE_FLAG,
    latents: { type: 'string', arg: 'file', help: 'safetensors file with the initial noise tensor "latents" [batch, 4, H/8, W/8]' },
    init: { type: 'string', choices: ['noise', 'latent-mean'], help: 'Initial latents: noise (diffusers; default), or latent-mean = YOSO\'s informative prior (one-step YOSO; from --init-images or --init-latents)' },
    'init-images': { type: 'string', variadic: true, multiple: true, arg: 'image', help: 'The informative init\'s reference images (≥ 2; PNG, JPEG, WebP), encoded by the model\'s VAE; implies --init latent-mean' },
    'init-latents': { type: 'string', arg: 'file', help: 'The informative init\'s reference latents: safetensors with "latents" [N ≥ 2, 4, H/8, W/8] as `fewstep run <vae> --method encode` writes them (scaled by the VAE\'s scaling_factor here); implies --init latent-mean' },
    controlnet: { type: 'string', arg: 'id|dir', help: 'ControlNetModel folder or hub repo (e.g. IDKiro/sdxs-512-dreamshaper-sketch); needs --control-image' },
    'control-image': { type: 'string', arg: 'image', help: 'With --controlnet: the conditioning image (PNG, JPEG, WebP); sets the output size unless --width/--height do' },
    'control-scale': { type: 'number', help: 'With --controlnet: conditioning scale, ≥ 0 (default 1)' },
    'invert-control': { type: 'boolean', help: 'With --controlnet: use 255 − the control image (black-on-white sketch → white on black, as IDKiro\'s sketch demo does)' },
    json: { type: 'boolean', help: 'Print a JSON summary (files, seed, timings) on stdout' },
    ...QUIET_FLAG,
  },
  async run({ flags, positionals }, io) {
    const t0 = performance.now();
    const { signal } = io;
    // ---- flags: syntax and combinations
    const prompts = [...positionals, ...((flags['prompt'] as string[] | undefined) ?? [])];
    if (prompts.length === 0) throw new UsageError('give at least one prompt (an argument or -p; put -- before a prompt that starts with "-")');
    const model = modelOptions(flags);
    const sampling = samplingOptions(flags);
    const quiet = Boolean(flags['quiet']), json = Boolean(flags['json']);
    const out = flags['out'] as string | undefined, outDir = flags['out-dir'] as string | undefined;
    if (out === undefined && outDir === undefined) throw new UsageError('give -o/--out <file> (- for stdout) or --out-dir <dir>');
    if (out !== undefined && outDir !== undefined) throw new UsageError('give either --out or --out-dir, not both');
    if (out !== undefined && flags['format'] !== undefined) throw new UsageError('--format is for --out-dir; the --out file\'s extension sets its format');
    const perPrompt = flags['batch'] as number;
    const total = prompts.length * perPrompt;
    if (out !== undefined && perPrompt >= 1 && total !== 1) {
      throw new UsageError(`--out takes one image, but ${total} would be generated (${prompts.length} prompt${prompts.length === 1 ? '' : 's'} × --batch ${perPrompt}); use --out-dir`);
    }
    if (out === '-') {
      if (!io.stdoutBytes) throw new UsageError('-o - needs a binary stdout');
      if (io.stdoutIsTTY) throw new UsageError('-o - writes PNG bytes to stdout, which is a terminal; redirect it (> image.png) or pipe it');
      if (json) throw new UsageError('--json prints on stdout, which -o - uses for the PNG');
    }
    const seedFlag = seedOption(flags['seed']);
    const init = initFlags(flags);
    const controlnet = flags['controlnet'] as string | undefined, controlPath = flags['control-image'] as string | undefined;
    const controlScale = flags['control-scale'] as number | undefined, invertControl = Boolean(flags['invert-control']);
    if (controlnet === undefined) {
      if (controlPath !== undefined) throw new UsageError('--control-image needs --controlnet <id|dir>');
      if (controlScale !== undefined) throw new UsageError('--control-scale needs --controlnet <id|dir>');
      if (invertControl) throw new UsageError('--invert-control needs --controlnet <id|dir>');
    } else {
      if (!controlnet) throw new UsageError('--controlnet must not be empty');
      if (controlPath === undefined) throw new UsageError('--controlnet needs --control-image <image>');
    }

    // ---- local files: outputs, LoRAs, ControlNet folder, inputs
    let dest: Destination;
    if (out === '-') dest = { kind: 'stdout' };
    else if (out !== undefined) dest = { kind: 'file', path: out, format: await checkOutFile(out) };
    else {
      await checkOutDir(outDir!);
      dest = { kind: 'dir', dir: outDir!, format: (flags['format'] as OutputFormat | undefined) ?? 'png' };
    }
    await checkLoras(model.loras);
    if (controlnet !== undefined) await checkControlNetSource(controlnet);
    let controlImage: RGBImage | undefined;
    if (controlPath !== undefined) {
      controlImage = await readImageFlag(controlPath, '--control-image');
      if (invertControl) controlImage = invertControlImage(controlImage);
    }
    let start: GenerateOptions['init'] = { kind: 'noise' };
    /** The files behind request fields, for error messages. */
    const files: Record<string, string | string[]> = {};
    if (controlPath !== undefined) files['control.image'] = controlPath;
    let reference: HostTensor | undefined;
    switch (init.kind) {
      case 'latents':
        start = { kind: 'latents', latents: await readLatentsFlag(init.path, '--latents') };
        files['init.latents'] = init.path;
        break;
      case 'image':
        start = { kind: 'image', image: await readImageFlag(init.path, '--init-image'), strength: init.strength };
        files['init.image'] = init.path;
        break;
      case 'reference-latents':
        reference = await readLatentsFlag(init.path, '--init-latents');
        start = { kind: 'informative', reference: { latents: reference } };
        files['init.reference.latents'] = init.path;
        break;
      case 'reference-images': {
        const images: RGBImage[] = [];
        for (const p of init.paths) images.push(await readImageFlag(p, '--init-images'));
        start = { kind: 'informative', reference: { images } };
        files['init.reference.images'] = init.paths;
        break;
      }
    }
    const request: GenerateOptions = {
      prompt: prompts,
      negativePrompt: sampling.negativePrompt,
      seed: seedFlag,
      steps: sampling.steps,
      guidance: sampling.guidance,
      width: sampling.width,
      height: sampling.height,
      batchSize: perPrompt,
      init: start,
      control: controlImage ? { image: controlImage, scale: controlScale } : undefined,
      clipSkip: sampling.clipSkip,
      resize: resizeOption(flags),
    };

    // ---- the model's configs (no weights yet), and the request checked against them
    const ui = createProgressUI(io, { quiet });
    try {
      const plan = await planModel(model, { controlnet }, { ui, signal });
      let checked: GenerationPlan;
      try {
        checked = resolveGenerateOptions(request, plan.info);
      } catch (e) {
        throw requestError(e, files, request);
      }
      if (plan.yoso) ui.note(YOSO_NOTE);
      for (const w of checked.warnings) ui.note(`note: ${w}`);
      const seed = Number(checked.seed);
      if (seedFlag === undefined) ui.note(`seed ${seed} (random; pass --seed ${seed} to repeat)`);

      // ---- weights, then the generation
      const tLoad = performance.now();
      const loaded = await loadModel(plan, { ui, signal });
      try {
        ui.note(`loaded ${model.model} in ${((performance.now() - tLoad) / 1000).toFixed(2)} s on ${loaded.device.adapter.name}`);
        const { pipe } = loaded;
        const res = await pipe.generate({
          ...request,
          seed: checked.seed,
          // The pipeline wants UNet-space latents: VAE latents × scaling_factor (0.18215 for SD's VAE, 1 for TAESD).
          init: reference ? { kind: 'informative', reference: { latents: { shape: reference.shape, data: reference.data.map((x) => Math.fround(x * pipe.scalingFactor)) } } } : request.init,
          signal,
        });
        ui.finish();
        const { plan: p } = res;
        const written: { file: string; prompt: string; index: number }[] = [];
        for (const [i, img] of res.images.entries()) {
          const prompt = prompts[Math.floor(i / p.batchSize)]!;
          const info: GenerationInfo & Record<string, unknown> = {
            ...generationInfo(model, loaded, sampling.negativePrompt, { prompt, steps: p.steps, guidance: p.guidance, seed, width: img.width, height: img.height, batchIndex: i, batchSize: res.images.length }),
            initImage: init.kind === 'image' ? init.path : undefined,
            strength: p.init.kind === 'image' ? p.init.strength : undefined,
            latents: init.kind === 'latents' ? init.path : undefined,
            ...(controlnet !== undefined ? { controlnet, controlImage: controlPath, controlScale: p.control?.scale ?? 1, invertControl } : {}),
            // The informative init's source (the JSON chunk; reference images are in the A1111 text too).
            ...(init.kind === 'reference-latents' ? { init: 'latent-mean', initLatents: init.path } : {}),
            ...(init.kind === 'reference-images' ? { init: 'latent-mean', initImages: init.paths } : {}),
            ...(p.clipSkip !== null ? { clipSkip: p.clipSkip } : {}),
            ...(init.kind === 'image' || init.kind === 'reference-images' || controlImage ? { resize: p.resize } : {}),
          };
          const format = dest.kind === 'stdout' ? 'png' : dest.format;
          const bytes = await encodeImage(img, format, info);
          signal?.throwIfAborted();
          if (dest.kind === 'stdout') {
            await io.stdoutBytes!(bytes);
            written.push({ file: '-', prompt, index: i });
            continue;
          }
          let file: string;
          if (dest.kind === 'file') file = dest.path;
          else {
            if (i === 0) await mkdir(dest.dir, { recursive: true });
            file = join(dest.dir, imageFileName(i, prompt, dest.format));
          }
          await writeAtomic(file, bytes, signal);
          written.push({ file, prompt, index: i });
        }
        const seconds = (performance.now() - t0) / 1000;
        ui.note(`timings: ${formatTimings(res.timings)}; total ${seconds.toFixed(2)} s with loading`);
        const summary = `seed ${seed}, ${p.steps} step${p.steps === 1 ? '' : 's'}, guidance ${p.guidance}, ${p.width}x${p.height}, ${seconds.toFixed(2)} s\n`;
        if (json) {
          io.stdout(
            JSON.stringify({
              files: written.map((f) => f.file),
              images: written,
              seed,
              steps: p.steps,
              guidance: p.guidance,
              width: p.width,
              height: p.height,
              model: model.model,
              scheduler: loaded.sampler,
              dtype: model.dtype,
              vae_dtype: loaded.vaeDtype,
              format: dest.kind === 'stdout' ? 'png' : dest.format,
              ...(controlnet !== undefined ? { controlnet, controlImage: controlPath, controlScale: p.control?.scale ?? 1, invertControl } : {}),
              timings: Object.fromEntries(Object.entries(res.timings).map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
              seconds: Math.round(seconds * 1000) / 1000,
            }) + '\n',
          );
        } else if (dest.kind === 'stdout') {
          // stdout holds the PNG and nothing else.
          if (!quiet) io.stderr(summary);
        } else {
          for (const f of written) io.stdout(`${f.file}\n`);
          io.stdout(summary);
        }
        return 0;
      } finally {
        loaded.dispose();
      }
    } finally {
      ui.finish();
    }
  },
};
