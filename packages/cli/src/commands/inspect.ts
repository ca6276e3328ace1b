import { SafetensorsFile, numel } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { UsageError } from '../args';
import type { Command } from '../command';

export const inspect: Command = {
  name: 'inspect',
  summary: 'List the tensors of a safetensors file (dtype, shape, parameter count)',
  usage: 'fewstep inspect <file.safetensors> [--json]',
  description: 'Validates the header (offsets, dtypes, shapes vs byte ranges) and prints every tensor, its dtype and shape, and the total parameter count. A corrupt file is one error line naming the file and the problem (exit 1).',
  flags: {
    json: { type: 'boolean', help: 'Print JSON instead of a table' },
  },
  async run({ flags, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`expected one file, got ${positionals.length}`);
    const path = positionals[0]!;
    const f = await SafetensorsFile.open(nodeFiles, path);
    try {
      const tensors = [...f.tensors.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const total = tensors.reduce((s, t) => s + numel(t.shape), 0);
      const bytes = tensors.reduce((s, t) => s + (t.end - t.begin), 0);
      if (flags.json) {
        io.stdout(JSON.stringify({ file: path, tensors: tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })), parameters: total, bytes, metadata: f.metadata }, null, 2) + '\n');
        return 0;
      }
      const w = Math.max(4, ...tensors.map((t) => t.name.length));
      io.stdout(`${'name'.padEnd(w)}  dtype  shape\n`);
      for (const t of tensors) io.stdout(`${t.name.padEnd(w)}  ${t.dtype.padEnd(5)}  [${t.shape.join(', ')}]\n`);
      io.stdout(`\n${tensors.length} tensors, ${total.toLocaleString('en-US')} parameters, ${(bytes / 2 ** 20).toFixed(2)} MiB\n`);
      const meta = Object.entries(f.metadata);
      if (meta.length) io.stdout(`metadata: ${meta.map(([k, v]) => `${k}=${v.length > 60 ? v.slice(0, 57) + '...' : v}`).join(', ')}\n`);
      return 0;
    } finally {
      await f.close();
    }
  },
};
