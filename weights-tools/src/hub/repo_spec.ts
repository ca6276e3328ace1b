/**
 * `org/name@revision` — how fewstep's flags and APIs name a repo at a revision (`--model`, `--lora`,
 * `--controlnet`, `resolveRepo`). Repo ids never contain '@', so the first '@' starts the revision
 * (which may itself contain '/' or '@', as `refs/pr/1` does).
 */
export interface RepoSpec {
  repoId: string;
  revision: string;
}

/** Splits `org/name@rev`; the `@rev` suffix wins over `revision`, which defaults to 'main'. */
export function parseRepoSpec(spec: string, revision?: string | undefined): RepoSpec {
  const at = spec.indexOf('@');
  if (at > 0) return { repoId: spec.slice(0, at), revision: spec.slice(at + 1) || revision || 'main' };
  return { repoId: spec, revision: revision || 'main' };
}
