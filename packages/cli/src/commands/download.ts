import { createProgressPrinter, parseRepoSpec, snapshotDownload, type RepoType } from '@fewstep/weights-tools';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';

export const download: Command = {
  name: 'download',
  usage: 'fewstep download <org/name[@revision]> [--revision R] [--repo-type model|dataset] [--include glob]... [--exclude glob]... [--cache-dir D] [--quiet]',
  description:
    'Downloads the files of a hub repo into the standard Hugging Face cache (shared with Python:\n' +
    '$HF_HUB_CACHE, default ~/.cache/huggingface/hub), resuming interrupted files, and prints the\n' +
    'snapshot folder on stdout. Files already cached are not downloaded again; a complete cached\n' +
    'snapshot needs no network at all. Globs: * and ? stay within a folder, ** crosses folders, a\n' +
    'pattern without / matches a name at any depth (*.json), a folder pattern selects its contents; an\n' +
    '--include that matches no file of the revision (or patterns that leave none) is an error (exit 1).\n' +
    'Several processes (fewstep or Python\'s huggingface_hub) may fill one cache at once: each file is\n' +
    'downloaded by one of them under the cache\'s per-file lock (.locks/), the others wait and reuse it.\n' +
    'Env: HF_TOKEN (or $HF_HOME/token), HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE=1.',
  flags: {
    revision: { type: 'string', help: 'Branch, tag or commit (an @revision on the repo id wins)', default: 'main' },
    'repo-type': { type: 'string', choices: ['model', 'dataset'], default: 'model', help: 'Kind of repo (datasets are cached as datasets--org--name)' },
    include: { type: 'string', multiple: true, help: 'Only files matching this glob (repeatable)' },
    exclude: { type: 'string', multiple: true, help: 'Skip files matching this glob (repeatable)' },
    'cache-dir': { type: 'string', help: 'Cache folder instead of $HF_HUB_CACHE' },
    refresh: { type: 'boolean', help: "Ask the hub for the branch's latest commit even if the cache is complete" },
    quiet: { type: 'boolean', short: 'q', help: 'No progress output on stderr' },
  },
  async run({ flags, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`expected one repo id (org/name), got ${positionals.length}`);
    const printer = createProgressPrinter(io.stderr, { isTTY: io.isTTY, quiet: Boolean(flags['quiet']) });
    try {
      const { repoId, revision } = parseRepoSpec(positionals[0]!, flags['revision'] as string);
      const dir = await snapshotDownload(repoId, {
        revision,
        repoType: flags['repo-type'] as RepoType,
        allowPatterns: (flags['include'] as string[] | undefined) ?? undefined,
        ignorePatterns: (flags['exclude'] as string[] | undefined) ?? undefined,
        cacheDir: flags['cache-dir'] as string | undefined,
        refresh: Boolean(flags['refresh']),
        onProgress: printer.onProgress,
        signal: io.signal,
      });
      printer.finish();
      io.stdout(`${dir}\n`);
      return 0;
    } catch (e) {
      printer.finish();
      throw e;
    }
  },
};
