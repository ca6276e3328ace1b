import type { Command } from '../command';

export const generate: Command = {
  name: 'generate',
  summary: 'Generate images from a prompt (coming with the pipeline issue)',
  usage: 'fewstep generate <prompt>... [--model <id|dir>] --out <file.png>',
  description: 'Text-to-image with SDXS-512-0.9 and friends. Not available yet: the pipeline lands in a later release.',
  flags: {},
  async run(_args, io) {
    io.stderr('fewstep generate: coming soon — the text-to-image pipeline is not implemented yet (see README, "Status").\n');
    return 1;
  },
};
