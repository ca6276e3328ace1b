/**
 * The errors fewstep throws on purpose. Each has a stable `code` — match on it (or on the class), not on
 * the message, which may be reworded — and a one-line message that names the file, tensor, option or
 * field at fault. Higher packages subclass these (e.g. `WeightsError` in @fewstep/models, `HubError` in
 * @fewstep/weights-tools); anything else that escapes is a bug.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'shape_mismatch'
  | 'unsupported'
  | 'file_format'
  | 'unsafe_pickle'
  | 'resource_limit'
  | 'no_adapter'
  | 'feature_missing'
  | 'device_lost'
  | 'gpu_error'
  | 'aborted'
  // @fewstep/models
  | 'invalid_config'
  | 'weights_mismatch'
  | 'not_a_model'
  // @fewstep/weights-tools
  | 'hub_input'
  | 'repo_not_found'
  | 'revision_not_found'
  | 'entry_not_found'
  | 'auth_required'
  | 'offline_missing'
  | 'integrity'
  | 'hub_connection'
  | 'hub_http';

export class FewstepError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A caller passed a value the API cannot take; `field` names the option or argument when there is one. */
export class InvalidArgumentError extends FewstepError {
  constructor(message: string, readonly field?: string | undefined, code: 'invalid_argument' | 'shape_mismatch' = 'invalid_argument') {
    super(code, message);
  }
}

/** Tensor shapes or dtypes that do not fit together (a kernel's inputs, a model's inputs). */
export class ShapeError extends InvalidArgumentError {
  constructor(message: string, field?: string) {
    super(message, field, 'shape_mismatch');
  }
}

/** Valid input that fewstep does not implement (a config option, a kernel shape, a file feature). */
export class UnsupportedError extends FewstepError {
  constructor(message: string) {
    super('unsupported', message);
  }
}

/** An unreadable, corrupt or refused file; the message starts with the file's name. */
export class FileFormatError extends FewstepError {
  constructor(readonly file: string, problem: string, code: 'file_format' | 'unsafe_pickle' = 'file_format', options?: { cause?: unknown }) {
    super(code, `${file}: ${problem}`, options);
  }
}

/** Input that would take more memory or work than fewstep allows (a hostile or broken file, a huge request). */
export class ResourceLimitError extends FewstepError {
  constructor(message: string) {
    super('resource_limit', message);
  }
}

/** WebGPU problems: no adapter, a missing feature, a lost device, a validation or out-of-memory error. */
export class DeviceError extends FewstepError {
  constructor(code: 'no_adapter' | 'feature_missing' | 'device_lost' | 'gpu_error', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The operation was cancelled through its AbortSignal. `name` is 'AbortError', as the DOM's. */
export class AbortError extends FewstepError {
  constructor(message = 'the operation was aborted') {
    super('aborted', message);
  }
}

/** Throws an AbortError (or the signal's own reason, when it is an Error) if `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what?: string): void {
  if (!signal?.aborted) return;
  const r: unknown = signal.reason;
  if (r instanceof FewstepError) throw r;
  throw new AbortError(what ? `${what}: aborted` : undefined);
}

/** True for errors that mean "cancelled": ours, the DOM's AbortError, Node's ABORT_ERR. */
export function isAbortError(e: unknown): boolean {
  return e instanceof AbortError || (e instanceof Error && (e.name === 'AbortError' || (e as { code?: unknown }).code === 'ABORT_ERR'));
}
