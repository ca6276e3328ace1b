/**
 * "Generate on the server": the GenerationBackend over `fewstep serve`'s OpenAI-compatible API
 * (`GET /v1/models`, `POST /v1/images/generations` with `response_format: 'b64_json'`). The server holds one
 * model, loaded at its start, so `load()` only asks which; each image comes back as the PNG the server wrote
 * (the CLI's metadata inside), decoded here for the gallery. Text to image only: the API takes no control image.
 */
import { FewstepError, InvalidArgumentError, UnsupportedError, throwIfAborted } from '@fewstep/tensor';
import { decodePng, type GenerationInfo } from '@fewstep/models';
import type { BackendInfo, GenerationBackend, GenerationOutput, GenerationRequest, LoadedModel, ModelSpec, RunOptions } from './backend.js';

/** A failure talking to the server (its code tells the page's messages what to suggest). */
export class ServerError extends FewstepError {
  readonly server = true;
}

export interface ServerBackendOptions {
  /** The server's origin, e.g. location.origin when the page is served by `fewstep serve`. */
  baseUrl: string;
  /** `--api-key` of the server (sent as `Authorization: Bearer …`), when it has one. */
  apiKey?: string | undefined;
  fetch?: typeof fetch | undefined;
}

interface OpenAIError {
  error?: { message?: string; param?: string | null; code?: string | null };
}

export class ServerBackend implements GenerationBackend {
  private modelId: string | null = null;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: ServerBackendOptions) {
    this.fetchFn = opts.fetch ?? ((...a) => fetch(...a));
  }

  /** Whether a fewstep server answers at `baseUrl` (200, or 401 when it wants an API key). */
  static async detect(baseUrl: string, fetchFn: typeof fetch = (...a) => fetch(...a)): Promise<'ok' | 'needs_key' | null> {
    try {
      const r = await fetchFn(`${baseUrl}/v1/models`, { credentials: 'omit' });
      if (r.status === 401) return 'needs_key';
      if (!r.ok) return null;
      const body = (await r.json()) as { data?: unknown };
      return Array.isArray(body.data) ? 'ok' : null;
    } catch {
      return null;
    }
  }

  private headers(json = false): Record<string, string> {
    const h: Record<string, string> = {};
    if (json) h['content-type'] = 'application/json';
    if (this.opts.apiKey) h['authorization'] = `Bearer ${this.opts.apiKey}`;
    return h;
  }

  private async request(path: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
    let r: Response;
    try {
      r = await this.fetchFn(`${this.opts.baseUrl}${path}`, { ...init, signal: signal ?? null, credentials: 'omit' });
    } catch (e) {
      throwIfAborted(signal, 'server request');
      throw new ServerError('hub_connection', `cannot reach the fewstep server at ${this.opts.baseUrl} (${(e as Error).message || 'network error'})`);
    }
    if (r.ok) return r;
    const body = (await r.json().catch(() => ({}))) as OpenAIError;
    const msg = body.error?.message ?? `HTTP ${r.status}`;
    if (r.status === 400) throw new InvalidArgumentError(`server: ${msg}`, body.error?.param ?? undefined);
    if (r.status === 401 || r.status === 403) throw new ServerError('auth_required', `the server wants its API key (HTTP ${r.status}): ${msg}`);
    if (r.status === 429 || r.status === 503) {
      const after = r.headers.get('retry-after');
      throw new ServerError('resource_limit', `the server is busy (HTTP ${r.status})${after ? `; retry in ${after} s` : ''}: ${msg}`);
    }
    throw new ServerError('hub_http', `the server answered HTTP ${r.status}: ${msg}`);
  }

  async info(): Promise<BackendInfo> {
    const id = await this.model();
    return { name: `fewstep serve at ${new URL(this.opts.baseUrl).host} (${id})`, f16: false, details: { backend: 'fewstep serve', server: this.opts.baseUrl, model: id } };
  }

  private async model(signal?: AbortSignal): Promise<string> {
    if (this.modelId) return this.modelId;
    const r = await this.request('/v1/models', { headers: this.headers() }, signal);
    const body = (await r.json()) as { data?: { id?: unknown }[] };
    const id = body.data?.[0]?.id;
    if (typeof id !== 'string') throw new ServerError('hub_http', 'the server lists no model at /v1/models');
    this.modelId = id;
    return id;
  }

  /** The server's own model (the spec's model choice does not apply: the server loaded one at start). */
  async load(_spec: ModelSpec, opts: RunOptions = {}): Promise<LoadedModel> {
    const id = await this.model(opts.signal);
    return { label: id, defaults: null, scheduler: '', dtype: 'f32', controlnet: null, loadMs: {}, fromCache: true };
  }

  async generate(spec: ModelSpec, req: GenerationRequest, opts: RunOptions = {}): Promise<GenerationOutput> {
    if (req.control) throw new UnsupportedError('the server runs text to image only (its API takes no control image); sketch mode runs in this browser');
    await this.load(spec, opts);
    const t0 = performance.now();
    const body: Record<string, unknown> = { prompt: req.prompt, n: 1, seed: req.seed, response_format: 'b64_json' };
    if (req.negativePrompt) body['negative_prompt'] = req.negativePrompt;
    if (req.steps !== undefined) body['steps'] = req.steps;
    if (req.guidance !== undefined) body['guidance_scale'] = req.guidance;
    if (req.width !== undefined || req.height !== undefined) {
      if (req.width === undefined || req.height === undefined) throw new InvalidArgumentError('the server takes width and height together (size WxH)', 'size');
      body['size'] = `${req.width}x${req.height}`;
    }
    opts.onProgress?.({ type: 'stage', status: 'start', stage: 'denoise', ms: 0 });
    const r = await this.request('/v1/images/generations', { method: 'POST', headers: this.headers(true), body: JSON.stringify(body) }, opts.signal);
    const json = (await r.json()) as { data?: { b64_json?: unknown }[] };
    const b64 = json.data?.[0]?.b64_json;
    if (typeof b64 !== 'string') throw new ServerError('hub_http', 'the server sent no image (data[0].b64_json)');
    const png = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const decoded = await decodePng(png, 'server image');
    const ms = performance.now() - t0;
    opts.onProgress?.({ type: 'stage', status: 'end', stage: 'denoise', ms });
    let info: GenerationInfo;
    try {
      info = JSON.parse(decoded.text['fewstep'] ?? '') as GenerationInfo;
    } catch {
      throw new ServerError('hub_http', 'the server\'s PNG carries no fewstep metadata');
    }
    return { image: { width: decoded.width, height: decoded.height, data: decoded.data }, png, info, timings: { total: ms }, ms, firstRun: false };
  }

  reset(): void {
    this.modelId = null;
  }
}
