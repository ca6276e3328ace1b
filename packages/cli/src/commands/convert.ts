import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { numel, openTensorFile, type StDType } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { taesdKeyMap } from '@fewstep/models';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { writeSafetensorsFile } from '../safetensors_file.js';
import { terminalSafe } from '../terminal.js';
import { checkWritable } from '../write_atomic.js';

const FLOATS: readonly StDType[] = ['F64', 'F32', 'F16', 'BF16'];

export const convert: Command = {
  name: 'convert',
  usage: 'fewstep convert <in.bin|.pth|.pt|.safetensors> <out.safetensors> [--taesd-keys] [--dtype f16|f32] [--force]',
  description:
    'Reads the checkpoint with the whitelist unpickler (only tensors, storages and dicts; a pickle naming any other global, e.g. ' +
    'os.system, is refused with one error line and nothing is written) and writes a safetensors file, one tensor at a time: shared ' +
    'storages and strided views become contiguous tensors, dtypes are kept (F32/F16/BF16/I64/…) unless --dtype converts the floating ' +
    'ones. The output is written to a temporary file beside it (<out>.partial-<pid>) and renamed when complete, so a failed run never ' +
    'leaves a partial file (the next run into that folder removes the temp files of runs that were killed); its folder is checked first; ' +
    'an existing output is refused unless --force. --taesd-keys renames original TAESD keys (taesd_encoder.pth / taesd_decoder.pth: ' +
    '"3.conv.0.weight") to diffusers AutoencoderTiny names ("encoder.layers.3.conv.0.weight", decoder indices one lower).',
  flags: {
    'taesd-keys': { type: 'boolean', help: 'Rename original TAESD encoder/decoder keys to diffusers AutoencoderTiny keys' },
    dtype: { type: 'string', choices: ['f16', 'f32'], help: 'Store floating-point tensors as F16 or F32 (default: as stored)' },
    force: { type: 'boolean', help: 'Overwrite the output file if it exists' },
  },
  async run({ flags, positionals }, io) {
    if (positionals.length !== 2) throw new UsageError(`expected an input file and an output .safetensors file, got ${positionals.length} argument(s)`);
    const [input, output] = positionals as [string, string];
    if (!output.endsWith('.safetensors')) throw new UsageError(`output ${output} must end in .safetensors`);
    if (resolve(input) === resolve(output)) throw new UsageError('input and output are the same file');
    const existing = await stat(output).catch(() => undefined);
    if (existing?.isDirectory()) throw new UsageError(`${output} is a folder`);
    if (existing && !flags['force']) throw new UsageError(`${output} already exists (pass --force to overwrite)`);
    // The destination before any work: its folder exists and takes a file (a killed run's temp files are removed
    // when the output is written).
    await checkWritable(output, `output ${output}`);

    // Opening parses and vets the whole pickle: a refused or corrupt checkpoint fails here, before any output exists.
    const f = await openTensorFile(nodeFiles, input);
    try {
      const keys = [...f.tensors.keys()];
      const names: [string, string][] = flags['taesd-keys'] ? [...taesdKeyMap(keys, undefined, input)] : keys.map((k) => [k, k]);
      const target = flags['dtype'] === 'f16' ? 'F16' : flags['dtype'] === 'f32' ? 'F32' : undefined;
      const plan = names.map(([name, key]) => {
        const src = f.info(key).dtype;
        const dtype: StDType = target && FLOATS.includes(src) ? target : src;
        return { name, key, src, dtype, shape: f.info(key).shape };
      });
      const asBytes = (d: ArrayBufferView) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
      const size = await writeSafetensorsFile(output, plan, async (i) => {
        const t = plan[i]!;
        return t.dtype === t.src ? f.readBytes(t.key) : asBytes(await f.read(t.key, t.dtype === 'F16' ? 'f16' : 'f32'));
      }, { format: 'pt' }, io.signal);
      const params = plan.reduce((s, t) => s + numel(t.shape), 0);
      const mib = size / 2 ** 20;
      io.stdout(`${terminalSafe(output)}: ${plan.length} tensors, ${params.toLocaleString('en-US')} parameters, ${mib.toFixed(2)} MiB${flags['taesd-keys'] ? ', TAESD keys renamed to diffusers' : ''}${target ? `, floats as ${target}` : ''}\n`);
      return 0;
    } finally {
      await f.close();
    }
  },
};
