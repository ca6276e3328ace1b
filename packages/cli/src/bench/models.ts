/**
 * `fewstep bench models`: the full-size components (SD2 text encoder, SDXS-512-0.9 UNet at a 64×64
 * latent, TAESD decoding to 512×512, the CLIP score model openai/clip-vit-large-patch14) with
 * deterministic random weights in their real configs — no download. Reports load time, the first (cold:
 * pipelines compiled) and a warm forward, peak RSS and peak GPU memory, and checks the output is finite.
 * A component with stages (CLIP: the text tower on 77 tokens, the vision tower on one 224² image) times
 * each stage too; its cold/warm are their sums.
 */
import { Tensor, type DType, type Device } from '@fewstep/tensor';
import {
  AutoencoderTiny, CLIPModel, CLIPTextModel, UNet2DConditionModel, WeightScope, type TensorSource,
} from '@fewstep/models';
import { CLIP_TEXT_SD2, CLIP_VIT_L14, RandomSource, SDXS_09, TAESD } from '@fewstep/models/testing';

/** `--only` names, in run order. */
export const MODEL_COMPONENTS = ['text_encoder', 'unet', 'decoder', 'clip'] as const;

/** One timed part of a component's forward (CLIP: text, vision). */
export interface StageRow {
  stage: string;
  cold_s: number;
  warm_s: number;
  output_shape: number[];
}

export interface ModelRow {
  component: string;
  config: string;
  dtype: DType;
  adapter: string;
  parameters: number;
  load_s: number;
  cold_s: number;
  warm_s: number;
  peak_rss_mb: number;
  peak_gpu_mb: number;
  output_shape: number[];
  output_finite: boolean;
  output_absmax: number;
  /** Per-stage timings of a component run in parts (CLIP); cold_s / warm_s are their sums. */
  stages?: StageRow[] | undefined;
  error?: string | undefined;
}

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // Approximately normal (sum of uniforms), like the latents and embeddings these models see.
    a[i] = ((s >>> 8) / 16777216 + ((Math.imul(s, 69069) >>> 8) / 16777216) - 1) * 2.4;
  }
  return a;
}

class RssSampler {
  peak = process.memoryUsage().rss;
  private timer = setInterval(() => this.sample(), 25);
  sample(): void {
    this.peak = Math.max(this.peak, process.memoryUsage().rss);
  }
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** A loaded component: one forward (`run`), or several timed stages whose outputs are all checked. */
interface Loaded {
  run?: (() => Promise<Tensor>) | undefined;
  stages?: { name: string; run(): Promise<Tensor> }[] | undefined;
  dispose(): void;
}

interface Component {
  name: (typeof MODEL_COMPONENTS)[number];
  config: string;
  shapes: Map<string, number[]>;
  /** The weights (default: RandomSource over `shapes`). */
  source?: ((seed: number) => TensorSource) | undefined;
  load(w: WeightScope): Promise<Loaded>;
}

/** A CLIP prompt of 77 tokens as the tokenizer pads it: BOS, 10 words, EOS, EOS padding (pad = EOS for ViT-L/14). */
const clipIds = () => Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 11 ? 320 + i * 97 : 49407));

