import { CLIPTokenizer } from '@fewstep/models';
import { nodeFiles } from '@fewstep/tensor/node';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';

export const tokenize: Command = {
  name: 'tokenize',
  usage: 'fewstep tokenize --tokenizer <dir> [--json] [--] <prompt>...',
  description:
    'Tokenizes each prompt with a CLIP tokenizer folder (vocab.json, merges.txt and optional\n' +
    'tokenizer_config.json / special_tokens_map.json, or a diffusers model folder with tokenizer/).\n' +
    'Ids are padded/truncated to the tokenizer\'s max length (77), exactly as diffusers does.\n' +
    'Use -- before prompts that start with "-".',
  flags: {
    tokenizer: { type: 'string', help: 'Tokenizer folder (or a diffusers model folder)' },
    json: { type: 'boolean', help: 'Print a JSON array with one array of input ids per prompt' },
  },
  async run(args, io) {
    const dir = args.flags['tokenizer'] as string | undefined;
    if (dir === undefined) throw new UsageError('--tokenizer <dir> is required');
    if (args.positionals.length === 0) throw new UsageError('give at least one prompt (put -- before a prompt that starts with "-")');
    if (!(await nodeFiles.exists(dir))) throw new UsageError(`${dir}: tokenizer folder not found`);
    const tok = await CLIPTokenizer.fromFolder(nodeFiles, dir);

    const encoded = args.positionals.map((prompt) => ({ prompt, tokens: tok.tokenize(prompt), ...tok.encode(prompt) }));
    if (args.flags['json']) {
      io.stdout(`[${encoded.map((e) => `[${e.inputIds.join(',')}]`).join(',\n')}]\n`);
      return 0;
    }
    const max = tok.modelMaxLength;
    const out: string[] = [];
    for (const [i, e] of encoded.entries()) {
      const used = e.attentionMask.reduce((a, b) => a + b, 0);
      const dropped = e.tokens.length - (used - 2);
      out.push(`prompt ${i + 1}: ${JSON.stringify(e.prompt)}`);
      out.push(`  ${used} of ${max} positions used${dropped > 0 ? `, ${dropped} token${dropped === 1 ? '' : 's'} truncated` : ''}`);
      const shown = [tok.bosToken, ...e.tokens.slice(0, used - 2), tok.eosToken];
      for (let k = 0; k < used; k++) {
        // Byte-level symbols of non-ASCII text are unreadable (e.g. ðŁĲ±); show the text they stand for.
        const t = shown[k]!;
        const text = /^[\x21-\x7e]*$/.test(t) ? '' : `  (${JSON.stringify(tok.decode([e.inputIds[k]!]))})`;
        out.push(`  ${String(k).padStart(2)}  ${String(e.inputIds[k]).padStart(5)}  ${t}${text}`);
      }
      if (used < max) out.push(`  ${used}..${max - 1}: padding with ${tok.padTokenId} (${tok.padToken})`);
      if (dropped > 0) out.push(`  truncated: ${e.tokens.slice(used - 2).join(' ')}`);
    }
    io.stdout(out.join('\n') + '\n');
    return 0;
  },
};
