/**
 * A small, strict flag parser: every flag is declared, unknown flags and bad values are one clear
 * error naming the flag. `--` ends flags (so prompts may start with '-').
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagType = 'string' | 'number' | 'int' | 'boolean';
export interface FlagSpec {
  type: FlagType;
  /** One-line help. */
  help: string;
  default?: string | number | boolean | undefined;
  /** Allowed values for string flags. */
  choices?: readonly string[] | undefined;
  /** May be given several times (values collected into an array). */
  multiple?: boolean | undefined;
  /** Takes every following argument up to the next flag (`--init-images a.png b.png`); implies `multiple`. */
  variadic?: boolean | undefined;
  /** One-letter form: `-o` for `--out`. */
  short?: string | undefined;
  /** Other long names for the same flag (`--cfg-scale` for `--guidance`). */
  aliases?: readonly string[] | undefined;
  /** The value's name in --help (default: the type or the choices). */
  arg?: string | undefined;
  /**
   * The value may be left out: `--score` alone is `--score <optionalValue>`. A value comes inline
   * (`--score=dir`) or as the next argument when that does not look like a flag.
   */
  optionalValue?: string | undefined;
}

export interface Parsed {
  flags: Record<string, string | number | boolean | (string | number)[] | undefined>;
  positionals: string[];
}

/** A value that starts with '-' is still a value where a flag needs one (`--seed -1`, `-o -`). */
const isFlagLike = (a: string) => a.startsWith('-') && a !== '-' && !/^-\d/.test(a);

export function parseArgs(cmd: string, argv: string[], spec: Record<string, FlagSpec>): Parsed {
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  const shorts = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([k, s]) => [s.short!, k]));
  const aliases = new Map(Object.entries(spec).flatMap(([k, s]) => (s.aliases ?? []).map((a) => [a, k] as const)));
  /** How the user wrote each flag given so far (for "given twice" with an alias). */
  const written = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!isFlagLike(a)) {
      positionals.push(a);
      continue;
    }
    let name: string, inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    } else {
      const k = shorts.get(a.slice(1));
      if (!k) throw new UsageError(`unknown flag ${a} (see \`fewstep ${cmd} --help\`)`);
      name = k;
    }
    const as = a.startsWith('--') ? `--${name}` : a;
    name = aliases.get(name) ?? name;
    const s = spec[name];
    if (!s) throw new UsageError(`unknown flag --${name} (see \`fewstep ${cmd} --help\`)`);
    const values: (string | number | boolean)[] = [];
    if (s.type === 'boolean') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) throw new UsageError(`${as} takes no value`);
      values.push(inline !== 'false');
    } else if (s.variadic) {
      if (inline !== undefined) values.push(convert(as, s, inline));
      while (i + 1 < argv.length && !isFlagLike(argv[i + 1]!) && argv[i + 1] !== '--') values.push(convert(as, s, argv[++i]!));
      if (values.length === 0) throw new UsageError(`${as} needs at least one value`);
    } else if (s.optionalValue !== undefined && inline === undefined && (i + 1 >= argv.length || isFlagLike(argv[i + 1]!) || argv[i + 1] === '--')) {
      values.push(s.optionalValue);
    } else {
      const raw = inline ?? argv[++i];
      if (raw === undefined) throw new UsageError(`${as} needs a value`);
      values.push(convert(as, s, raw));
    }
    if (s.multiple || s.variadic) {
      const arr = (flags[name] as (string | number)[] | undefined) ?? [];
      arr.push(...(values as (string | number)[]));
      flags[name] = arr;
    } else {
      const before = written.get(name);
      if (before !== undefined) throw new UsageError(before === as ? `${as} given twice` : `${as} given twice (${before} is the same flag)`);
      written.set(name, as);
      flags[name] = values[0];
    }
  }
  for (const [k, s] of Object.entries(spec)) if (flags[k] === undefined && s.default !== undefined) flags[k] = s.default;
  return { flags, positionals };
}

function convert(as: string, s: FlagSpec, raw: string): string | number {
  if (s.type === 'number' || s.type === 'int') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${as} must be a number, got "${raw}"`);
    if (s.type === 'int' && !Number.isInteger(n)) throw new UsageError(`${as} must be an integer, got "${raw}"`);
    return n;
  }
  if (s.choices && !s.choices.includes(raw)) throw new UsageError(`${as} must be one of ${s.choices.join(', ')}, got "${raw}"`);
  return raw;
}

export function formatHelp(usage: string, description: string, spec: Record<string, FlagSpec>): string {
  const rows = Object.entries(spec).map(([k, s]) => {
    const names = [...(s.short ? [`-${s.short}`] : []), `--${k}`, ...(s.aliases ?? []).map((a) => `--${a}`)].join(', ');
    const value = `<${s.arg ?? (s.choices ? s.choices.join('|') : s.type)}>`;
    const arg = s.type === 'boolean' ? '' : s.optionalValue !== undefined ? ` [${value}]` : ` ${value}${s.variadic ? '...' : ''}`;
    const left = `  ${s.short ? '' : '    '}${names}${arg}`;
    const def = s.default !== undefined && s.default !== false ? ` (default: ${s.default})` : '';
    const again = s.multiple && !s.variadic && !/repeatable/.test(s.help) ? ' (repeatable)' : '';
    return [left, s.help + again + def] as const;
  });
  const w = Math.min(44, Math.max(0, ...rows.map(([l]) => l.length))) + 2;
  const line = ([l, r]: readonly [string, string]) => (l.length + 2 > w ? `${l}\n${' '.repeat(w)}${r}` : l.padEnd(w) + r);
  return `Usage: ${usage}\n\n${description}\n${rows.length ? '\nFlags:\n' + rows.map(line).join('\n') : ''}\n`;
}
