/**
 * `POST /v1/images/generations` as OpenAI's Images API defines it (the fields a Stable Diffusion server can
 * honour), plus fewstep's extensions: `seed`, `steps`, `guidance_scale`, `negative_prompt`. Parsing is strict:
 * a bad value is one 400 naming the field, in OpenAI's error shape; whatever the JSON value, the answer is a
 * request or that 400, with a one-line message that quotes at most a short preview of the value.
 */

export interface ImageRequest {
  prompt: string;
  /** Images to make (OpenAI `n`). */
  n: number;
  width: number | undefined;
  height: number | undefined;
  responseFormat: 'b64_json' | 'url';
  /** The `model` the client named, if any (checked against the served one). */
  model: string | undefined;
  seed: number | undefined;
  steps: number | undefined;
  guidance: number | undefined;
  negativePrompt: string | undefined;
}

/** An error the server answers with `status` and OpenAI's `{ error: { message, type, param, code } }` body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): string {
    return JSON.stringify({ error: { message: this.message, type: this.type, param: this.param, code: this.code } });
  }
}

export const MAX_IMAGES_PER_REQUEST = 10;
const MAX_PROMPT_CHARS = 4000;
/** Longest `model`, `quality`, `style` or `user` string (a hub id is at most 96 characters + a revision). */
const MAX_NAME_CHARS = 256;

/**
 * Text from a request made fit for a one-line error message: control characters (line breaks included)
 * escaped as \uXXXX, at most `max` characters.
 */
export function oneLine(s: string, max = 200): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  // eslint-disable-next-line no-control-regex
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A JSON value as an error message shows it: short, one line, never a deep or long serialisation. */
function preview(v: unknown): string {
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return `"${oneLine(v, 40)}"`;
  if (Array.isArray(v)) return `an array of ${v.length} item${v.length === 1 ? '' : 's'}`;
  return typeof v === 'object' ? 'an object' : typeof v;
}

const KNOWN = new Set(['prompt', 'n', 'size', 'response_format', 'model', 'seed', 'steps', 'guidance_scale', 'negative_prompt', 'quality', 'style', 'user']);

function field(name: string, message: string): never {
  const shown = oneLine(name, 100);
  throw new HttpError(400, `${shown}: ${message}`, shown, 'invalid_value');
}

/** The request body (already JSON-parsed) → an ImageRequest, or an HttpError 400 naming the field. */
export function parseImageRequest(body: unknown): ImageRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'the request body must be a JSON object', null, 'invalid_json');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!KNOWN.has(k)) field(k, `unknown field (known: ${[...KNOWN].join(', ')})`);
  const prompt = b['prompt'];
  if (typeof prompt !== 'string' || !prompt.trim()) field('prompt', 'a non-empty string is required');
  if ((prompt as string).length > MAX_PROMPT_CHARS) field('prompt', `at most ${MAX_PROMPT_CHARS} characters`);
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = b[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) field(name, `must be an integer from ${min} to ${max}, got ${preview(v)}`);
    return v as number;
  };
  const n = int('n', 1, MAX_IMAGES_PER_REQUEST) ?? 1;
  let width: number | undefined, height: number | undefined;
  if (b['size'] !== undefined && b['size'] !== null) {
    const m = typeof b['size'] === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(b['size']) : null;
    if (!m) field('size', `must be "WIDTHxHEIGHT" (e.g. "512x512"), got ${preview(b['size'])}`);
    [width, height] = [Number(m![1]), Number(m![2])];
  }
  const rf = b['response_format'] ?? 'b64_json';
  if (rf !== 'b64_json' && rf !== 'url') field('response_format', `must be "b64_json" or "url" (a data: URL), got ${preview(rf)}`);
  const model = b['model'];
  if (model !== undefined && model !== null && typeof model !== 'string') field('model', 'must be a string');
  if (typeof model === 'string' && model.length > MAX_NAME_CHARS) field('model', `at most ${MAX_NAME_CHARS} characters`);
  const guidance = b['guidance_scale'];
  if (guidance !== undefined && guidance !== null && (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < 0 || guidance > 100)) field('guidance_scale', `must be a number from 0 to 100, got ${preview(guidance)}`);
  const neg = b['negative_prompt'];
  if (neg !== undefined && neg !== null && typeof neg !== 'string') field('negative_prompt', 'must be a string');
  if (typeof neg === 'string' && neg.length > MAX_PROMPT_CHARS) field('negative_prompt', `at most ${MAX_PROMPT_CHARS} characters`);
  for (const k of ['quality', 'style', 'user']) {
    const v = b[k];
    if (v !== undefined && v !== null && typeof v !== 'string') field(k, 'must be a string');
    if (typeof v === 'string' && v.length > MAX_NAME_CHARS) field(k, `at most ${MAX_NAME_CHARS} characters`);
  }
  return {
    prompt: prompt as string,
    n,
    width,
    height,
    responseFormat: rf as 'b64_json' | 'url',
    model: (model as string | undefined) ?? undefined,
    seed: int('seed', -1, Number.MAX_SAFE_INTEGER),
    steps: int('steps', 1, 1000),
    guidance: (guidance as number | undefined) ?? undefined,
    negativePrompt: (neg as string | undefined) ?? undefined,
  };
}
