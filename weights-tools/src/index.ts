// @fewstep/weights-tools: Node-side tools around model weights (hub download into the HF cache, ...).
export { hfHubDownload, listRepoFiles, resolveRepo, snapshotDownload } from './hub/download.js';
export type { DownloadOptions, HubRequestOptions, SnapshotOptions } from './hub/download.js';
export { RepoCache, hfHome, resolveConfig } from './hub/cache.js';
export type { HubConfig, HubEnvOptions, RepoType } from './hub/cache.js';
export { compileGlob, fileFilter, matchesAny } from './hub/glob.js';
export type { PathMatcher } from './hub/glob.js';
export { createProgressPrinter, formatBytes } from './hub/progress.js';
export type { DownloadProgressCallback, DownloadProgressEvent, ProgressPrinter } from './hub/progress.js';
export { acquireLock, defaultLockMode, isProcessAlive, withLock } from './hub/lock.js';
export type { HeldLock, LockMode, LockOptions } from './hub/lock.js';
export { parseRepoSpec } from './hub/repo_spec.js';
export { terminalSafe, terminalSafeJson } from './terminal.js';
export type { RepoSpec } from './hub/repo_spec.js';
export {
  AuthRequiredError,
  EntryNotFoundError,
  FileForbiddenError,
  HubConnectionError,
  HubError,
  HubHttpError,
  HubInputError,
  IntegrityError,
  NoMatchingFilesError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
} from './hub/errors.js';
export type { HubErrorCode } from './hub/errors.js';
export { hubResolver, pipelineComponents, resolveModel, selectModelFiles } from './model_source.js';
export type { ModelSourceOptions, ResolvedModel, VaeChoice, WeightDType } from './model_source.js';
