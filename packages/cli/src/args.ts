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
  short?: string | undefined;
}

export interface Parsed {
  flags: Record<string, string | number | boolean | (string | number)[] | undefined>;
  positionals: string[];
}

export function parseArgs(cmd: string, argv: string[], spec: Record<string, FlagSpec>): Parsed {
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  const shorts = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([k, s]) => [s.short!, k]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
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
    const s = spec[name];
    if (!s) throw new UsageError(`unknown flag --${name} (see \`fewstep ${cmd} --help\`)`);
    let value: string | number | boolean;
    if (s.type === 'boolean') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) throw new UsageError(`--${name} takes no value`);
      value = inline !== 'false';
    } else {
      const raw = inline ?? argv[++i];
      if (raw === undefined) throw new UsageError(`--${name} needs a value`);
      if (s.type === 'number' || s.type === 'int') {
        const n = Number(raw);
        if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${raw}"`);
        if (s.type === 'int' && !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got "${raw}"`);
        value = n;
      } else {
        if (s.choices && !s.choices.includes(raw)) throw new UsageError(`--${name} must be one of ${s.choices.join(', ')}, got "${raw}"`);
        value = raw;
      }
    }
    if (s.multiple) {
      const arr = (flags[name] as (string | number)[] | undefined) ?? [];
      arr.push(value as string | number);
      flags[name] = arr;
    } else {
      if (flags[name] !== undefined) throw new UsageError(`--${name} given twice`);
      flags[name] = value;
    }
  }
  for (const [k, s] of Object.entries(spec)) if (flags[k] === undefined && s.default !== undefined) flags[k] = s.default;
  return { flags, positionals };
}

export function formatHelp(usage: string, description: string, spec: Record<string, FlagSpec>): string {
  const rows = Object.entries(spec).map(([k, s]) => {
    const left = `  ${s.short ? `-${s.short}, ` : ''}--${k}${s.type === 'boolean' ? '' : ` <${s.choices ? s.choices.join('|') : s.type}>`}`;
    const def = s.default !== undefined && s.default !== false ? ` (default: ${s.default})` : '';
    return [left, s.help + def] as const;
  });
  const w = Math.max(0, ...rows.map(([l]) => l.length)) + 2;
  return `Usage: ${usage}\n\n${description}\n${rows.length ? '\nFlags:\n' + rows.map(([l, r]) => l.padEnd(w) + r).join('\n') : ''}\n`;
}
