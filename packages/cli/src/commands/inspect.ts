import { ST_DTYPE_BYTES, TorchCheckpointFile, numel, openTensorFile, type TensorFileInfo, type TorchTensorInfo } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { terminalSafe as safe, terminalSafeJson } from '../terminal.js';

/** How a PyTorch tensor sits in its storage: "" for a plain one, else e.g. "shared ×3, view (offset 3, stride [10])". */
function layout(t: TorchTensorInfo): string {
  const parts: string[] = [];
  if (t.storageUsers > 1) parts.push(`shared ×${t.storageUsers}`);
  const offset = t.storageOffset ? `offset ${t.storageOffset}` : '';
  if (!t.contiguous) parts.push(`view (${[offset, `stride [${t.stride.join(', ')}]`].filter(Boolean).join(', ')})`);
  else if (offset) parts.push(`view (${offset})`);
  return parts.join(', ');
}

export const inspect: Command = {
  name: 'inspect',
  usage: 'fewstep inspect <file.safetensors|.bin|.pth|.pt> [--json]',
  description:
    'Validates the file and prints every tensor, its dtype and shape, and the total parameter count. safetensors: the header ' +
    '(offsets, dtypes, shapes vs byte ranges). PyTorch checkpoints (torch.save zip): the zip directory and the pickle, read by a ' +
    'whitelist unpickler that executes nothing (a pickle naming any other global, e.g. os.system, is refused); the "storage" ' +
    'column says which storage record a tensor reads and whether it shares it or is a strided view. A corrupt or refused file is ' +
    'one error line naming the file and the problem (exit 1). Names and metadata from the file are printed with their control ' +
    'characters escaped (\\x1b), in the table and in the JSON.',
  flags: {
    json: { type: 'boolean', help: 'Print JSON instead of a table' },
  },
  async run({ flags, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`expected one file, got ${positionals.length}`);
    const path = positionals[0]!;
    const f = await openTensorFile(nodeFiles, path);
    try {
      const torch = f instanceof TorchCheckpointFile ? f : undefined;
      const tensors: TensorFileInfo[] = [...f.tensors.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const total = tensors.reduce((s, t) => s + numel(t.shape), 0);
      const bytes = tensors.reduce((s, t) => s + numel(t.shape) * ST_DTYPE_BYTES[t.dtype], 0);
      const tinfo = (t: TensorFileInfo) => t as TorchTensorInfo;
      if (flags['json']) {
        const rows = tensors.map((t) =>
          torch
            ? {
                name: t.name,
                dtype: t.dtype,
                shape: t.shape,
                storage: tinfo(t).storage.key,
                storage_offset: tinfo(t).storageOffset,
                stride: tinfo(t).stride,
                contiguous: tinfo(t).contiguous,
                shared: tinfo(t).storageUsers > 1,
              }
            : { name: t.name, dtype: t.dtype, shape: t.shape },
        );
        const out: Record<string, unknown> = { file: path, format: f.format, tensors: rows, parameters: total, bytes, metadata: f.metadata };
        if (torch) {
          out['archive_folder'] = torch.folder;
          if (torch.skipped.length) out['skipped'] = torch.skipped;
        }
        io.stdout(terminalSafeJson(out, 2) + '\n');
        return 0;
      }
      // Names come from the file: shown with their control characters escaped (an ESC[2J must not clear the screen).
      const names = tensors.map((t) => safe(t.name));
      const w = names.reduce((m, n) => Math.max(m, n.length), 4); // no spread: a file may hold 200k tensors
      if (torch) {
        const shapes = tensors.map((t) => `[${t.shape.join(', ')}]`);
        const sw = shapes.reduce((m, s) => Math.max(m, s.length), 5);
        io.stdout(`${'name'.padEnd(w)}  dtype  ${'shape'.padEnd(sw)}  storage\n`);
        tensors.forEach((t, i) => {
          const l = layout(tinfo(t));
          io.stdout(`${names[i]!.padEnd(w)}  ${t.dtype.padEnd(5)}  ${shapes[i]!.padEnd(sw)}  ${safe(tinfo(t).storage.key)}${l ? ` (${l})` : ''}\n`);
        });
      } else {
        io.stdout(`${'name'.padEnd(w)}  dtype  shape\n`);
        tensors.forEach((t, i) => io.stdout(`${names[i]!.padEnd(w)}  ${t.dtype.padEnd(5)}  [${t.shape.join(', ')}]\n`));
      }
      io.stdout(`\n${tensors.length} tensors, ${total.toLocaleString('en-US')} parameters, ${(bytes / 2 ** 20).toFixed(2)} MiB\n`);
      if (torch) {
        const all = tensors.map(tinfo);
        const storages = new Set(all.map((t) => t.storage.key)).size;
        const shared = all.filter((t) => t.storageUsers > 1).length;
        const views = all.filter((t) => !t.contiguous || t.storageOffset).length;
        io.stdout(`PyTorch checkpoint (archive folder "${safe(torch.folder)}"): ${storages} storages, ${shared} tensors share a storage, ${views} strided/offset views\n`);
        if (torch.skipped.length) io.stdout(`non-tensor entries skipped: ${safe(torch.skipped.slice(0, 8).join(', '))}${torch.skipped.length > 8 ? ', …' : ''}\n`);
      }
      const meta = Object.entries(f.metadata);
      if (meta.length) io.stdout(`metadata: ${meta.map(([k, v]) => `${safe(k)}=${safe(v.length > 60 ? v.slice(0, 57) + '...' : v)}`).join(', ')}\n`);
      return 0;
    } finally {
      await f.close();
    }
  },
};
