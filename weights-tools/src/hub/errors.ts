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