export function modelComponents(device: Device, dtype: DType): Component[] {
  return [
    {
      name: 'text_encoder', config: 'SD2 CLIPTextModel (23 layers × 1024)', shapes: CLIPTextModel.describe(CLIP_TEXT_SD2),
      async load(w) {
        const m = await CLIPTextModel.load(w, CLIP_TEXT_SD2);
        const ids = Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 12 ? 320 + i * 97 : i === 12 ? 49407 : 0));
        const t = Tensor.from(device, ids, [1, 77], 'i32').keep();
        return {
          run: async () => device.scope(async () => (await m.forward(t, { pooler: false })).lastHiddenState),
          dispose: () => (m.dispose(), t.dispose()),
        };
      },
    },
    {
      name: 'unet', config: 'IDKiro/sdxs-512-0.9 UNet2DConditionModel, 64×64 latent, 77×1024 context', shapes: UNet2DConditionModel.describe(SDXS_09),
      async load(w) {
        const m = await UNet2DConditionModel.load(w, SDXS_09);
        const x = Tensor.from(device, rand(4 * 64 * 64, 1), [1, 4, 64, 64], dtype).keep();
        const ctx = Tensor.from(device, rand(77 * 1024, 2), [1, 77, 1024], dtype).keep();
        return { run: async () => device.scope(() => m.forward(x, 999, ctx)), dispose: () => (m.dispose(), x.dispose(), ctx.dispose()) };
      },
    },
    {
      name: 'decoder', config: 'TAESD AutoencoderTiny decoder, 64×64 latent → 512×512', shapes: AutoencoderTiny.describe(TAESD),
      async load(w) {
        const m = await AutoencoderTiny.load(w, TAESD);
        const z = Tensor.from(device, rand(4 * 64 * 64, 3), [1, 4, 64, 64], dtype).keep();
        return { run: async () => device.scope(() => m.decode(z)), dispose: () => (m.dispose(), z.dispose()) };
      },
    },
    {
      name: 'clip', config: 'openai/clip-vit-large-patch14 CLIPModel: text tower on 77 tokens, vision tower on one 224×224 image',
      shapes: CLIPModel.describe(CLIP_VIT_L14), source: (seed) => CLIPModel.randomSource(CLIP_VIT_L14, seed),
      async load(w) {
        const m = await CLIPModel.load(w, CLIP_VIT_L14);
        const ids = Tensor.from(device, clipIds(), [1, 77], 'i32').keep();
        const px = Tensor.from(device, rand(3 * 224 * 224, 4), [1, 3, 224, 224], 'f32').keep();
        return {
          stages: [
            { name: 'text', run: async () => device.scope(() => m.getTextFeatures(ids)) },
            { name: 'vision', run: async () => device.scope(() => m.getImageFeatures(px)) },
          ],
          dispose: () => (m.dispose(), ids.dispose(), px.dispose()),
        };
      },
    },
  ];
}

export async function benchModels(device: Device, opts: { dtype: DType; only?: string[] | undefined; onRow?: ((r: ModelRow) => void) | undefined}): Promise<ModelRow[]> {
  const rows: ModelRow[] = [];
  for (const c of modelComponents(device, opts.dtype)) {
    if (opts.only && !opts.only.includes(c.name)) continue;
    const parameters = [...c.shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
    const row: ModelRow = {
      component: c.name, config: c.config, dtype: opts.dtype, adapter: device.adapter.name, parameters,
      load_s: NaN, cold_s: NaN, warm_s: NaN, peak_rss_mb: NaN, peak_gpu_mb: NaN, output_shape: [], output_finite: false, output_absmax: NaN,
    };
    device.pool.trim();
    device.pool.stats.peak = device.pool.stats.inUse;
    const rss = new RssSampler();
    let model: Loaded | undefined;
    try {
      let t0 = performance.now();
      model = await c.load(WeightScope.create(c.source?.(1234) ?? new RandomSource(c.shapes, 1234), device, opts.dtype));
      await device.sync();
      row.load_s = +((performance.now() - t0) / 1000).toFixed(3);
      const stages = model.stages ?? [{ name: c.name, run: model.run! }];
      const timed: StageRow[] = [];
      let finite = true, absmax = 0;
      for (const s of stages) {
        t0 = performance.now();
        const first = await s.run();
        await device.sync();
        const cold = (performance.now() - t0) / 1000;
        const values = await first.read();
        for (const v of values) {
          if (!Number.isFinite(v)) finite = false;
          else absmax = Math.max(absmax, Math.abs(v));
        }
        const shape = [...first.shape];
        first.dispose();
        t0 = performance.now();
        (await s.run()).dispose();
        await device.sync();
        timed.push({ stage: s.name, cold_s: +cold.toFixed(3), warm_s: +((performance.now() - t0) / 1000).toFixed(3), output_shape: shape });
      }
      row.cold_s = +timed.reduce((a, s) => a + s.cold_s, 0).toFixed(3);
      row.warm_s = +timed.reduce((a, s) => a + s.warm_s, 0).toFixed(3);
      row.output_shape = timed[timed.length - 1]!.output_shape;
      row.output_finite = finite;
      row.output_absmax = +absmax.toPrecision(4);
      if (model.stages) row.stages = timed;
    } catch (e) {
      row.error = (e as Error).message.split('\n')[0];
      await device.sync().catch(() => undefined);
    } finally {
      model?.dispose();
      row.peak_rss_mb = Math.round(rss.stop() / 2 ** 20);
      row.peak_gpu_mb = Math.round(device.pool.stats.peak / 2 ** 20);
    }
    rows.push(row);
    opts.onRow?.(row);
  }
  return rows;
}
