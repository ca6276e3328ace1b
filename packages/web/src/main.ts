/**
 * The fewstep page: settings from the URL, a model from the hub (cached in the browser) or a picked folder,
 * text-to-image and sketch-to-image through a GenerationBackend (WebGPU in this tab), a gallery of PNGs with
 * the CLI's metadata. All work goes through one latest-wins queue: one job runs, at most one waits.
 */
import type { ProgressEvent, RGBImage } from '@fewstep/models';
import { encodePng } from '@fewstep/models';
import { InvalidArgumentError } from '@fewstep/tensor';
import { specKey, type BackendInfo, type FolderSource, type GenerationBackend, type GenerationOutput, type GenerationRequest, type LoadedModel, type ModelSpec } from './backend/backend.js';
import { ServerBackend } from './backend/server_backend.js';
import { WebGPUBackend, controlNetSource } from './backend/webgpu_backend.js';
import { BrowserHub } from './hub/hub_client.js';
import { openWeightStore, type WeightStore } from './hub/weight_store.js';
import { filesOfDirectoryHandle } from './io/browser_files.js';
import { LatestWins, type LatestWinsState } from './latest_wins.js';
import { DEFAULT_MODELS, DEFAULT_PROMPTS, MAX_SEED, defaultSettings, normalizeEndpoint, parseRepoId, parseSettings, settingsToQuery, type Mode, type PageSettings } from './settings.js';
import { byId, formatBytes, formatMs, h } from './ui/dom.js';
import { describeError, type UserMessage } from './ui/messages.js';
import { SketchPad, type Tool } from './ui/sketch_pad.js';

declare const __FEWSTEP_VERSION__: string;
const VERSION = typeof __FEWSTEP_VERSION__ === 'string' ? __FEWSTEP_VERSION__ : '0.0.0';
const GALLERY_MAX = 60;

type Job =
  | { kind: 'load'; backend: GenerationBackend; spec: ModelSpec }
  | { kind: 'generate'; backend: GenerationBackend; mode: Mode; spec: ModelSpec; req: GenerationRequest; settings: PageSettings; sketchPng: Uint8Array | null };

const API_KEY_ITEM = 'fewstep-server-api-key';

interface GalleryEntry {
  li: HTMLLIElement;
  urls: string[];
}

const randomSeed = (): number => crypto.getRandomValues(new Uint32Array(1))[0]!;

class Page {
  private settings: PageSettings;
  /** The model field per mode, so switching modes keeps each one's choice. */
  private modelByMode: Record<Mode, string>;
  private promptByMode: Record<Mode, string>;
  private source: 'hub' | 'folder' = 'hub';
  private folder: FolderSource | null = null;
  private folderCount = 0;
  private keepRun: boolean;
  private info: BackendInfo | null = null;
  private loaded: { key: string; model: LoadedModel } | null = null;
  private readonly queue: LatestWins<Job>;
  private readonly pad: SketchPad;
  private gallery: GalleryEntry[] = [];
  private sketchTimes: number[] = [];
  private progressRows = new Map<string, { row: HTMLElement; bar: HTMLProgressElement; amount: HTMLElement }>();
  private lastSketchUrl: string | null = null;
  /** `fewstep serve` behind the page's own origin, when it answers /v1/models. */
  private server: ServerBackend | null = null;
  private serverState: 'ok' | 'needs_key' | null = null;
  generations = 0;

  constructor(
    private readonly backend: WebGPUBackend,
    private readonly store: WeightStore,
    parsed: ReturnType<typeof parseSettings>,
  ) {
    this.settings = parsed.settings;
    this.keepRun = parsed.run;
    this.modelByMode = { ...DEFAULT_MODELS, [this.settings.mode]: this.settings.model };
    this.promptByMode = { ...DEFAULT_PROMPTS, [this.settings.mode]: this.settings.prompt };
    this.queue = new LatestWins<Job>(
      (job, signal) => this.runJob(job, signal),
      (e) => this.showError(e),
      (s) => this.onQueue(s),
    );
    this.pad = new SketchPad(byId<HTMLCanvasElement>('sketch'), () => this.onStrokeEnd());
    if (this.settings.mode === 'sketch' && this.settings.seed === null) this.settings.seed = randomSeed();
    this.wire();
    this.fillForm();
    this.applyMode();
    if (parsed.warnings.length) this.showMessage({ level: 'warning', title: 'Some link settings were ignored', detail: '', hints: parsed.warnings });
  }

  // ---- form <-> settings ------------------------------------------------------------------

  private input<T extends HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement = HTMLInputElement>(id: string): T {
    return byId<T>(id);
  }

