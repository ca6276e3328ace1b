import { Device, InvalidArgumentError, SafetensorsFile, ShapeError, Tensor, UnsupportedError, encodeSafetensors, shapeStr, type StDType, type TensorToWrite } from '@fewstep/tensor';
import { nodeFiles, nodeGPU } from '@fewstep/tensor/node';
import {
  AutoencoderKL,
  CLIPModel,
  CLIPTextModel,
  CLIPTextModelWithProjection,
  CLIPVisionModelWithProjection,
  COMPONENT_CLASSES,
  clipScore,
  ControlNetModel,
  UNet2DConditionModel,
  componentInfo,
  loadComponent,
  loadLora,
  loraTransform,
  resolveControlNetConfig,
  type Component,
  type LoraAdapter,
} from '@fewstep/models';
import { UsageError } from '../args.js';
import { writeAtomic } from '../write_atomic.js';
import { checkLoras, parseLoraSpec, resolveLoraSource } from '../lora_source.js';
import { createProgressPrinter } from '@fewstep/weights-tools';
import type { Command } from '../command.js';

/** One input the component takes: its name, a shape pattern (null = any size) and a dtype family. */
interface InputSpec {
  name: string;
  /** Accepted shapes; each entry is a pattern with null for free dims. */
  shapes: (number | null)[][];
  /** What the shape means, for errors. */
  describe: string;
  kind: 'float' | 'int';
  optional?: boolean | undefined;
}

type Method = 'encode' | 'decode';
const AUTOENCODERS = ['AutoencoderTiny', 'AutoencoderKL'];
const INT_DTYPES: StDType[] = ['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16'];

const num = (v: unknown, def: number): number => (typeof v === 'number' ? v : def);
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const CLIP_TEXT_CLASSES = ['CLIPTextModel', 'CLIPTextModelWithProjection', 'CLIPModel'];

/** The text tower's inputs (CLIPTextModel, CLIPTextModelWithProjection, CLIPModel): input_ids and an optional attention_mask. */
function clipTextInputs(textCfg: Record<string, unknown>): InputSpec[] {
  const P = num(textCfg['max_position_embeddings'], 77);
  return [
    { name: 'input_ids', shapes: [[null, null]], describe: `[batch, length ≤ ${P}]`, kind: 'int' },
    { name: 'attention_mask', shapes: [[null, null]], describe: '[batch, length] like input_ids', kind: 'int', optional: true },
  ];
}

/** The vision tower's input: pixel_values [batch, num_channels, image_size, image_size]. */
function clipPixelInput(visionCfg: Record<string, unknown>): InputSpec {
  const C = num(visionCfg['num_channels'], 3), S = num(visionCfg['image_size'], 224);
  return { name: 'pixel_values', shapes: [[null, C, S, S]], describe: `[batch, ${C}, ${S}, ${S}] (the image processor's pixel_values)`, kind: 'float' };
}

