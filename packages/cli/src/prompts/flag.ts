/**
 * `--prompts <file|org/name[@rev]>` for the commands: readPromptSource with its errors as one line naming the
 * flag — bad input (a missing file, an unknown format, no Prompt column, a dataset that does not exist or has no
 * data file) is a UsageError (exit 2); the network or the cache failing stays what it is (exit 1).
 */
import { FewstepError } from '@fewstep/tensor';
import { HubConnectionError, HubHttpError, IntegrityError, OfflineMissingError } from '@fewstep/weights-tools';
import { UsageError } from '../args.js';
import { readPromptSource, type PromptSource, type PromptSourceOptions } from './hub_dataset.js';

export async function readPromptsFlag(spec: string, opts: PromptSourceOptions = {}, flag = '--prompts'): Promise<PromptSource> {
  try {
    return await readPromptSource(spec, opts);
  } catch (e) {
    if (!(e instanceof FewstepError)) throw e;
    const msg = e.message.startsWith(spec) ? `${flag} ${e.message}` : `${flag} ${spec}: ${e.message}`;
    if (e instanceof HubConnectionError || e instanceof HubHttpError || e instanceof IntegrityError || e instanceof OfflineMissingError) {
      e.message = msg;
      throw e;
    }
    throw new UsageError(msg);
  }
}