  private fillForm(): void {
    const s = this.settings;
    this.input('model').value = s.model;
    this.input('revision').value = s.revision === 'main' ? '' : s.revision;
    this.input('endpoint').value = s.endpoint === defaultSettings().endpoint ? '' : s.endpoint;
    this.input('controlnet').value = s.controlnet;
    this.input<HTMLSelectElement>('dtype').value = s.dtype;
    this.input<HTMLTextAreaElement>('prompt').value = s.prompt;
    this.input('negative').value = s.negativePrompt;
    this.input('seed').value = s.seed === null ? '' : String(s.seed);
    this.input('seed-random').checked = s.seed === null;
    this.input('steps').value = s.steps === null ? '' : String(s.steps);
    this.input('guidance').value = s.guidance === null ? '' : String(s.guidance);
    this.input('width').value = s.width === null ? '' : String(s.width);
    this.input('height').value = s.height === null ? '' : String(s.height);
    this.input('control-scale').value = String(s.controlScale);
    this.input('invert').checked = s.invert;
    this.updatePlaceholders();
  }

  /** Reads the form into the settings; bad values keep the previous setting and are reported. */
  private readForm(): void {
    const s = this.settings;
    const problems: string[] = [];
    const str = (id: string) => this.input(id).value.trim();
    const model = str('model');
    if (model) {
      const r = parseRepoId(model);
      if (r) {
        s.model = r.repo;
        if (r.revision) {
          s.revision = r.revision;
          this.input('revision').value = r.revision;
          this.input('model').value = r.repo;
        }
      } else if (this.source === 'hub') problems.push(`Repo id "${model}" is not org/name.`);
    } else s.model = DEFAULT_MODELS[s.mode];
    this.modelByMode[s.mode] = s.model;
    s.revision = str('revision') || 'main';
    const ep = str('endpoint');
    if (!ep) s.endpoint = defaultSettings().endpoint;
    else {
      const n = normalizeEndpoint(ep);
      if (n) s.endpoint = n;
      else problems.push(`Endpoint "${ep}" is not an http(s) URL.`);
    }
    const cn = str('controlnet');
    if (cn && parseRepoId(cn)) s.controlnet = cn;
    else if (cn && s.mode === 'sketch' && this.source === 'hub') problems.push(`ControlNet "${cn}" is not org/name.`);
    s.dtype = this.input<HTMLSelectElement>('dtype').value as PageSettings['dtype'];
    s.prompt = this.input<HTMLTextAreaElement>('prompt').value;
    this.promptByMode[s.mode] = s.prompt;
    s.negativePrompt = this.input('negative').value;
    const seed = str('seed');
    if (this.input('seed-random').checked || seed === '' || seed === '-1') s.seed = null;
    else if (/^\d+$/.test(seed) && Number(seed) <= MAX_SEED) s.seed = Number(seed);
    else problems.push(`Seed "${seed}" is not an integer from 0 to ${MAX_SEED}.`);
    const optInt = (id: string, min: number, max: number, mult = 1): number | null | undefined => {
      const v = str(id);
      if (v === '') return null;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max || n % mult !== 0) {
        problems.push(`${id[0]!.toUpperCase()}${id.slice(1)} must be ${mult > 1 ? `a multiple of ${mult} ` : 'an integer '}from ${min} to ${max}.`);
        return undefined;
      }
      return n;
    };
    const steps = optInt('steps', 1, 1000);
    if (steps !== undefined) s.steps = steps;
    const gv = str('guidance');
    if (gv === '') s.guidance = null;
    else if (Number.isFinite(Number(gv)) && Number(gv) >= 0 && Number(gv) <= 100) s.guidance = Number(gv);
    else problems.push('Guidance must be a number from 0 to 100.');
    const w = optInt('width', 8, 4096, 8);
    if (w !== undefined) s.width = w;
    const hh = optInt('height', 8, 4096, 8);
    if (hh !== undefined) s.height = hh;
    const cs = Number(str('control-scale'));
    if (str('control-scale') !== '' && Number.isFinite(cs) && cs >= 0 && cs <= 10) s.controlScale = cs;
    s.invert = this.input('invert').checked;
    if (problems.length) throw new InvalidArgumentError(problems.join(' '), 'form');
  }

  private syncUrl(): void {
    const q = settingsToQuery(this.settings, { run: this.keepRun });
    history.replaceState(null, '', q ? `?${q}` : location.pathname);
    const share = byId<HTMLAnchorElement>('share');
    share.href = `?${settingsToQuery(this.settings, { run: true })}`;
    share.title = this.source === 'folder' ? 'A picked folder cannot travel in a link' : 'A link that reproduces these settings (run=1 generates on open)';
  }

  private onFormChange = (): void => {
    this.keepRun = false;
    try {
      this.readForm();
      this.clearMessage('form');
    } catch (e) {
      this.showError(e, 'form');
    }
    this.updatePlaceholders();
    this.syncUrl();
  };

  private updatePlaceholders(): void {
    const d = this.loaded?.model.defaults;
    this.input('steps').placeholder = d ? `${d.steps} (model)` : 'model default';
    this.input('guidance').placeholder = d ? `${d.guidance} (model)` : 'model default';
    this.input('width').placeholder = d ? `${d.width} (model)` : 'model default';
    this.input('height').placeholder = d ? `${d.height} (model)` : 'model default';
    this.input('model').placeholder = DEFAULT_MODELS[this.settings.mode];
  }

  // ---- wiring -----------------------------------------------------------------------------

  private wire(): void {
    const form = byId<HTMLFormElement>('controls');
    form.addEventListener('change', this.onFormChange);
    form.addEventListener('input', (e) => {
      const t = e.target as HTMLElement;
      if (t.id === 'seed') this.input('seed-random').checked = this.input('seed').value.trim() === '';
      if (t.id !== 'pen-size') this.onFormChange();
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.generate();
    });
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.onFormChange();
        this.generate();
      }
    });
    for (const r of form.querySelectorAll<HTMLInputElement>('input[name=backend]')) {
      r.addEventListener('change', () => {
        if (!r.checked) return;
        this.settings.backend = r.value === 'server' ? 'server' : 'browser';
        this.keepRun = false;
        this.applyBackend();
      });
    }
    byId<HTMLInputElement>('api-key').addEventListener('change', (e) => {
      const key = (e.target as HTMLInputElement).value.trim();
      try {
        if (key) sessionStorage.setItem(API_KEY_ITEM, key);
        else sessionStorage.removeItem(API_KEY_ITEM);
      } catch {
        // storage refused: the key lives in the field only
      }
      this.server = new ServerBackend({ baseUrl: location.origin, apiKey: key || undefined });
      this.loaded = null;
      void this.showServerModel();
    });
    for (const r of form.querySelectorAll<HTMLInputElement>('input[name=source]')) {
      r.addEventListener('change', () => {
        if (!r.checked) return;
        this.source = r.value === 'folder' ? 'folder' : 'hub';
        this.applySource();
      });
    }
    byId('tab-text').addEventListener('click', () => this.setMode('text'));
    byId('tab-sketch').addEventListener('click', () => this.setMode('sketch'));
    byId('tab-text').parentElement!.addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
      const next = this.settings.mode === 'text' ? 'sketch' : 'text';
      this.setMode(next);
      byId(`tab-${next}`).focus();
    });
    byId('seed-dice').addEventListener('click', () => {
      this.input('seed').value = String(randomSeed());
      this.input('seed-random').checked = false;
      this.onFormChange();
    });
    this.input('seed-random').addEventListener('change', () => {
      if (!this.input('seed-random').checked && this.input('seed').value.trim() === '') this.input('seed').value = String(randomSeed());
    });
    byId('load').addEventListener('click', () => {
      try {
        this.readForm();
        this.queue.submit({ kind: 'load', backend: this.backendFor(this.settings.mode), spec: this.spec() });
      } catch (e) {
        this.showError(e);
      }
    });
    byId('cancel').addEventListener('click', () => this.queue.cancel());
    byId('clear-cache').addEventListener('click', () => void this.clearCache());
    byId('pick-folder').addEventListener('click', () => void this.pickFolder());
    byId<HTMLInputElement>('folder-input').addEventListener('change', (e) => {
      const files = [...((e.target as HTMLInputElement).files ?? [])];
      if (files.length) this.setFolder(files);
    });
    byId('share').addEventListener('click', (e) => {
      if (this.source === 'folder') {
        e.preventDefault();
        this.showMessage({ level: 'info', title: 'No link for a picked folder', detail: 'Links carry hub models only; load the model by repo id to share it.', hints: [] });
      }
    });
    // Sketch tools.
    const setTool = (t: Tool) => {
      this.pad.tool = t;
      byId('tool-pen').setAttribute('aria-pressed', String(t === 'pen'));
      byId('tool-eraser').setAttribute('aria-pressed', String(t === 'eraser'));
    };
    byId('tool-pen').addEventListener('click', () => setTool('pen'));
    byId('tool-eraser').addEventListener('click', () => setTool('eraser'));
    byId<HTMLInputElement>('pen-size').addEventListener('input', (e) => (this.pad.size = Number((e.target as HTMLInputElement).value)));
    byId('undo').addEventListener('click', () => this.pad.undo());
    byId('clear').addEventListener('click', () => this.pad.clear());
    document.addEventListener('keydown', (e) => {
      if (this.settings.mode !== 'sketch') return;
      const t = e.target as HTMLElement;
      if (t.closest('input, textarea, select')) return;
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') {
        e.preventDefault();
        this.pad.undo();
      } else if (!e.ctrlKey && !e.metaKey && !e.altKey) {
        if (e.key === 'p' || e.key === 'P') setTool('pen');
        if (e.key === 'e' || e.key === 'E') setTool('eraser');
      }
    });
    for (const id of ['width', 'height']) byId(id).addEventListener('change', () => this.sizeCanvas());
  }

  private setMode(mode: Mode): void {
    if (mode === this.settings.mode) return;
    try {
      this.readForm();
    } catch {
      // keep what parsed
    }
    this.settings.mode = mode;
    this.settings.model = this.modelByMode[mode];
    this.settings.prompt = this.promptByMode[mode];
    if (mode === 'sketch' && this.settings.seed === null) this.settings.seed = randomSeed();
    this.keepRun = false;
    this.fillForm();
    this.applyMode();
    this.syncUrl();
  }

  private applyMode(): void {
    const sketch = this.settings.mode === 'sketch';
    byId('tab-text').setAttribute('aria-selected', String(!sketch));
    byId('tab-sketch').setAttribute('aria-selected', String(sketch));
    byId('tab-text').tabIndex = sketch ? -1 : 0;
    byId('tab-sketch').tabIndex = sketch ? 0 : -1;
    byId('mode-panel').setAttribute('aria-labelledby', sketch ? 'tab-sketch' : 'tab-text');
    byId('sketch-area').hidden = !sketch;
    document.body.dataset['mode'] = this.settings.mode;
    this.applySource();
    this.applyBackend();
    if (sketch) this.sizeCanvas();
    this.updatePlaceholders();
  }

  private applySource(): void {
    const folder = this.source === 'folder';
    const sketch = this.settings.mode === 'sketch';
    for (const el of document.querySelectorAll<HTMLElement>('.hub-only')) el.hidden = folder || (el.classList.contains('sketch-only') && !sketch);
    for (const el of document.querySelectorAll<HTMLElement>('.folder-only')) el.hidden = !folder;
    for (const el of document.querySelectorAll<HTMLElement>('.sketch-only:not(.hub-only)')) el.hidden = !sketch;
    for (const r of document.querySelectorAll<HTMLInputElement>('input[name=source]')) r.checked = r.value === this.source;
    this.syncUrl();
  }

  /** Shows the "Run on" choice (only when a server answers) and hides what does not apply to the server. */
  private applyBackend(): void {
    const available = this.serverState !== null;
    byId('backend-row').hidden = !available;
    const server = available && this.settings.backend === 'server';
    for (const r of document.querySelectorAll<HTMLInputElement>('input[name=backend]')) r.checked = r.value === (server ? 'server' : 'browser');
    for (const el of document.querySelectorAll<HTMLElement>('.server-only')) el.hidden = !server;
    const remote = server && this.settings.mode === 'text';
    for (const el of document.querySelectorAll<HTMLElement>('.local-only')) el.hidden = remote;
    document.body.dataset['backend'] = remote ? 'server' : 'browser';
    this.syncUrl();
  }

  /** The backend a job in `mode` runs on: the server for text to image when chosen, else this tab's WebGPU. */
  private backendFor(mode: Mode): GenerationBackend {
    return this.server && this.settings.backend === 'server' && mode === 'text' ? this.server : this.backend;
  }

  private async showServerModel(): Promise<void> {
    if (!this.server) return;
    try {
      const info = await this.server.info();
      byId('server-model').textContent = info.details['model'] ?? '?';
      this.serverState = 'ok';
    } catch (e) {
      byId('server-model').textContent = describeError(e).title;
      if (this.settings.backend === 'server') this.showError(e, 'server');
    }
  }

  /** The sketch canvas' pixel size: the width/height settings, else the loaded model's default, else 512. */
  private sizeCanvas(): void {
    const d = this.loaded?.model.defaults;
    const w = this.settings.width ?? d?.width ?? 512;
    const hgt = this.settings.height ?? d?.height ?? 512;
    if (w !== this.pad.width || hgt !== this.pad.height) {
      this.pad.resize(w, hgt);
      byId('sketch').style.aspectRatio = `${w} / ${hgt}`;
    }
  }

  private async pickFolder(): Promise<void> {
    const picker = (window as unknown as { showDirectoryPicker?: (o?: object) => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker;
    if (picker) {
      try {
        const dir = await picker({ id: 'fewstep-model', mode: 'read' });
        this.setFolder(await filesOfDirectoryHandle(dir));
        return;
      } catch (e) {
        if ((e as DOMException).name === 'AbortError') return;
      }
    }
    byId<HTMLInputElement>('folder-input').click();
  }

  private setFolder(files: File[]): void {
    const first = (files[0] as File & { webkitRelativePath?: string }).webkitRelativePath || files[0]!.name;
    const name = first.split('/')[0] || 'folder';
    this.folder = { kind: 'folder', id: `${++this.folderCount}`, name, files };
    const hasIndex = files.some((f) => ((f as File & { webkitRelativePath?: string }).webkitRelativePath ?? '').endsWith('/model_index.json'));
    byId('folder-name').textContent = `${name} (${files.length} files${hasIndex ? '' : ', no model_index.json'})`;
    this.source = 'folder';
    this.applySource();
  }

  // ---- jobs -------------------------------------------------------------------------------

  private dtype(): 'f32' | 'f16' {
    const want = this.settings.dtype;
    if (this.backendFor(this.settings.mode) !== this.backend) return 'f32';
    const f16 = this.info?.f16 ?? false;
    if (want === 'f16' && !f16 && this.info) {
      this.showMessage({ level: 'warning', title: 'f16 is not available here', detail: `${this.info.name} has no shader-f16; running f32.`, hints: [] });
      return 'f32';
    }
    if (want === 'auto') return f16 ? 'f16' : 'f32';
    return want;
  }

  private spec(): ModelSpec {
    const s = this.settings;
    // The server has its own model; the spec only names what the page shows.
    if (this.backendFor(s.mode) !== this.backend) return { source: { kind: 'hub', repo: s.model, revision: s.revision, endpoint: s.endpoint }, dtype: 'f32' };
    if (this.source === 'folder' && !this.folder) throw new InvalidArgumentError('Choose a model folder first (or switch to the hub).', 'folder');
    const source: ModelSpec['source'] = this.source === 'folder' ? this.folder! : { kind: 'hub', repo: s.model, revision: s.revision, endpoint: s.endpoint };
    let controlnet: ModelSpec['controlnet'];
    if (s.mode === 'sketch') {
      const sub = this.source === 'folder' && this.folder!.files.some((f) => /^[^/]+\/controlnet\/config\.json$/.test((f as File & { webkitRelativePath?: string }).webkitRelativePath ?? ''));
      controlnet = sub ? { kind: 'subfolder', path: 'controlnet' } : controlNetSource(s.controlnet, s.endpoint);
    }
    return { source, dtype: this.dtype(), controlnet };
  }

  private generate(): void {
    try {
      this.readForm();
      this.syncUrl();
      this.submitGeneration();
    } catch (e) {
      this.showError(e);
    }
  }

  private submitGeneration(): void {
    const s = this.settings;
    const spec = this.spec();
    const seed = s.seed ?? randomSeed();
    const snapshot: PageSettings = { ...s, seed };
    const req: GenerationRequest = {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      seed,
      steps: s.steps ?? undefined,
      guidance: s.guidance ?? undefined,
      width: s.width ?? undefined,
      height: s.height ?? undefined,
    };
    let sketchImage: RGBImage | null = null;
    if (s.mode === 'sketch') {
      sketchImage = this.pad.image();
      req.width = sketchImage.width;
      req.height = sketchImage.height;
      req.control = { image: sketchImage, scale: s.controlScale, invert: s.invert, name: 'sketch.png' };
    }
    this.queue.submit({ kind: 'generate', backend: this.backendFor(s.mode), mode: s.mode, spec, req, settings: snapshot, sketchPng: null });
  }

  private onStrokeEnd(): void {
    if (this.settings.mode !== 'sketch') return;
    this.generate();
  }

  private async runJob(job: Job, signal: AbortSignal): Promise<void> {
    this.clearProgress();
    this.clearMessage('job');
    const onProgress = (e: ProgressEvent) => this.onProgress(e);
    const remote = job.backend !== this.backend;
    const key = `${remote ? 'server' : 'browser'}|${specKey(job.spec)}`;
    if (!this.loaded || this.loaded.key !== key) {
      this.setStatus(remote ? 'Asking the server…' : 'Loading the model…');
      const t0 = performance.now();
      const model = await job.backend.load(job.spec, { onProgress, signal });
      this.loaded = { key, model };
      this.onLoaded(model, performance.now() - t0);
    }
    if (job.kind === 'load') {
      this.setStatus(`Ready: ${this.loaded.model.label}`);
      return;
    }
    this.setStatus(remote ? 'Generating on the server…' : 'Generating…');
    const out = await job.backend.generate(job.spec, job.req, { onProgress, signal });
    this.generations++;
    const sketchPng = job.req.control ? await encodePng(job.req.control.image) : null;
    this.addToGallery(out, { ...job, sketchPng });
    this.showTimings(out, job.mode);
    this.clearMessage();
    this.setStatus(`Done${remote ? ' on the server' : ''}: seed ${out.info.seed}, ${out.info.width}×${out.info.height}, ${formatMs(out.ms)}`);
  }

  private onLoaded(model: LoadedModel, ms: number): void {
    const parts = Object.entries(model.loadMs).map(([k, v]) => `${k} ${formatMs(v)}`);
    byId('timings').textContent = model.defaults
      ? `Loaded ${model.label} (${model.dtype}, ${model.scheduler}${model.controlnet ? ` + ${model.controlnet}` : ''}) in ${formatMs(ms)}${model.fromCache ? ' from this browser\'s cache' : ''}: ${parts.join(' · ')}`
      : `The server runs ${model.label}`;
    this.updatePlaceholders();
    if (this.settings.mode === 'sketch') this.sizeCanvas();
    void this.showCacheInfo();
  }

  private onQueue(s: LatestWinsState): void {
    byId<HTMLButtonElement>('cancel').disabled = !s.running;
    document.body.dataset['busy'] = String(s.running);
    if (this.settings.mode === 'sketch' && s.running) {
      byId('sketch-stats').textContent = `generating…${s.queued ? ' (1 drawing waiting)' : ''}${this.sketchStatsText()}`;
    }
  }

  private sketchStatsText(): string {
    if (!this.sketchTimes.length) return '';
    const last = this.sketchTimes[this.sketchTimes.length - 1]!;
    const recent = this.sketchTimes.slice(-5);
    const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
    return ` — ${Math.round(last)} ms per image (last), ${Math.round(avg)} ms (average of ${recent.length})`;
  }

  // ---- progress, status, messages ---------------------------------------------------------

  private setStatus(text: string): void {
    byId('status').textContent = text;
  }

  private clearProgress(): void {
    byId('progress').replaceChildren();
    this.progressRows.clear();
  }

  private progressRow(key: string, label: string): { row: HTMLElement; bar: HTMLProgressElement; amount: HTMLElement } {
    let r = this.progressRows.get(key);
    if (!r) {
      const bar = h('progress', { max: 1, value: 0 });
      const amount = h('span', { class: 'amount' });
      const row = h('div', { class: 'item' }, h('span', { class: 'name', title: label }, label), bar, amount);
      byId('progress').append(row);
      r = { row, bar, amount };
      this.progressRows.set(key, r);
    }
    return r;
  }

  private onProgress(e: ProgressEvent): void {
    if (e.type === 'download') {
      const r = this.progressRow(`dl:${e.repo}/${e.file}`, `${e.repo}/${e.file}`);
      r.row.dataset['status'] = e.status;
      if (e.status === 'done') {
        r.bar.max = 1;
        r.bar.value = 1;
        r.amount.textContent = e.cached ? `cached · ${formatBytes(e.loaded)}` : formatBytes(e.loaded);
        r.row.dataset['cached'] = String(!!e.cached);
      } else {
        if (e.total) {
          r.bar.max = e.total;
          r.bar.value = e.loaded;
        } else r.bar.removeAttribute('value');
        r.amount.textContent = e.total ? `${formatBytes(e.loaded)} / ${formatBytes(e.total)}` : formatBytes(e.loaded);
        this.setStatus(`Downloading ${e.file}…`);
      }
    } else if (e.type === 'load') {
      const r = this.progressRow(`load:${e.component}`, `load ${e.component}`);
      if (e.status === 'start') {
        r.bar.removeAttribute('value');
        r.amount.textContent = 'loading…';
        this.setStatus(`Loading ${e.component} onto the GPU…`);
      } else {
        r.bar.max = 1;
        r.bar.value = 1;
        r.amount.textContent = formatMs(e.ms);
      }
    } else if (e.status === 'start') {
      this.setStatus(`Generating: ${e.stage.replace('_', ' ')}${e.steps ? ` ${(e.step ?? 0) + 1}/${e.steps}` : ''}…`);
    }
  }

  private showTimings(out: GenerationOutput, mode: Mode): void {
    const t = out.timings;
    const order = ['tokenize', 'text_encoder', 'encode_image', 'denoise', 'decode', 'total'];
    const parts = order.filter((k) => t[k] !== undefined).map((k) => `${k.replace('_', ' ')} ${formatMs(t[k]!)}`);
    const first = out.firstRun ? ` — first image of this model: includes compiling ${out.compiled ?? 'its'} GPU kernels` : '';
    byId('timings').textContent = `${parts.join(' · ')}${first}`;
    if (mode === 'sketch') {
      if (!out.firstRun) this.sketchTimes.push(out.ms);
      const img = byId<HTMLImageElement>('sketch-result');
      const url = URL.createObjectURL(new Blob([out.png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
      if (this.lastSketchUrl) URL.revokeObjectURL(this.lastSketchUrl);
      this.lastSketchUrl = url;
      img.src = url;
      img.hidden = false;
      byId('sketch-placeholder').hidden = true;
      const stats = this.sketchStatsText() || ` — ${Math.round(out.ms)} ms (first image, with kernel compiles)`;
      byId('sketch-stats').textContent = `seed ${out.info.seed}${stats}`;
      byId('sketch-stats').dataset['ms'] = String(Math.round(out.ms));
    }
  }

  private showMessage(m: UserMessage, tag = 'job'): void {
    const el = byId('message');
    el.className = `message ${m.level}`;
    el.dataset['tag'] = tag;
    const dismiss = h('button', { type: 'button', class: 'dismiss quiet', 'aria-label': 'Dismiss', onclick: () => this.clearMessage() }, '×');
    el.replaceChildren(h('div', {}, dismiss, h('h3', {}, m.title), m.detail ? h('p', { class: 'detail' }, m.detail) : null, m.hints.length ? h('ul', {}, ...m.hints.map((t) => h('li', {}, t))) : null));
    el.hidden = false;
  }

  private showError(e: unknown, tag = 'job'): void {
    const m = describeError(e);
    if (m.level === 'error') console.error(e);
    this.showMessage(m, tag);
    this.setStatus(m.level === 'info' ? m.title : `${m.title} — see the message`);
    if (tag === 'job') this.loaded = null;
  }

  private clearMessage(tag?: string): void {
    const el = byId('message');
    if (tag && el.dataset['tag'] !== tag) return;
    el.hidden = true;
    el.replaceChildren();
  }

  onDeviceLost(message: string): void {
    this.loaded = null;
    this.showMessage({ level: 'error', title: 'The GPU device was lost', detail: message, hints: ['The next generation opens a new device and reloads the model from this browser\'s cache — no page reload needed.'] });
    this.setStatus('GPU device lost — the next generation reopens it');
  }

  // ---- gallery ----------------------------------------------------------------------------

  private addToGallery(out: GenerationOutput, job: Extract<Job, { kind: 'generate' }>): void {
    const urls: string[] = [];
    const url = URL.createObjectURL(new Blob([out.png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
    urls.push(url);
    const g = out.info;
    const name = `fewstep-${g.seed}-${g.prompt.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'image'}.png`;
    const img = h('img', { class: 'result', src: url, alt: g.prompt, width: g.width, height: g.height, title: 'The PNG carries its parameters (A1111 "parameters" + fewstep JSON)' });
    img.style.setProperty('--ar', `${g.width} / ${g.height}`);
    const pics = h('div', { class: 'pics' }, img);
    let sketchLink: HTMLAnchorElement | null = null;
    if (job.sketchPng) {
      const su = URL.createObjectURL(new Blob([job.sketchPng as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
      urls.push(su);
      pics.append(h('img', { class: 'control', src: su, alt: 'the sketch it was made from' }));
      sketchLink = h('a', { class: 'button', href: su, download: name.replace(/\.png$/, '-sketch.png') }, 'Sketch');
    }
    const share = this.source === 'hub' || job.backend !== this.backend ? `?${settingsToQuery(job.settings, { run: true })}` : null;
    const params = `seed ${g.seed} · ${g.steps} step${g.steps === 1 ? '' : 's'} · guidance ${g.guidance} · ${g.width}×${g.height} · ${g.dtype}`;
    const li = h(
      'li',
      { dataset: { seed: String(g.seed), ms: String(Math.round(out.ms)), mode: job.mode, index: String(this.generations) } },
      pics,
      h(
        'div',
        { class: 'caption' },
        h('span', { class: 'prompt' }, g.prompt || '(empty prompt)'),
        h('span', { class: 'muted' }, params),
        h('span', { class: 'muted' }, `${g.model}${g.controlnet ? ` + ${g.controlnet}` : ''} · ${formatMs(out.ms)}${out.firstRun ? ' (first, with compiles)' : ''}`),
        h(
          'span',
          { class: 'actions' },
          h('a', { class: 'button', href: url, download: name }, 'PNG'),
          share ? h('a', { class: 'button', href: share, title: 'Opens the page with these settings and generates (run=1)' }, 'Link') : null,
          h('button', { type: 'button', onclick: () => this.reuse(job.settings) }, 'Use settings'),
          sketchLink,
        ),
      ),
    );
    byId('gallery').prepend(li);
    byId('gallery-empty').hidden = true;
    this.gallery.unshift({ li, urls });
    for (const old of this.gallery.splice(GALLERY_MAX)) {
      old.li.remove();
      for (const u of old.urls) URL.revokeObjectURL(u);
    }
  }

  private reuse(s: PageSettings): void {
    const mode = s.mode;
    this.settings = { ...s };
    this.modelByMode[mode] = s.model;
    this.promptByMode[mode] = s.prompt;
    this.fillForm();
    this.applyMode();
    this.syncUrl();
  }

  // ---- cache, adapter -----------------------------------------------------------------------

  private async clearCache(): Promise<void> {
    this.queue.cancel();
    await this.queue.idle();
    this.backend.reset();
    this.loaded = null;
    await this.store.clear();
    this.clearProgress();
    this.setStatus('Weight cache cleared');
    await this.showCacheInfo();
  }

  async showCacheInfo(): Promise<void> {
    const est = await this.store.estimate();
    const where = this.store.kind === 'opfs' ? 'kept in this browser (OPFS) for offline use' : 'held in memory only (this browser offers no file storage)';
    byId('cache-info').textContent = `Weights are ${where}${est ? `; ${formatBytes(est.usage)} used of ${formatBytes(est.quota)} available` : ''}.`;
  }

  async showAdapter(): Promise<void> {
    try {
      this.info = await this.backend.info();
      const dl = byId('adapter');
      dl.replaceChildren(...Object.entries(this.info.details).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
      byId('adapter-panel').dataset['ready'] = 'true';
      const auto = this.info.f16 ? 'f16' : 'f32';
      byId<HTMLSelectElement>('dtype').options[0]!.textContent = `auto (${auto} on this adapter)`;
      if (!this.info.f16) byId<HTMLSelectElement>('dtype').options[2]!.textContent = 'f16 (not available: no shader-f16)';
      this.setStatus(`Ready on ${this.info.name}`);
    } catch (e) {
      // Without WebGPU the page can still generate on a server: then the problem is a note, not an alarm.
      if (this.settings.backend !== 'server' || !this.server) this.showError(e, 'adapter');
      byId('adapter').replaceChildren(h('dt', {}, 'adapter'), h('dd', {}, describeError(e).title));
    }
  }

  async start(run: boolean): Promise<void> {
    this.syncUrl();
    // Served by `fewstep serve`? Then images can also be made there.
    this.serverState = await ServerBackend.detect(location.origin);
    if (this.serverState) {
      let key: string | null = null;
      try {
        key = sessionStorage.getItem(API_KEY_ITEM);
      } catch {
        // no storage
      }
      if (key) byId<HTMLInputElement>('api-key').value = key;
      this.server = new ServerBackend({ baseUrl: location.origin, apiKey: key ?? undefined });
      void this.showServerModel();
    } else if (this.settings.backend === 'server') {
      this.settings.backend = 'browser';
      this.showMessage({ level: 'warning', title: 'No fewstep server here', detail: 'backend=server needs the page to be served by `fewstep serve`; generating in this browser instead.', hints: [] }, 'form');
    }
    this.applyBackend();
    await Promise.all([this.showAdapter(), this.showCacheInfo()]);
    if (run) this.generate();
    else if (this.settings.mode === 'sketch') byId('sketch-stats').textContent = 'Draw: each stroke generates an image (the first one loads the model).';
  }

  /** For tests: the queue's state and a way to wait for it. */
  debug() {
    return {
      idle: () => this.queue.idle(),
      state: () => this.queue.state,
      generations: () => this.generations,
      simulateDeviceLoss: () => this.backend.simulateDeviceLoss(),
      /** The open fewstep Device (profiling: device.setProfiling(true), then device.profile()). */
      device: () => this.backend.currentDevice,
      version: VERSION,
    };
  }
}

async function main(): Promise<void> {
  const parsed = parseSettings(location.search);
  const store = await openWeightStore();
  let page: Page | null = null;
  const backend = new WebGPUBackend(new BrowserHub(store), { version: VERSION, onDeviceLost: (m) => page?.onDeviceLost(m) });
  page = new Page(backend, store, parsed);
  (window as unknown as { fewstep: unknown }).fewstep = page.debug();
  await page.start(parsed.run);
}

main().catch((e: unknown) => {
  console.error(e);
  const el = document.getElementById('message');
  if (el) {
    el.hidden = false;
    el.textContent = `The page could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
});
