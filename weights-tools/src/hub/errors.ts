/**
 * Typed hub errors: FewstepErrors with a stable `code` per class (match on the class or the code, not
 * the message). Every message is one line that names the repo / file and says what to do.
 */
import { FewstepError } from '@fewstep/tensor';

export type HubErrorCode = 'hub_input' | 'repo_not_found' | 'revision_not_found' | 'entry_not_found' | 'auth_required' | 'offline_missing' | 'integrity' | 'hub_connection' | 'hub_http';

export class HubError extends FewstepError {
  declare readonly code: HubErrorCode;
  constructor(code: HubErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Bad repo id, bad file path from the server, or other input the hub layer cannot use (code 'hub_input'). */
export class HubInputError extends HubError {
  constructor(message: string) {
    super('hub_input', message);
  }
}

/** 404 on the repo (or the hub's `X-Error-Code: RepoNotFound`); code 'repo_not_found'. */
export class RepoNotFoundError extends HubError {
  constructor(readonly repoId: string, endpoint: string, hint = '') {
    super('repo_not_found', `Repository ${repoId} not found on ${endpoint}${hint}`);
  }
}

/** The branch / tag / commit does not exist in the repo; code 'revision_not_found'. */
export class RevisionNotFoundError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, endpoint: string) {
    super('revision_not_found', `Revision ${revision} not found in ${repoId} on ${endpoint}`);
  }
}

/** 404 on a file of an existing repo; code 'entry_not_found'. */
export class EntryNotFoundError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, readonly file: string) {
    super('entry_not_found', `File ${file} not found in ${repoId}@${revision}`);
  }
}

/**
 * The include / exclude patterns of a snapshot select nothing: an include pattern matches no file of the
 * revision, or the excludes leave none (code 'entry_not_found', like a missing file).
 */
export class NoMatchingFilesError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, readonly patterns: string[], what: 'include' | 'selection', fileCount: number) {
    super(
      'entry_not_found',
      what === 'include'
        ? `No file of ${repoId}@${revision} matches ${patterns.length === 1 ? 'the include pattern' : 'the include patterns'} ${patterns.join(', ')} (the revision has ${fileCount} file${fileCount === 1 ? '' : 's'}; nothing was downloaded)`
        : `No file of ${repoId}@${revision} is left after the include / exclude patterns (the revision has ${fileCount} file${fileCount === 1 ? '' : 's'}; nothing was downloaded)`,
    );
  }
}

/**
 * HTTP 403 on one file of a repo whose file list could be read, or from the CDN that serves its bytes: the
 * hub refuses that file itself (its message, when it sent one, is quoted). Not a missing token: code 'hub_http'.
 */
export class FileForbiddenError extends HubError {
  readonly status = 403;
  constructor(readonly repoId: string, readonly revision: string, readonly file: string, readonly url: string, detail: string, hasToken: boolean) {
    super(
      'hub_http',
      `HTTP 403 Forbidden for ${file} of ${repoId}@${revision} from ${new URL(url).host}${detail ? `: ${detail}` : ''} ` +
        `(the repo's file list was readable, so this file itself is refused${hasToken ? '; check that your token may read it' : ''})`,
    );
  }
}

/** 401/403: private or gated repo without (or with an insufficient) token; code 'auth_required'. */
export class AuthRequiredError extends HubError {
  constructor(readonly repoId: string, readonly status: number, hasToken: boolean, endpoint: string, gated = false) {
    super(
      'auth_required',
      hasToken
        ? `Repository ${repoId} refused the token (HTTP ${status})${gated ? ': it is gated, accept its conditions at ' + endpoint + '/' + repoId + ' and' : ':'} check that HF_TOKEN has access (or run \`huggingface-cli login\`)`
        : `Repository ${repoId} requires authentication${gated ? ' (gated repo: accept its conditions at ' + endpoint + '/' + repoId + ')' : ''}: set HF_TOKEN (or run \`huggingface-cli login\`)`,
    );
  }
}

/** Offline mode (HF_HUB_OFFLINE=1 or `offline: true`) and something needed is not in the cache; code 'offline_missing'. */
export class OfflineMissingError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, readonly missing: string[], detail?: string) {
    const shown = missing.slice(0, 8).join(', ') + (missing.length > 8 ? `, and ${missing.length - 8} more` : '');
    super(
      'offline_missing',
      `Offline mode (HF_HUB_OFFLINE=1): ` +
        (detail ?? `${missing.length} file${missing.length === 1 ? '' : 's'} of ${repoId}@${revision} not in the cache: ${shown}`) +
        ` (run once online to download)`,
    );
  }
}

/** The downloaded bytes do not match the expected size or sha256; the partial file has been deleted. Code 'integrity'. */
export class IntegrityError extends HubError {
  constructor(readonly repoId: string, readonly file: string, what: string) {
    super('integrity', `Download of ${file} from ${repoId} is corrupt (${what}); the partial file was deleted, run again to retry`);
  }
}

/** Network failure (refused / reset / timeout) that persisted after the bounded retries; code 'hub_connection' (`networkCode`: ECONNREFUSED, …). */
export class HubConnectionError extends HubError {
  constructor(readonly target: string, readonly networkCode: string, readonly attempts: number) {
    super('hub_connection', `Could not download ${target}: ${networkCode} after ${attempts} attempt${attempts === 1 ? '' : 's'} (check the network or HF_ENDPOINT; run again to resume)`);
  }
}

/** Any other unexpected HTTP status (or a response the client cannot use); code 'hub_http'. */
export class HubHttpError extends HubError {
  constructor(readonly status: number, readonly url: string, detail: string) {
    super('hub_http', `HTTP ${status} from ${url}${detail ? ': ' + detail : ''}`);
  }
}
