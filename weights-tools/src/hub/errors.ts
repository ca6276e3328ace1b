/**
 * Typed hub errors. Every message is one line that names the repo / file and says what to do.
 */
export class HubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad repo id, bad file path from the server, or other input the hub layer cannot use. */
export class HubInputError extends HubError {}

/** 404 on the repo (or the hub's `X-Error-Code: RepoNotFound`). */
export class RepoNotFoundError extends HubError {
  constructor(readonly repoId: string, endpoint: string, hint = '') {
    super(`Repository ${repoId} not found on ${endpoint}${hint}`);
  }
}

/** The branch / tag / commit does not exist in the repo. */
export class RevisionNotFoundError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, endpoint: string) {
    super(`Revision ${revision} not found in ${repoId} on ${endpoint}`);
  }
}

/** 404 on a file of an existing repo. */
export class EntryNotFoundError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, readonly file: string) {
    super(`File ${file} not found in ${repoId}@${revision}`);
  }
}

/** 401/403: private or gated repo without (or with an insufficient) token. */
export class AuthRequiredError extends HubError {
  constructor(readonly repoId: string, readonly status: number, hasToken: boolean, endpoint: string, gated = false) {
    super(
      hasToken
        ? `Repository ${repoId} refused the token (HTTP ${status})${gated ? ': it is gated, accept its conditions at ' + endpoint + '/' + repoId + ' and' : ':'} check that HF_TOKEN has access (or run \`huggingface-cli login\`)`
        : `Repository ${repoId} requires authentication${gated ? ' (gated repo: accept its conditions at ' + endpoint + '/' + repoId + ')' : ''}: set HF_TOKEN (or run \`huggingface-cli login\`)`,
    );
  }
}

/** Offline mode (HF_HUB_OFFLINE=1 or `offline: true`) and something needed is not in the cache. */
export class OfflineMissingError extends HubError {
  constructor(readonly repoId: string, readonly revision: string, readonly missing: string[], detail?: string) {
    const shown = missing.slice(0, 8).join(', ') + (missing.length > 8 ? `, and ${missing.length - 8} more` : '');
    super(
      `Offline mode (HF_HUB_OFFLINE=1): ` +
        (detail ?? `${missing.length} file${missing.length === 1 ? '' : 's'} of ${repoId}@${revision} not in the cache: ${shown}`) +
        ` (run once online to download)`,
    );
  }
}

/** The downloaded bytes do not match the expected size or sha256; the partial file has been deleted. */
export class IntegrityError extends HubError {
  constructor(readonly repoId: string, readonly file: string, what: string) {
    super(`Download of ${file} from ${repoId} is corrupt (${what}); the partial file was deleted, run again to retry`);
  }
}

/** Network failure (refused / reset / timeout) that persisted after the bounded retries. */
export class HubConnectionError extends HubError {
  constructor(readonly target: string, readonly code: string, readonly attempts: number) {
    super(`Could not download ${target}: ${code} after ${attempts} attempt${attempts === 1 ? '' : 's'} (check the network or HF_ENDPOINT; run again to resume)`);
  }
}

/** Any other unexpected HTTP status. */
export class HubHttpError extends HubError {
  constructor(readonly status: number, readonly url: string, detail: string) {
    super(`HTTP ${status} from ${url}${detail ? ': ' + detail : ''}`);
  }
}