/** The call signature of each class (diffusers/transformers argument and output names). */
function signature(className: string, cfg: Record<string, unknown>, method: Method | undefined): { inputs: InputSpec[]; outputs: string[]; what: string } {
  switch (className) {
    case 'UNet2DConditionModel': {
      const c = num(cfg['in_channels'], 4), ctx = num(cfg['cross_attention_dim'], 1280);
      return {
        what: 'UNet2DConditionModel',
        inputs: [
          { name: 'sample', shapes: [[null, c, null, null]], describe: `[batch, ${c}, height, width]`, kind: 'float' },
          { name: 'timestep', shapes: [[], [null]], describe: 'a scalar (0-dim) or [batch]', kind: 'float' },
          { name: 'encoder_hidden_states', shapes: [[null, null, ctx]], describe: `[batch, length, ${ctx}]`, kind: 'float' },
        ],
        outputs: ['sample'],
      };
    }
    case 'ControlNetModel': {
      const r = resolveControlNetConfig(cfg);
      const c = r.inChannels, ctx = r.crossAttentionDim[0]!, cc = r.conditioningChannels;
      const f = 2 ** (r.conditioningEmbeddingOutChannels.length - 1);
      // One residual per UNet skip: conv_in, layers_per_block per block, a downsampler after every block but the last.
      const n = 1 + r.layersPerBlock.reduce((a, b) => a + b, 0) + r.blockOutChannels.length - 1;
      return {
        what: 'ControlNetModel',
        inputs: [
          { name: 'sample', shapes: [[null, c, null, null]], describe: `[batch, ${c}, height, width]`, kind: 'float' },
          { name: 'timestep', shapes: [[], [null]], describe: 'a scalar (0-dim) or [batch]', kind: 'float' },
          { name: 'encoder_hidden_states', shapes: [[null, null, ctx]], describe: `[batch, length, ${ctx}]`, kind: 'float' },
          { name: 'controlnet_cond', shapes: [[null, cc, null, null]], describe: `[batch, ${cc}, ${f}·height, ${f}·width] in [0, 1]`, kind: 'float' },
        ],
        outputs: [...Array.from({ length: n }, (_, i) => `down_block_res_samples.${i}`), 'mid_block_res_sample'],
      };
    }
    case 'CLIPTextModel':
      return { what: 'CLIPTextModel', inputs: clipTextInputs(cfg), outputs: ['last_hidden_state', 'penultimate_hidden_state'] };
    case 'CLIPTextModelWithProjection':
      return { what: className, inputs: clipTextInputs(cfg), outputs: ['text_embeds', 'last_hidden_state'] };
    case 'CLIPVisionModelWithProjection':
      return { what: className, inputs: [clipPixelInput(cfg)], outputs: ['image_embeds', 'last_hidden_state'] };
    case 'CLIPModel':
      return {
        what: 'CLIPModel',
        inputs: [...clipTextInputs(obj(cfg['text_config'])), clipPixelInput(obj(cfg['vision_config']))],
        // clip_score only when the batches pair up (image i with text i).
        outputs: ['image_embeds', 'text_embeds', 'vision_pooler_output', 'text_pooler_output', 'logits_per_image', 'logits_per_text', 'clip_score'],
      };
    case 'AutoencoderTiny':
    case 'AutoencoderKL': {
      const latent = num(cfg['latent_channels'], 4), inC = num(cfg['in_channels'], 3);
      return method === 'decode'
        ? { what: `${className} decode`, inputs: [{ name: 'z', shapes: [[null, latent, null, null]], describe: `[batch, ${latent}, height, width]`, kind: 'float' }], outputs: ['sample'] }
        : { what: `${className} encode`, inputs: [{ name: 'sample', shapes: [[null, inC, null, null]], describe: `[batch, ${inC}, height, width]`, kind: 'float' }], outputs: ['latents'] };
    }
    default:
      throw new UnsupportedError(`component class "${className}" is not supported by run (supported: ${COMPONENT_CLASSES.join(', ')})`);
  }
}

const fits = (shape: readonly number[], pattern: (number | null)[]) => shape.length === pattern.length && pattern.every((p, i) => p === null || p === shape[i]);

