/**
 * The loaded pipeline as the server's ImageService: an OpenAI image request → GenerateOptions (n images of one
 * prompt = a batch, one seed: the images `fewstep generate --batch n --seed s` writes), PNGs with the CLI's
 * metadata. The model's own rules (resolveGenerateOptions) answer bad values, renamed to OpenAI's fields.
 */
import { InvalidArgumentError } from '@fewstep/tensor';
import type { GenerateOptions } from '@fewstep/models';
import type { ModelOptions } from '../generation/flags.js';
import type { LoadedModel } from '../generation/model.js';
import { encodeImage, generationInfo } from '../generation/outputs.js';
import type { ImageRequest } from './openai_request.js';
import type { ImageService } from './server.js';

/** Our option names → the request's. */
const OPENAI_FIELD: Readonly<Record<string, string>> = { batchSize: 'n', width: 'size', height: 'size', guidance: 'guidance_scale', negativePrompt: 'negative_prompt' };

export function imageService(loaded: LoadedModel, options: ModelOptions): ImageService {
  const { pipe } = loaded;
  return {
    modelId: options.model,
    async generate(r: ImageRequest, signal: AbortSignal) {
      const opts: GenerateOptions = {
        prompt: r.prompt,
        negativePrompt: r.negativePrompt,
        seed: r.seed,
        steps: r.steps,
        guidance: r.guidance,
        width: r.width,
        height: r.height,
        batchSize: r.n,
        signal,
      };
      let plan;
      try {
        plan = pipe.plan(opts);
      } catch (e) {
        if (e instanceof InvalidArgumentError) throw new InvalidArgumentError(e.message, e.field !== undefined ? (OPENAI_FIELD[e.field] ?? e.field) : undefined);
        throw e;
      }
      const res = await pipe.generate({ ...opts, seed: plan.seed });
      const seed = Number(plan.seed);
      return Promise.all(
        res.images.map(async (img, i) => ({
          png: await encodeImage(img, 'png', generationInfo(options, loaded, r.negativePrompt, { prompt: r.prompt, steps: plan.steps, guidance: plan.guidance, seed, width: img.width, height: img.height, batchIndex: i, batchSize: res.images.length })),
          seed: plan.seed.toString(),
        })),
      );
    },
  };
}
