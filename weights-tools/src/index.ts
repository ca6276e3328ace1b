// @fewstep/weights-tools: Node-side tools around model weights (hub download into the HF cache, ...).
export { hfHubDownload, resolveRepo, snapshotDownload } from './hub/download.js';
export type { DownloadOptions, SnapshotOptions } from './hub/download.js';
export { RepoCache, hfHome, resolveConfig } from './hub/cache.js';
export type { HubConfig, HubEnvOptions, RepoType } from './hub/cache.js';
export { compileGlob, fileFilter, matchesAny } from './hub/glob.js';
export type { PathMatcher } from './hub/glob.js';
export { createProgressPrinter, formatBytes } from './hub/progress.js';
export type { ProgressCallback, ProgressEvent, ProgressPrinter } from './hub/progress.js';
export {
  AuthRequiredError,
  EntryNotFoundError,
  HubConnectionError,
  HubError,
  HubHttpError,
  HubInputError,
  IntegrityError,
  OfflineMissingError,
  RepoNotFoundError,
  RevisionNotFoundError,
} from './hub/errors.js';
export { hubResolver, parseRepoSpec, pipelineComponents, resolveModel, selectModelFiles } from './model_source.js';
export type { ModelSourceOptions, ResolvedModel, VaeChoice, WeightDType } from './model_source.js';
