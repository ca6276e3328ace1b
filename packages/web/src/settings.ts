/**
 * The page's settings and their URL form, so a link reproduces an image: `?model=…&prompt=…&seed=…&run=1`.
 * Pure (no DOM): `parseSettings` reads a query string (bad values become warnings and fall back to the
 * default, never an exception), `settingsToQuery` writes only what differs from the defaults.
 *
 * Query keys: mode (text | sketch), model (org/name, optionally org/name@revision), revision, endpoint (a hub
 * mirror's base URL, like HF_ENDPOINT), controlnet (sketch mode), prompt, negative_prompt, seed (an integer;
 * absent, empty or -1: random), steps, guidance, width, height (blank: the model's), dtype (auto | f32 | f16),
 * control_scale, invert (1 | 0: feed 255 − sketch to the ControlNet, as IDKiro's demo), backend (browser | server:
 * generate on the `fewstep serve` that serves the page), run=1 (generate on load).
 */

export type Mode = 'text' | 'sketch';
export type DTypeChoice = 'auto' | 'f32' | 'f16';
/** Where images are made: WebGPU in this tab, or the `fewstep serve` the page came from (text to image). */
export type BackendChoice = 'browser' | 'server';

export interface PageSettings {
  mode: Mode;
  /** Hub repo id (org/name). */
  model: string;
  revision: string;
  /** Hub base URL without a trailing slash. */
  endpoint: string;
  /** Sketch mode: the ControlNet's hub repo id. */
  controlnet: string;
  prompt: string;
  negativePrompt: string;
  /** null: a new random seed per image. */
  seed: number | null;
  /** null: the model's own (SDXS: 1 step, guidance 0, 512×512). */
  steps: number | null;
  guidance: number | null;
  width: number | null;
  height: number | null;
  dtype: DTypeChoice;
  controlScale: number;
  invert: boolean;
  backend: BackendChoice;
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_MODELS: Readonly<Record<Mode, string>> = { text: 'IDKiro/sdxs-512-0.9', sketch: 'IDKiro/sdxs-512-dreamshaper' };
export const DEFAULT_CONTROLNET = 'IDKiro/sdxs-512-dreamshaper-sketch';
export const DEFAULT_PROMPTS: Readonly<Record<Mode, string>> = {
  text: 'a photo of a corgi in a forest',
  sketch: 'a cat sitting on a chair, highly detailed',
};
/** The largest seed a link can carry exactly (JavaScript numbers); the pipeline takes up to 2^64 − 1. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;
export const MAX_SIDE = 4096;
export const MAX_STEPS = 1000;

export function defaultSettings(mode: Mode = 'text'): PageSettings {
  return {
    mode,
    model: DEFAULT_MODELS[mode],
    revision: 'main',
    endpoint: DEFAULT_ENDPOINT,
    controlnet: DEFAULT_CONTROLNET,
    prompt: DEFAULT_PROMPTS[mode],
    negativePrompt: '',
    seed: null,
    steps: null,
    guidance: null,
    width: null,
    height: null,
    dtype: 'auto',
    controlScale: 1,
    invert: true,
    backend: 'browser',
  };
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/** `org/name` or `org/name@revision` → its parts, or null when it is not a hub repo id. */
export function parseRepoId(spec: string): { repo: string; revision: string | null } | null {
  const s = spec.trim();
  const at = s.indexOf('@');
  const repo = at >= 0 ? s.slice(0, at) : s;
  const revision = at >= 0 ? s.slice(at + 1) : null;
  if (!REPO_ID.test(repo) || repo.split('/').some((p) => p === '.' || p === '..')) return null;
  if (revision !== null && !isRevision(revision)) return null;
  return { repo, revision };
}

/** A branch, tag or commit name the hub's URLs can carry. */
export function isRevision(rev: string): boolean {
  return rev.length > 0 && rev.length <= 256 && !/[\s?#\\]|\.\./.test(rev) && !rev.startsWith('/') && !rev.endsWith('/');
}

/** A hub base URL: http(s), no query or fragment; returned without a trailing slash, or null. */
export function normalizeEndpoint(v: string): string | null {
  let u: URL;
  try {
    u = new URL(v.trim());
  } catch {
    return null;
  }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.search || u.hash || u.username || u.password) return null;
  return u.href.replace(/\/+$/, '');
}

export interface ParsedSettings {
  settings: PageSettings;
  /** run=1: generate once the page is ready. */
  run: boolean;
  /** One line per ignored value, naming the key. */
  warnings: string[];
}

function intIn(v: string, min: number, max: number): number | null {
  if (!/^-?\d+$/.test(v.trim())) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : null;
}

function numIn(v: string, min: number, max: number): number | null {
  if (!v.trim()) return null;
  const n = Number(v);
  return Number.isFinite(n) && n >= min && n <= max ? n : null;
}

/** Reads the settings from a URL query (`location.search`, with or without '?'). */
export function parseSettings(query: string | URLSearchParams): ParsedSettings {
  const q = typeof query === 'string' ? new URLSearchParams(query.startsWith('?') ? query.slice(1) : query) : query;
  const warnings: string[] = [];
  const get = (k: string): string | null => q.get(k);
  const warn = (k: string, v: string, what: string) => warnings.push(`${k}=${JSON.stringify(v)} ignored: ${what}`);

  let mode: Mode = 'text';
  const m = get('mode');
  if (m !== null) {
    const v = m.trim().toLowerCase();
    if (v === 'text' || v === 'txt2img' || v === 'text-to-image') mode = 'text';
    else if (v === 'sketch' || v === 'sketch-to-image' || v === 'controlnet') mode = 'sketch';
    else warn('mode', m, 'expected text or sketch');
  }
  const s = defaultSettings(mode);

  const rev = get('revision');
  if (rev !== null && rev !== '') {
    if (isRevision(rev)) s.revision = rev;
    else warn('revision', rev, 'not a branch, tag or commit name');
  }
  const model = get('model');
  if (model !== null && model !== '') {
    const r = parseRepoId(model);
    if (!r) warn('model', model, 'expected a Hugging Face repo id, org/name[@revision]');
    else {
      s.model = r.repo;
      if (r.revision !== null) s.revision = r.revision;
    }
  }
  const ep = get('endpoint');
  if (ep !== null && ep !== '') {
    const e = normalizeEndpoint(ep);
    if (e) s.endpoint = e;
    else warn('endpoint', ep, 'expected an http(s) base URL such as https://huggingface.co');
  }
  const cn = get('controlnet');
  if (cn !== null && cn !== '') {
    if (parseRepoId(cn)) s.controlnet = cn.trim();
    else warn('controlnet', cn, 'expected a Hugging Face repo id, org/name[@revision]');
  }
  const prompt = get('prompt');
  if (prompt !== null) s.prompt = prompt;
  const neg = get('negative_prompt');
  if (neg !== null) s.negativePrompt = neg;

  const seed = get('seed');
  if (seed !== null && seed.trim() !== '' && seed.trim() !== '-1' && seed.trim().toLowerCase() !== 'random') {
    const n = intIn(seed, 0, MAX_SEED);
    if (n === null) warn('seed', seed, `expected an integer from 0 to ${MAX_SEED} (or -1 / random)`);
    else s.seed = n;
  }
  const steps = get('steps');
  if (steps !== null && steps.trim() !== '') {
    const n = intIn(steps, 1, MAX_STEPS);
    if (n === null) warn('steps', steps, `expected an integer from 1 to ${MAX_STEPS}`);
    else s.steps = n;
  }
  const guidance = get('guidance');
  if (guidance !== null && guidance.trim() !== '') {
    const n = numIn(guidance, 0, 100);
    if (n === null) warn('guidance', guidance, 'expected a number from 0 to 100');
    else s.guidance = n;
  }
  for (const k of ['width', 'height'] as const) {
    const v = get(k);
    if (v === null || v.trim() === '') continue;
    const n = intIn(v, 8, MAX_SIDE);
    if (n === null || n % 8 !== 0) warn(k, v, `expected a multiple of 8 from 8 to ${MAX_SIDE}`);
    else s[k] = n;
  }
  const dtype = get('dtype');
  if (dtype !== null && dtype !== '') {
    const v = dtype.trim().toLowerCase();
    if (v === 'auto' || v === 'f32' || v === 'f16') s.dtype = v;
    else if (v === 'fp16' || v === 'float16') s.dtype = 'f16';
    else if (v === 'fp32' || v === 'float32') s.dtype = 'f32';
    else warn('dtype', dtype, 'expected auto, f32 or f16');
  }
  const cs = get('control_scale');
  if (cs !== null && cs.trim() !== '') {
    const n = numIn(cs, 0, 10);
    if (n === null) warn('control_scale', cs, 'expected a number from 0 to 10');
    else s.controlScale = n;
  }
  const inv = get('invert');
  if (inv !== null && inv !== '') {
    const v = inv.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) s.invert = true;
    else if (['0', 'false', 'no', 'off'].includes(v)) s.invert = false;
    else warn('invert', inv, 'expected 1 or 0');
  }
  const be = get('backend');
  if (be !== null && be !== '') {
    const v = be.trim().toLowerCase();
    if (v === 'browser' || v === 'server') s.backend = v;
    else warn('backend', be, 'expected browser or server');
  }
  const run = get('run');
  return { settings: s, run: run !== null && ['1', 'true', 'yes'].includes(run.trim().toLowerCase()), warnings };
}

