// @fewstep/weights-tools: Node-side tools around model weights (hub download into the HF cache, ...).
export { hfHubDownload, resolveRepo, snapshotDownload } from './hub/download';
export type { DownloadOptions, SnapshotOptions } from './hub/download';
export { RepoCache, hfHome, resolveConfig } from './hub/cache';
export type { HubConfig, HubEnvOptions, RepoType } from './hub/cache';
export { compileGlob, fileFilter, matchesAny } from './hub/glob';
export type { PathMatcher } from './hub/glob';
export { createProgressPrinter, formatBytes } from './hub/progress';
export type { ProgressCallback, ProgressEvent, ProgressPrinter } from './hub/progress';
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
} from './hub/errors';
export { hubResolver, parseRepoSpec, pipelineComponents, resolveModel, selectModelFiles } from './model_source';
export type { ModelSourceOptions, ResolvedModel, VaeChoice, WeightDType } from './model_source';
