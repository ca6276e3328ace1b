/**
 * The errors @fewstep/models throws on purpose, on top of @fewstep/tensor's (`UnsupportedError` for a valid
 * config option or block type fewstep does not implement, `ShapeError` for model inputs of the wrong shape or
 * dtype, `InvalidArgumentError` for bad options, `FileFormatError` for unreadable files). Match on the class or
 * its `code`, not on the message.
 */
import { FewstepError } from '@fewstep/tensor';

/** A config.json (or config object) that is malformed: a value of the wrong type, lists of different lengths. */
export class ConfigError extends FewstepError {
  constructor(message: string) {
    super('invalid_config', message);
  }
}

/**
 * Weights that do not fit the model: a missing tensor, a tensor of the wrong shape, keys the model does not
 * use, a LoRA that does not fit. The message names the file and the tensor; `file` and `tensor` hold them when
 * the check knows them.
 */
export class WeightsError extends FewstepError {
  constructor(message: string, readonly file?: string | undefined, readonly tensor?: string | undefined) {
    super('weights_mismatch', message);
  }
}

/** A folder that is not a diffusers/transformers component (no config.json, no class name, no weights); `dir` names it when known. */
export class ModelFolderError extends FewstepError {
  constructor(message: string, readonly dir?: string | undefined) {
    super('not_a_model', message);
  }
}
