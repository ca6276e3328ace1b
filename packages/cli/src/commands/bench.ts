import { Device, type DType } from '@fewstep/tensor';
import { nodeGPU } from '@fewstep/tensor/node';
import { UsageError } from '../args';
import type { Command } from '../command';
import { benchKernels, type KernelRow } from '../bench/kernels';
import { benchModels, type ModelRow } from '../bench/models';

export const bench: Command = {
  name: 'bench',
  summary: 'Benchmarks: `bench kernels` (every kernel at SDXS-512 shapes), `bench models` (full-size components, random weights)',
  usage: 'fewstep bench kernels [--json] [--dtype f32|f16|both] [--filter <regex>] [--reps N]\n       fewstep bench models [--json] [--dtype f32|f16] [--only text_encoder,unet,decoder]',
  description:
    'Times each kernel at the shapes SDXS-512 uses (case names match shared/anchors/ort-ops), after a warm-up run, ' +
    'with GPU timestamp queries when the adapter has them (else wall clock around a full sync). Reports median ms, ' +
    'GFLOP/s (compute-bound) or GB/s (memory-bound), adapter, dtype and the max |error| against a CPU reference on sampled outputs. ' +
    'Benchmarks never assert speed.\n\n`bench models` builds the full-size SD2 text encoder, the SDXS-512-0.9 UNet (64×64 latent) and the TAESD decoder ' +
    '(512×512 output) in their real configs with deterministic random weights (no download) and reports load time, the first ' +
    '(cold, pipelines compiled) and a warm forward, peak RSS and peak GPU memory, and whether the output is finite.',
  flags: {
    json: { type: 'boolean', help: 'Print one JSON document on stdout' },
    dtype: { type: 'string', choices: ['f32', 'f16', 'both'], help: 'Compute dtype(s) (kernels: both by default; models: f32)' },
    filter: { type: 'string', help: 'Only cases whose name or family matches this regex' },
    reps: { type: 'int', default: 5, help: 'Timed repetitions per case' },
    only: { type: 'string', help: 'bench models: comma-separated components (text_encoder, unet, decoder)' },
  },
  async run({ flags, positionals }, io) {
    const what = positionals[0];
    if (what === 'models') return runModels(flags, io);
    if (what !== 'kernels') throw new UsageError(`expected \`bench kernels\` or \`bench models\`, got ${what ? `"${what}"` : 'nothing'}`);
    const reps = flags.reps as number;
    if (reps < 1) throw new UsageError(`--reps must be ≥ 1, got ${reps}`);
    let filter: RegExp | undefined;
    if (flags.filter !== undefined) {
      try {
        filter = new RegExp(flags.filter as string);
      } catch (e) {
        throw new UsageError(`--filter is not a valid regular expression: ${(e as Error).message}`);
      }
    }
    const device = await Device.open({ gpu: await nodeGPU() });
    try {
      const dtypes: DType[] = flags.dtype === undefined || flags.dtype === 'both' ? (device.features.f16 ? ['f32', 'f16'] : ['f32']) : [flags.dtype as DType];
      if (dtypes.includes('f16') && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
      if (!flags.json) io.stdout(`adapter: ${device.adapter.name}\n${'case'.padEnd(30)} ${'dtype'.padEnd(5)} ${'median ms'.padStart(10)} ${'rate'.padStart(14)} ${'max err'.padStart(9)}\n`);
      const rows = await benchKernels(device, {
        dtypes, filter, reps,
        onRow: (r: KernelRow) => {
          if (flags.json) io.stderr(`${r.case} ${r.dtype}: ${r.error ? 'error' : r.median_ms + ' ms'}\n`);
          else io.stdout(r.error
            ? `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} error: ${r.error}\n`
            : `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} ${r.median_ms.toFixed(2).padStart(10)} ${(r.gflops !== null ? `${r.gflops} GFLOP/s` : `${r.gbps} GB/s`).padStart(14)} ${(r.max_err === null ? "n/a" : r.max_err.toExponential(1)).padStart(9)}\n`);
        },
      });
      if (flags.json) io.stdout(JSON.stringify({ adapter: device.adapter.name, date: new Date().toISOString(), timing: device.features.timestamp ? 'gpu-timestamp' : 'wall', rows }, null, 1) + '\n');
      return rows.some((r) => r.error) ? 1 : 0;
    } finally {
      device.destroy();
    }
  },
};

async function runModels(flags: Record<string, unknown>, io: Parameters<Command['run']>[1]): Promise<number> {
  const only = flags.only === undefined ? undefined : String(flags.only).split(',').map((x) => x.trim());
  for (const o of only ?? []) if (!['text_encoder', 'unet', 'decoder'].includes(o)) throw new UsageError(`--only: unknown component "${o}" (text_encoder, unet, decoder)`);
  const device = await Device.open({ gpu: await nodeGPU() });
  try {
    if (flags.dtype === 'both') throw new UsageError('--dtype both is for bench kernels; bench models takes f32 or f16');
    const dtype: DType = flags.dtype === 'f16' ? 'f16' : 'f32';
    if (dtype === 'f16' && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
    if (!flags.json) io.stdout(`adapter: ${device.adapter.name}, dtype ${dtype}\n`);
    const rows = await benchModels(device, {
      dtype, only,
      onRow: (r: ModelRow) => {
        const line = r.error ? `${r.component}: error: ${r.error}` : `${r.component}: load ${r.load_s}s, cold ${r.cold_s}s, warm ${r.warm_s}s, peak RSS ${r.peak_rss_mb} MB, peak GPU ${r.peak_gpu_mb} MB, output [${r.output_shape}] ${r.output_finite ? 'finite' : 'NOT FINITE'}`;
        (flags.json ? io.stderr : io.stdout)(line + '\n');
      },
    });
    if (flags.json) io.stdout(JSON.stringify({ adapter: device.adapter.name, dtype, date: new Date().toISOString(), rows }, null, 1) + '\n');
    return rows.some((r) => r.error || !r.output_finite) ? 1 : 0;
  } finally {
    device.destroy();
  }
}
