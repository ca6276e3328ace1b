/**
 * diffusers' `generator=[g0, g1, …]`: one torch generator per image of a batch. `randn_tensor` then draws each
 * row of a [B, …] tensor from its own generator (`torch.randn(shape[1:], generator=g[i])` for i < B, concatenated),
 * so image i of a batch is the image a batch of one gives for seed i — what lets an evaluation run N prompts per
 * forward pass without changing any image.
 */
import { InvalidArgumentError } from '@fewstep/tensor';
import { TorchGenerator } from './torch_randn.js';

export class GeneratorList {
  readonly generators: TorchGenerator[];

  constructor(seeds: readonly (number | bigint)[]) {
    this.generators = seeds.map((s) => new TorchGenerator(s));
  }

  /** A [B, …] draw, row b from generator b (B must equal the number of generators). */
  randn(shape: readonly number[], dtype: 'f32' = 'f32'): Float32Array {
    const [B, ...rest] = shape;
    if (B !== this.generators.length) throw new InvalidArgumentError(`randn: a batch of ${B} with ${this.generators.length} generators (one per image)`, 'seed');
    const per = rest.reduce((a, b) => a * b, 1);
    const out = new Float32Array(B * per);
    this.generators.forEach((g, b) => out.set(g.randn([1, ...rest], dtype), b * per));
    return out;
  }
}