/** The query string (without '?') for `s`: only values that differ from the mode's defaults, plus `run=1` when asked. */
export function settingsToQuery(s: PageSettings, opts: { run?: boolean } = {}): string {
  const d = defaultSettings(s.mode);
  const q = new URLSearchParams();
  if (s.mode !== 'text') q.set('mode', s.mode);
  if (s.model !== d.model) q.set('model', s.model);
  if (s.revision !== d.revision) q.set('revision', s.revision);
  if (s.endpoint !== d.endpoint) q.set('endpoint', s.endpoint);
  if (s.mode === 'sketch' && s.controlnet !== d.controlnet) q.set('controlnet', s.controlnet);
  if (s.prompt !== d.prompt) q.set('prompt', s.prompt);
  if (s.negativePrompt) q.set('negative_prompt', s.negativePrompt);
  if (s.seed !== null) q.set('seed', String(s.seed));
  if (s.steps !== null) q.set('steps', String(s.steps));
  if (s.guidance !== null) q.set('guidance', String(s.guidance));
  if (s.width !== null) q.set('width', String(s.width));
  if (s.height !== null) q.set('height', String(s.height));
  if (s.dtype !== 'auto') q.set('dtype', s.dtype);
  if (s.mode === 'sketch') {
    if (s.controlScale !== 1) q.set('control_scale', String(s.controlScale));
    if (!s.invert) q.set('invert', '0');
  }
  if (s.backend !== 'browser') q.set('backend', s.backend);
  if (opts.run) q.set('run', '1');
  return q.toString();
}
