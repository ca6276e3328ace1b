/**
 * A tiny gitignore-style glob matcher for repo file paths (always '/'-separated):
 *  - `*` matches any run of characters except '/', `?` one character except '/',
 *    `**` any run including '/' (`a/**` = everything under a, `**` + `/x` = x at any depth).
 *  - A pattern without '/' matches a file or folder name at any depth: `*.json` matches `unet/config.json`.
 *  - A pattern matching a folder matches everything inside it: `unet`, `unet/` and `unet/*` all select
 *    the whole unet folder (as huggingface_hub's `allow_patterns=["unet/*"]` does).
 *  - A trailing '/' matches folders only; a leading '/' is ignored (patterns are anchored at the repo root).
 */
export type PathMatcher = (path: string) => boolean;

function toRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atStart = i === 0 || glob[i - 1] === '/';
        i++;
        if (atStart && glob[i + 1] === '/') {
          re += '(?:.*/)?'; // `**/` : zero or more folders
          i++;
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Compiles one pattern into a predicate over repo paths. */
export function compileGlob(pattern: string): PathMatcher {
  let p = pattern.trim().replace(/\\/g, '/');
  const dirOnly = p.endsWith('/');
  p = p.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '') return () => !dirOnly;
  const anchored = p.includes('/');
  const re = toRegExp(p);
  return (path) => {
    const segs = path.split('/');
    // A path matches when the pattern matches the file itself or one of the folders it is in.
    const last = dirOnly ? segs.length - 1 : segs.length;
    if (!anchored) {
      for (let k = 0; k < last; k++) if (re.test(segs[k]!)) return true;
      return false;
    }
    for (let k = 1; k <= last; k++) if (re.test(segs.slice(0, k).join('/'))) return true;
    return false;
  };
}

/** True when `path` matches any of the patterns. */
export function matchesAny(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => compileGlob(p)(path));
}

/** Combines include / exclude patterns and an optional predicate into one filter. */
export function fileFilter(opts: { allowPatterns?: readonly string[] | undefined; ignorePatterns?: readonly string[] | undefined; filter?: ((path: string) => boolean) | undefined}): PathMatcher {
  const allow = (opts.allowPatterns ?? []).map(compileGlob);
  const ignore = (opts.ignorePatterns ?? []).map(compileGlob);
  return (path) =>
    (allow.length === 0 || allow.some((m) => m(path))) && !ignore.some((m) => m(path)) && (opts.filter ? opts.filter(path) : true);
}

/** True when the pattern has no wildcard (it names one file or folder). */
export function isLiteralPattern(pattern: string): boolean {
  return !/[*?]/.test(pattern);
}
