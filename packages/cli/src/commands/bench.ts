import { Device, type DType } from '@fewstep/tensor';
import { nodeGPU } from '@fewstep/tensor/node';
import { UsageError } from '../args';
import type { Command } from '../command';
import { benchKernels, type KernelRow } from '../bench/kernels';

export const bench: Command = {
  name: 'bench',
  summary: 'Microbenchmarks: `bench kernels` times every kernel family at SDXS-512 shapes',
  usage: 'fewstep bench kernels [--json] [--dtype f32|f16|both] [--filter <regex>] [--reps N]',
  description:
    'Times each kernel at the shapes SDXS-512 uses (case names match shared/anchors/ort-ops), after a warm-up run, ' +
    'with GPU timestamp queries when the adapter has them (else wall clock around a full sync). Reports median ms, ' +
    'GFLOP/s (compute-bound) or GB/s (memory-bound), adapter, dtype and the max |error| against a CPU reference on sampled outputs. ' +
    'Benchmarks never assert speed.',
  flags: {
    json: { type: 'boolean', help: 'Print one JSON document on stdout' },
    dtype: { type: 'string', choices: ['f32', 'f16', 'both'], default: 'both', help: 'Compute dtype(s)' },
    filter: { type: 'string', help: 'Only cases whose name or family matches this regex' },
    reps: { type: 'int', default: 5, help: 'Timed repetitions per case' },
  },
  async run({ flags, positionals }, io) {
    const what = positionals[0];
    if (what !== 'kernels') throw new UsageError(`expected \`bench kernels\`, got ${what ? `"${what}"` : 'nothing'}`);
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
      const dtypes: DType[] = flags.dtype === 'both' ? (device.features.f16 ? ['f32', 'f16'] : ['f32']) : [flags.dtype as DType];
      if (dtypes.includes('f16') && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
      if (!flags.json) io.stdout(`adapter: ${device.adapter.name}\n${'case'.padEnd(30)} ${'dtype'.padEnd(5)} ${'median ms'.padStart(10)} ${'rate'.padStart(14)} ${'max err'.padStart(9)}\n`);
      const rows = await benchKernels(device, {
        dtypes, filter, reps,
        onRow: (r: KernelRow) => {
          if (flags.json) io.stderr(`${r.case} ${r.dtype}: ${r.error ? 'error' : r.median_ms + ' ms'}\n`);
          else io.stdout(r.error
            ? `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} error: ${r.error}\n`
            : `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} ${r.median_ms.toFixed(2).padStart(10)} ${(r.gflops !== null ? `${r.gflops} GFLOP/s` : `${r.gbps} GB/s`).padStart(14)} ${r.max_err.toExponential(1).padStart(9)}\n`);
        },
      });
      if (flags.json) io.stdout(JSON.stringify({ adapter: device.adapter.name, date: new Date().toISOString(), timing: device.features.timestamp ? 'gpu-timestamp' : 'wall', rows }, null, 1) + '\n');
      return rows.some((r) => r.error) ? 1 : 0;
    } finally {
      device.destroy();
    }
  },
};