interface HostInput {
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Reads and validates the inputs file against the signature; every problem is one line naming the tensor. */
async function readInputs(path: string, sig: ReturnType<typeof signature>, cfg: Record<string, unknown>, className: string): Promise<Map<string, HostInput>> {
  const f = await SafetensorsFile.open(nodeFiles, path);
  try {
    const expected = sig.inputs.map((s) => (s.optional ? `${s.name} (optional)` : s.name)).join(', ');
    for (const name of f.tensors.keys()) {
      if (!sig.inputs.some((s) => s.name === name)) throw new InvalidArgumentError(`${path}: unexpected input tensor "${name}" for ${sig.what} (expected: ${expected})`, name);
    }
    const out = new Map<string, HostInput>();
    for (const spec of sig.inputs) {
      if (!f.has(spec.name)) {
        if (spec.optional) continue;
        throw new InvalidArgumentError(`${path}: missing input tensor "${spec.name}" for ${sig.what} (expected: ${expected})`, spec.name);
      }
      const info = f.info(spec.name);
      if (!spec.shapes.some((p) => fits(info.shape, p))) {
        throw new ShapeError(`${path}: input "${spec.name}" has shape ${shapeStr(info.shape)}, but ${sig.what} expects ${spec.describe}`, spec.name);
      }
      if (spec.kind === 'int' && !INT_DTYPES.includes(info.dtype)) throw new ShapeError(`${path}: input "${spec.name}" is ${info.dtype}, but ${sig.what} expects integer ids (I64 or I32)`, spec.name);
      if (spec.kind === 'float' && INT_DTYPES.includes(info.dtype) && spec.name !== 'timestep') {
        throw new ShapeError(`${path}: input "${spec.name}" is ${info.dtype}, but ${sig.what} expects floating point (F32, F16, BF16 or F64)`, spec.name);
      }
      const data = (await f.read(spec.name, spec.kind === 'int' ? 'i32' : 'f32')) as Float32Array | Int32Array;
      out.set(spec.name, { shape: info.shape, data });
    }
    // Cross-input checks.
    const batch = (n: string) => out.get(n)?.shape[0];
    if (className === 'UNet2DConditionModel' || className === 'ControlNetModel') {
      const b = batch('sample')!, ts = out.get('timestep')!;
      if (batch('encoder_hidden_states') !== b) throw new ShapeError(`${path}: encoder_hidden_states has batch ${batch('encoder_hidden_states')} but sample has ${b}`, 'encoder_hidden_states');
      if (ts.shape.length === 1 && ts.shape[0] !== b && ts.shape[0] !== 1) throw new ShapeError(`${path}: timestep has shape ${shapeStr(ts.shape)}; expected a scalar, [1] or [${b}] (the batch of sample)`, 'timestep');
    }
    if (className === 'ControlNetModel') {
      const b = batch('sample')!, cond = out.get('controlnet_cond')!, sample = out.get('sample')!;
      if (cond.shape[0] !== b && cond.shape[0] !== 1) throw new ShapeError(`${path}: controlnet_cond has batch ${cond.shape[0]} but sample has ${b}`, 'controlnet_cond');
      // The conditioning embedding's stride-2 convs (padding 1) take n to ⌈n/2⌉; they must land on the sample's size.
      const steps = resolveControlNetConfig(cfg).conditioningEmbeddingOutChannels.length - 1;
      const down = (v: number) => Array.from({ length: steps }).reduce<number>((a) => Math.ceil(a / 2), v);
      const [h, w] = [sample.shape[2]!, sample.shape[3]!];
      if (down(cond.shape[2]!) !== h || down(cond.shape[3]!) !== w) {
        throw new ShapeError(`${path}: controlnet_cond is ${cond.shape[2]}x${cond.shape[3]} but sample is ${h}x${w}; the control image must be ${2 ** steps}x the latent size (${h * 2 ** steps}x${w * 2 ** steps})`, 'controlnet_cond');
      }
    }
    if (CLIP_TEXT_CLASSES.includes(className)) {
      const ids = out.get('input_ids')!, mask = out.get('attention_mask');
      const tc = className === 'CLIPModel' ? obj(cfg['text_config']) : cfg;
      const P = num(tc['max_position_embeddings'], 77), V = num(tc['vocab_size'], 49408);
      if (ids.shape[1]! < 1 || ids.shape[1]! > P) throw new ShapeError(`${path}: input_ids has length ${ids.shape[1]}; ${className} takes 1 to ${P} tokens (max_position_embeddings)`, 'input_ids');
      const bad = ids.data.findIndex((v) => v < 0 || v >= V);
      if (bad >= 0) throw new InvalidArgumentError(`${path}: input_ids[${Math.floor(bad / ids.shape[1]!)}, ${bad % ids.shape[1]!}] = ${ids.data[bad]} is outside the vocabulary (0..${V - 1})`, 'input_ids');
      if (mask && shapeStr(mask.shape) !== shapeStr(ids.shape)) throw new ShapeError(`${path}: attention_mask has shape ${shapeStr(mask.shape)} but input_ids has ${shapeStr(ids.shape)}`, 'attention_mask');
    }
    return out;
  } finally {
    await f.close();
  }
}

/** Runs the component; returns the outputs (GPU tensors, any float dtype) by name. */
async function forward(model: Component, device: Device, method: Method | undefined, inputs: Map<string, HostInput>, controlScale: number): Promise<Record<string, Tensor>> {
  const up = (name: string, as: 'f32' | 'f16' | 'i32') => {
    const x = inputs.get(name)!;
    return Tensor.from(device, as === 'i32' ? Int32Array.from(x.data) : x.data, x.shape, as);
  };
  const mask = () => (inputs.has('attention_mask') ? up('attention_mask', 'f32') : undefined);
  if (model instanceof CLIPTextModel) {
    const out = model.forwardWithEos(up('input_ids', 'i32'), undefined, { attentionMask: mask() });
    return { last_hidden_state: out.lastHiddenState, penultimate_hidden_state: out.penultimateHiddenState };
  }
  if (model instanceof CLIPTextModelWithProjection) {
    const out = await model.forward(up('input_ids', 'i32'), { attentionMask: mask() });
    return { text_embeds: out.textEmbeds, last_hidden_state: out.lastHiddenState };
  }
  if (model instanceof CLIPVisionModelWithProjection) {
    const out = model.forward(up('pixel_values', 'f32'));
    return { image_embeds: out.imageEmbeds, last_hidden_state: out.lastHiddenState };
  }
  if (model instanceof CLIPModel) {
    const o = await model.forward({ inputIds: up('input_ids', 'i32'), pixelValues: up('pixel_values', 'f32'), attentionMask: mask() });
    const out: Record<string, Tensor> = {
      image_embeds: o.imageEmbeds, text_embeds: o.textEmbeds, vision_pooler_output: o.visionPoolerOutput, text_pooler_output: o.textPoolerOutput,
      logits_per_image: o.logitsPerImage, logits_per_text: o.logitsPerText,
    };
    const [bi, bt] = [o.imageEmbeds.shape[0]!, o.textEmbeds.shape[0]!];
    if (bi === bt) {
      const score = clipScore({ data: await o.imageEmbeds.readF32(), shape: o.imageEmbeds.shape }, { data: await o.textEmbeds.readF32(), shape: o.textEmbeds.shape });
      out['clip_score'] = Tensor.from(device, score, [bi]);
    }
    return out;
  }
  // A scalar or [1] timestep applies to the whole batch, as in diffusers.
  const timestep = () => {
    const ts = inputs.get('timestep')!;
    return ts.shape.length === 0 || ts.shape[0] === 1 ? ts.data[0]! : Array.from(ts.data);
  };
  if (model instanceof UNet2DConditionModel) {
    return { sample: model.forward(up('sample', model.dtype), timestep(), up('encoder_hidden_states', model.dtype)) };
  }
  if (model instanceof ControlNetModel) {
    const r = model.forward(up('sample', model.dtype), timestep(), up('encoder_hidden_states', model.dtype), up('controlnet_cond', model.dtype), { conditioningScale: controlScale });
    const out: Record<string, Tensor> = { mid_block_res_sample: r.midBlockResSample };
    r.downBlockResSamples.forEach((t, i) => (out[`down_block_res_samples.${i}`] = t));
    return out;
  }
  if (method === 'decode') return { sample: model.decode(up('z', model.dtype)) };
  if (model instanceof AutoencoderKL) return { latents: (await model.encode(up('sample', model.dtype))).mean };
  return { latents: model.encode(up('sample', model.dtype)) };
}


export const run: Command = {
  name: 'run',
  usage:
    'fewstep run <component-dir> --inputs <in.safetensors> --out <out.safetensors> [--method encode|decode] [--dtype f32|f16]\n' +
    '       [--control-scale S] [--lora <file|folder>[:scale]]...',
  description:
    'Loads the diffusers/transformers component in <component-dir> (the class named by its config.json) and calls it on the tensors in --inputs, named like the Python call:\n' +
    '  UNet2DConditionModel: sample, timestep (scalar or [batch]), encoder_hidden_states → sample (--lora fuses LoRAs into it)\n' +
    '  ControlNetModel: sample, timestep, encoder_hidden_states, controlnet_cond ([batch, 3, 8·height, 8·width] in [0, 1])\n' +
    '    → down_block_res_samples.0 … .N, mid_block_res_sample, each × --control-scale (diffusers conditioning_scale, default 1)\n' +
    '  CLIPTextModel: input_ids (I64/I32), optional attention_mask → last_hidden_state, penultimate_hidden_state\n' +
    '  CLIPTextModelWithProjection: input_ids, optional attention_mask → text_embeds, last_hidden_state\n' +
    '  CLIPVisionModelWithProjection: pixel_values ([batch, 3, size, size], the image processor\'s) → image_embeds, last_hidden_state\n' +
    '  CLIPModel: input_ids, optional attention_mask, pixel_values → image_embeds, text_embeds (L2-normalised), vision_pooler_output,\n' +
    '    text_pooler_output, logits_per_image, logits_per_text, and clip_score (100·max(cos, 0) of image i with text i; equal batches only)\n' +
    '  AutoencoderTiny / AutoencoderKL: --method decode: z → sample; --method encode: sample → latents (AutoencoderKL: the mean)\n' +
    'Outputs are written as F32 safetensors (via a temporary file, so a failure leaves no partial output).',
  flags: {
    inputs: { type: 'string', help: 'safetensors file with the input tensors' },
    out: { type: 'string', help: 'where to write the output tensors (safetensors, F32)' },
    method: { type: 'string', choices: ['encode', 'decode'], help: 'autoencoders only: encode an image or decode latents' },
    dtype: { type: 'string', choices: ['f32', 'f16'], default: 'f32', help: 'weight and activation dtype' },
    'control-scale': { type: 'number', help: 'ControlNetModel only: conditioning_scale, multiplies every residual (default 1)' },
    lora: { type: 'string', multiple: true, help: 'UNet2DConditionModel only: LoRA file or peft folder with an optional :scale, fused at load (repeatable)' },
  },
  async run({ flags, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`expected one component folder, got ${positionals.length}`);
    const dir = positionals[0]!;
    const inputsPath = flags['inputs'] as string | undefined, outPath = flags['out'] as string | undefined;
    if (!inputsPath) throw new UsageError('--inputs <file.safetensors> is required');
    if (!outPath) throw new UsageError('--out <file.safetensors> is required');
    const method = flags['method'] as Method | undefined;
    const dtype = flags['dtype'] as 'f32' | 'f16';

    const { className, config } = await componentInfo(nodeFiles, dir);
    const isAE = AUTOENCODERS.includes(className);
    if (isAE && !method) throw new UsageError(`${className} needs --method encode or --method decode`);
    if (!isAE && method) throw new UsageError(`--method is only for autoencoders; ${className} has a single forward`);
    const controlScale = flags['control-scale'] as number | undefined;
    if (controlScale !== undefined && className !== 'ControlNetModel') throw new UsageError(`--control-scale is only for ControlNetModel folders, not ${className} (${dir})`);
    const loraSpecs = ((flags['lora'] as string[] | undefined) ?? []).map(parseLoraSpec);
    if (loraSpecs.length && className !== 'UNet2DConditionModel') throw new UsageError(`--lora is only for UNet2DConditionModel folders, not ${className} (${dir})`);
    await checkLoras(loraSpecs);
    const sig = signature(className, config, method);
    const inputs = await readInputs(inputsPath, sig, config, className);
    // LoRAs are read (and checked against the UNet's weight names) before the GPU is touched.
    const adapters: LoraAdapter[] = [];
    for (const l of loraSpecs) {
      const a = await loadLora(nodeFiles, await resolveLoraSource(l, createProgressPrinter(io.stderr, { isTTY: io.isTTY }).onProgress), { scale: l.scale });
      if (!a.has('unet')) throw new InvalidArgumentError(`--lora ${l.source}: has no UNet modules (components: ${a.components.join(', ') || 'none'})`, 'lora');
      a.check('unet', UNet2DConditionModel.describe(config).keys());
      adapters.push(a);
    }

    const t0 = performance.now();
    const device = await Device.open({ gpu: await nodeGPU() });
    let model: Component | undefined;
    try {
      if (dtype === 'f16' && !device.features.f16) throw new UnsupportedError(`--dtype f16 needs the shader-f16 feature, which ${device.adapter.name} does not offer; use --dtype f32`);
      if (adapters.length) {
        model = await UNet2DConditionModel.fromFolder(nodeFiles, dir, device, { dtype, transform: loraTransform(adapters, 'unet') });
        for (const a of adapters) a.assertAllApplied('unet');
      } else model = await loadComponent(nodeFiles, dir, device, { dtype });
      const outputs = await device.scope(() => forward(model!, device, method, inputs, controlScale ?? 1));
      const toWrite: Record<string, TensorToWrite> = {};
      for (const name of sig.outputs) {
        const t = outputs[name];
        if (!t) continue; // CLIPModel's clip_score when the image and text batches differ
        toWrite[name] = { dtype: 'F32', shape: t.shape, data: await t.readF32() };
      }
      await device.checkErrors();
      for (const t of Object.values(outputs)) t.dispose();
      await writeAtomic(outPath, encodeSafetensors(toWrite, { format: 'pt', producer: 'fewstep run', component: className }));
      const secs = ((performance.now() - t0) / 1000).toFixed(2);
      io.stdout(`${outPath}: ${Object.entries(toWrite).map(([n, t]) => `${n} ${shapeStr(t.shape)}`).join(', ')} (${sig.what}, ${dtype}, ${secs}s on ${device.adapter.name})\n`);
      return 0;
    } finally {
      model?.dispose();
      device.destroy();
    }
  },
};
