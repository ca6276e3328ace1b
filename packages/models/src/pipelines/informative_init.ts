/**
 * YOSO's informative prior initialisation for one-step SD1.5 + YOSO LoRA (models.md §3.1, the YOSO
 * model card's snippet). Instead of pure noise, the sampler starts from reference latents' statistics:
 *
 *   mean  = reference.mean(dim=0)                       [C, h, w]  (over the reference batch)
 *   init  = mean (repeated B times) + reference.std() · ε₁   ε₁ ~ randn([B, C, h, w]); std over all
 *                                                              elements, unbiased (torch's default)
 *   latents = scheduler.addNoise(init, ε₂, T)             ε₂ ~ randn([B, C, h, w]); T = the first timestep
 *
 * and `latents` is then used exactly like diffusers' `latents=` (× init_noise_sigma, 1 for LCM). The
 * reference is in the UNet's latent space (VAE latents × scaling_factor), e.g. latents of a few images
 * of the kind wanted. ε₁ and ε₂ are the generator's first two draws (the snippet uses torch's global
 * RNG; fewstep uses the seeded generator so a seed reproduces the image).
 */
export interface LatentReference {
  data: Float32Array;
  /** [N, C, h, w]; N ≥ 2 so that the std is defined. */
  shape: number[];
}

export function referenceStats(ref: LatentReference): { mean: Float32Array; std: number } {
  const [N, C, h, w] = ref.shape as [number, number, number, number];
  const per = C * h * w;
  const mean = new Float32Array(per);
  for (let i = 0; i < per; i++) {
    let s = 0;
    for (let n = 0; n < N; n++) s += ref.data[n * per + i]!;
    mean[i] = s / N;
  }
  let m = 0;
  for (const v of ref.data) m += v;
  m /= ref.data.length;
  let v2 = 0;
  for (const v of ref.data) v2 += (v - m) ** 2;
  return { mean, std: Math.fround(Math.sqrt(v2 / (ref.data.length - 1))) };
}

export function informativeInit(
  ref: LatentReference,
  batch: number,
  randn: (shape: number[]) => Float32Array,
  addNoise: (original: Float32Array, noise: Float32Array, t: number) => Float32Array,
  timestep: number,
): Float32Array {
  const [, C, h, w] = ref.shape as [number, number, number, number];
  const shape = [batch, C, h, w];
  const { mean, std } = referenceStats(ref);
  const eps1 = randn(shape);
  const init = new Float32Array(eps1.length);
  for (let i = 0; i < init.length; i++) init[i] = Math.fround(mean[i % mean.length]! + Math.fround(std * eps1[i]!));
  return addNoise(init, randn(shape), timestep);
}

export function checkLatentReference(ref: LatentReference, C: number, h: number, w: number): void {
  const { data, shape } = ref;
  if (!(data instanceof Float32Array) || !Array.isArray(shape) || shape.length !== 4) throw new Error('generate: informativeInit.reference must be { data: Float32Array, shape: [N, C, h, w] }');
  if (shape[0]! < 2) throw new Error(`generate: informativeInit.reference needs at least 2 latents (N=${shape[0]}) for a standard deviation`);
  if (shape[1] !== C || shape[2] !== h || shape[3] !== w) throw new Error(`generate: informativeInit.reference shape [${shape.join(', ')}] must be [N, ${C}, ${h}, ${w}]`);
  if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`generate: informativeInit.reference has ${data.length} values, shape [${shape.join(', ')}] needs ${shape.reduce((a, b) => a * b, 1)}`);
}
