/**
 * Generation parameters stored in the PNGs fewstep writes (the CLI and the web page): a "parameters" text
 * chunk in the format AUTOMATIC1111's web UI writes (and most image viewers / civitai read), and the same
 * data as JSON in a "fewstep" chunk. Pass `pngTextChunks(info)` to `encodePng`. Browser-safe.
 *
 *   a photo of a cat
 *   Negative prompt: blurry            (only when there is one)
 *   Steps: 1, Sampler: EulerDiscreteScheduler, CFG scale: 0, Seed: 42, Size: 512x512, Model: IDKiro/sdxs-512-0.9
 */
export interface GenerationInfo {
  prompt: string;
  negativePrompt: string;
  steps: number;
  /** Scheduler class name. */
  sampler: string;
  guidance: number;
  /** The generator seed (shared by a batch, as in diffusers); null when --latents gave the noise. */
  seed: number | null;
  width: number;
  height: number;
  /** --model as given (repo id or folder). */
  model: string;
  revision?: string | undefined;
  dtype: string;
  /** --vae (tiny | large), absent for the model's own vae/. */
  vae?: string | undefined;
  /** The dtype the VAE ran in (f32 | f16); the text names it only when it is not `dtype`. */
  vaeDtype?: string | undefined;
  /** Position in the batch and the batch size (diffusers order: prompt-major). */
  batchIndex: number;
  batchSize: number;
  loras?: { source: string; scale: number }[] | undefined;
  initImage?: string | undefined;
  strength?: number | undefined;
  /** YOSO's informative init: the reference images (paths), or a latents file in `latents`. */
  initImages?: string[] | undefined;
  /** How input images of another size were fit (crop | fit | stretch). */
  resize?: string | undefined;
  /** diffusers' clip_skip (layers skipped at the end of the text encoder). */
  clipSkip?: number | undefined;
  latents?: string | undefined;
  /** --controlnet as given, the --control-image path, its scale, and whether it was inverted (--invert-control). */
  controlnet?: string | undefined;
  controlImage?: string | undefined;
  controlScale?: number | undefined;
  invertControl?: boolean | undefined;
  version: string;
}

/** A1111's "parameters" text. */
export function parametersText(g: GenerationInfo): string {
  const oneLine = (s: string) => s.replace(/\r?\n/g, ' ');
  const fields: [string, string | number][] = [
    ['Steps', g.steps],
    ['Sampler', g.sampler],
    ['CFG scale', g.guidance],
    ['Seed', g.seed ?? 'latents'],
    ['Size', `${g.width}x${g.height}`],
    ['Model', g.model],
  ];
  if (g.vaeDtype !== undefined && g.vaeDtype !== g.dtype) fields.push(['VAE dtype', g.vaeDtype]);
  if (g.clipSkip) fields.push(['Clip skip', g.clipSkip]);
  if (g.strength !== undefined) fields.push(['Denoising strength', g.strength]);
  if (g.initImages?.length) fields.push(['Reference images', g.initImages.join(' ')]);
  if (g.resize !== undefined) fields.push(['Resize mode', g.resize]);
  if (g.loras?.length) fields.push(['Lora', g.loras.map((l) => `${l.source}:${l.scale}`).join(' ')]);
  if (g.controlnet !== undefined) {
    fields.push(['ControlNet', g.controlnet], ['Control scale', g.controlScale ?? 1]);
    if (g.controlImage !== undefined) fields.push(['Control image', g.controlImage]);
    if (g.invertControl) fields.push(['Control inverted', 'true']);
  }
  if (g.batchSize > 1) fields.push(['Batch size', g.batchSize], ['Batch pos', g.batchIndex]);
  fields.push(['Version', `fewstep ${g.version}`]);
  const quote = (v: string | number) => (typeof v === 'string' && /[,:\n"]/.test(v) ? JSON.stringify(v) : String(v));
  return (
    oneLine(g.prompt) +
    '\n' +
    (g.negativePrompt ? `Negative prompt: ${oneLine(g.negativePrompt)}\n` : '') +
    fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ')
  );
}

/** The text chunks (keyword → text) to embed. */
export function pngTextChunks(g: GenerationInfo): Record<string, string> {
  return { parameters: parametersText(g), fewstep: JSON.stringify(g) };
}
