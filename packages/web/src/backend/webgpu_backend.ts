/**
 * The in-tab backend: the StableDiffusionPipeline on this browser's WebGPU device. Weights come from the hub
 * (through BrowserHub and its store) or a picked folder, via a MountedFiles FileSource; which files are read is
 * decided by @fewstep/models' own loader rules (readPipelineConfigs for the components and the VAE folder,
 * findWeightFiles → selectWeightFiles for each component's weights: safetensors first, the fp16 variant for
 * f16) — the same rules the CLI's download follows — and only those are downloaded, before loading starts.
 *
 * A lost device or a GPU error (out of memory, validation) frees the model and the device; the next call opens
 * a new device and reloads the model from the browser's cache, so the page recovers without a reload.
 */
import { DeviceError, InvalidArgumentError, type Device } from '@fewstep/tensor';
import {
  StableDiffusionPipeline,
  encodePng,
  findWeightFiles,
  invertControlImage,
  pngTextChunks,
  readPipelineConfigs,
  type DownloadProgressEvent,
  type GenerationInfo,
  type ProgressEvent,
  type ResolveRequest,
  type RGBImage,
} from '@fewstep/models';
import { BrowserHub, HubError, type RepoListing } from '../hub/hub_client.js';
import { MountedFiles, pickedFolderMount, type Mount } from '../io/browser_files.js';
import { openDevice, type AdapterPreference, type AdapterReport, type OpenedDevice } from '../gpu/adapter.js';
import { parseRepoId } from '../settings.js';
import {
  specKey,
  type BackendInfo,
  type GenerationBackend,
  type GenerationOutput,
  type GenerationRequest,
  type LoadedModel,
  type ModelSource,
  type ModelSpec,
  type RunOptions,
} from './backend.js';

interface Loaded {
  key: string;
  pipe: StableDiffusionPipeline;
  model: LoadedModel;
  /** The ControlNet as the metadata names it. */
  controlnetLabel: string | undefined;
  revision: string | undefined;
  images: number;
}

/** The current call's progress and signal, which the hub mounts' on-demand downloads report to. */
interface CallContext {
  onProgress?: ((e: ProgressEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
  downloaded: number;
}

export interface WebGPUBackendOptions {
  preference?: AdapterPreference;
  /** fewstep's version, written into the PNG metadata. */
  version: string;
  /** Told when the device is lost outside a call (the next call opens a new one). */
  onDeviceLost?: (message: string) => void;
  gpu?: GPU | undefined;
}

const short = (commit: string) => commit.slice(0, 12);

export class WebGPUBackend implements GenerationBackend {
  private opened: OpenedDevice | null = null;
  private opening: Promise<OpenedDevice> | null = null;
  private loaded: Loaded | null = null;
  private loading: { key: string; promise: Promise<Loaded> } | null = null;
  private ctx: CallContext = { downloaded: 0 };

  constructor(
    readonly hub: BrowserHub,
    private readonly opts: WebGPUBackendOptions,
  ) {}

  /** The adapter report of the open device (opening it). */
  async adapter(): Promise<AdapterReport> {
    return (await this.device()).report;
  }

  async info(): Promise<BackendInfo> {
    const { device, report } = await this.device();
    const mib = (n: number | undefined) => (n === undefined ? '?' : `${(n / 2 ** 20).toFixed(0)} MiB`);
    return {
      name: `${report.name} — WebGPU in this tab`,
      f16: device.features.f16,
      details: {
        adapter: report.name,
        'shader-f16': report.f16 ? 'yes' : 'no',
        subgroups: report.subgroups ? 'yes' : 'no',
        'max storage binding': mib(device.limits.maxStorageBufferBindingSize),
        'max buffer': mib(device.limits.maxBufferSize),
        'workgroup storage': `${((device.limits.maxComputeWorkgroupStorageSize ?? 0) / 1024).toFixed(0)} KiB`,
        'invocations / workgroup': String(device.limits.maxComputeInvocationsPerWorkgroup),
        'storage buffers / stage': String(device.limits.maxStorageBuffersPerShaderStage),
        features: report.features.join(', '),
      },
    };
  }

  private device(): Promise<OpenedDevice> {
    if (this.opened) return Promise.resolve(this.opened);
    this.opening ??= openDevice({ preference: this.opts.preference ?? 'auto', gpu: this.opts.gpu }).then(
      (o) => {
        this.opened = o;
        this.opening = null;
        void o.device.gpu.lost.then((info) => {
          // Ours when reset() destroyed it (this.opened was cleared first); anything else is a real loss.
          if (this.opened?.device !== o.device) return;
          this.dropAll(false);
          this.opts.onDeviceLost?.(`the GPU device was lost (${info.reason === 'destroyed' ? 'destroyed' : info.reason || 'unknown reason'}${info.message ? `: ${info.message}` : ''})`);
        });
        return o;
      },
      (e: unknown) => {
        this.opening = null;
        throw e;
      },
    );
    return this.opening;
  }

  /** For tests and the adapter panel: destroys the device as a driver reset would (the page must recover). */
  simulateDeviceLoss(): boolean {
    if (!this.opened) return false;
    this.opened.device.gpu.destroy();
    return true;
  }

  reset(): void {
    this.dropAll(true);
  }

  private dropAll(destroyDevice: boolean): void {
    try {
      this.loaded?.pipe.dispose();
    } catch {
      // A lost device may refuse; nothing more to free.
    }
    this.loaded = null;
    this.loading = null;
    const o = this.opened;
    this.opened = null;
    if (o && destroyDevice) {
      try {
        o.device.destroy();
      } catch {
        // already gone
      }
    }
  }

  async load(spec: ModelSpec, opts: RunOptions = {}): Promise<LoadedModel> {
    return (await this.ensureLoaded(spec, opts)).model;
  }

  private async ensureLoaded(spec: ModelSpec, opts: RunOptions): Promise<Loaded> {
    const key = specKey(spec);
    if (this.loaded?.key === key) return this.loaded;
    if (this.loading?.key === key) return this.loading.promise;
    if (this.loaded) {
      // One model at a time: free the GPU memory before loading another.
      this.loaded.pipe.dispose();
      this.loaded = null;
    }
    const promise = this.loadModel(spec, key, opts).then(
      (l) => {
        if (this.loading?.promise === promise) this.loading = null;
        this.loaded = l;
        return l;
      },
      (e: unknown) => {
        if (this.loading?.promise === promise) this.loading = null;
        this.afterError(e);
        throw e;
      },
    );
    this.loading = { key, promise };
    return promise;
  }

  private async loadModel(spec: ModelSpec, key: string, opts: RunOptions): Promise<Loaded> {
    const { device } = await this.device();
    if (spec.dtype === 'f16' && !device.features.f16) {
      throw new DeviceError('feature_missing', `f16 needs the shader-f16 feature, which ${device.adapter.name || 'this adapter'} does not offer; use f32`);
    }
    const files = new MountedFiles();
    const ctx: CallContext = { onProgress: opts.onProgress, signal: opts.signal, downloaded: 0 };
    this.ctx = ctx;
    const variant = spec.dtype === 'f16' ? 'fp16' : undefined;
    const loadMs: Record<string, number> = {};
    // Download and load events; the pipeline keeps this callback for every generate(), whose stage events
    // reach the caller through generate's own onProgress instead.
    const onProgress = (e: ProgressEvent) => {
      if (e.type === 'stage') return;
      if (e.type === 'download' && e.status === 'initiate') ctx.downloaded++;
      if (e.type === 'load' && e.status === 'end') loadMs[e.component] = e.ms;
      this.ctx.onProgress?.(e);
    };

    const src = spec.source;
    let idOrDir: string;
    let label: string;
    let revision: string | undefined;
    let resolve: ((id: string, req: ResolveRequest) => Promise<string>) | undefined;
    if (src.kind === 'hub') {
      idOrDir = src.repo;
      label = src.repo;
      revision = src.revision !== 'main' ? src.revision : undefined;
      resolve = async (_id, req) => {
        const listing = await this.hub.listRepo(src.endpoint, src.repo, src.revision, { signal: req.signal });
        const dir = files.mount(this.mountName(listing), this.hubMount(listing, onProgress));
        await this.prefetchPipeline(files, dir, req, variant);
        return dir;
      };
    } else {
      const { root, mount } = pickedFolderMount(src.files);
      idOrDir = files.mount(`${root}`, mount);
      label = src.name;
    }

    let controlnet: string | undefined;
    let controlnetLabel: string | undefined;
    let resolveControlNet: ((id: string, req: ResolveRequest) => Promise<string>) | undefined;
    const cn = spec.controlnet;
    if (cn?.kind === 'subfolder') {
      if (src.kind !== 'folder') throw new InvalidArgumentError('a ControlNet subfolder needs a picked model folder', 'controlnet');
      controlnet = files.join(idOrDir, cn.path);
      controlnetLabel = `${src.name}/${cn.path}`;
    } else if (cn?.kind === 'hub') {
      controlnet = `${cn.repo}@${cn.revision}`;
      controlnetLabel = cn.revision !== 'main' ? `${cn.repo}@${cn.revision}` : cn.repo;
      resolveControlNet = (_id, req) => this.resolveControlNet(files, cn, req, variant, onProgress);
    }

    const pipe = await StableDiffusionPipeline.fromPretrained(idOrDir, {
      device,
      io: files,
      dtype: spec.dtype,
      variant,
      resolve,
      controlnet,
      resolveControlNet,
      onProgress,
      signal: opts.signal,
    });
    const d = pipe.defaults;
    return {
      key,
      pipe,
      controlnetLabel,
      revision,
      images: 0,
      model: {
        label,
        defaults: { steps: d.steps, guidance: d.guidance, width: d.width, height: d.height },
        scheduler: pipe.createScheduler().className,
        dtype: spec.dtype,
        controlnet: controlnetLabel ?? null,
        loadMs,
        fromCache: ctx.downloaded === 0,
      },
    };
  }

  private mountName(listing: RepoListing): string {
    const host = new URL(listing.endpoint).host;
    return `${host === 'huggingface.co' ? '' : `${host}/`}${listing.repo}@${short(listing.commit)}`;
  }

  /** A hub repo as a Mount: every file of the listing, each downloaded (into the store) when first read. */
  private hubMount(listing: RepoListing, onProgress: (e: DownloadProgressEvent) => void): Mount {
    return {
      files: listing.files.map((f) => f.path),
      blob: (rel) => this.hub.file(listing, rel, { onProgress, signal: this.ctx.signal }),
    };
  }

  /**
   * Downloads, before loading starts, the weights the loader will read: the pipeline's configs say which
   * components and which VAE folder (readPipelineConfigs), each component's weights are selectWeightFiles'
   * choice (findWeightFiles). The small files (configs, tokenizer) were fetched by reading them.
   */
  private async prefetchPipeline(files: MountedFiles, dir: string, req: ResolveRequest, variant: string | undefined): Promise<void> {
    const configs = await readPipelineConfigs(files, dir, req.vae);
    const weights: string[] = [];
    for (const comp of [files.join(dir, 'text_encoder'), files.join(dir, 'unet'), configs.vaeDir]) {
      weights.push(...(await findWeightFiles(files, comp, variant)));
    }
    for (const w of weights) await (await files.open(w)).close();
  }

  private async resolveControlNet(files: MountedFiles, cn: ModelSource, req: ResolveRequest, variant: string | undefined, onProgress: (e: DownloadProgressEvent) => void): Promise<string> {
    const listing = await this.hub.listRepo(cn.endpoint, cn.repo, cn.revision, { signal: req.signal });
    if (!listing.files.some((f) => f.path === 'config.json')) {
      throw new HubError('entry_not_found', `controlnet ${cn.repo}: the repo has no top-level config.json (not a diffusers ControlNetModel)`);
    }
    const dir = files.mount(this.mountName(listing), this.hubMount(listing, onProgress));
    for (const w of await findWeightFiles(files, dir, variant)) await (await files.open(w)).close();
    return dir;
  }

  async generate(spec: ModelSpec, req: GenerationRequest, opts: RunOptions = {}): Promise<GenerationOutput> {
    const t0 = performance.now();
    const l = await this.ensureLoaded(spec, opts);
    this.ctx = { onProgress: opts.onProgress, signal: opts.signal, downloaded: 0 };
    let control: { image: RGBImage; scale: number } | undefined;
    if (req.control) control = { image: req.control.invert ? invertControlImage(req.control.image) : req.control.image, scale: req.control.scale };
    const kernelsBefore = l.pipe.device.pipelineCount;
    let res;
    try {
      res = await l.pipe.generate({
        prompt: req.prompt,
        negativePrompt: req.negativePrompt,
        seed: req.seed,
        steps: req.steps,
        guidance: req.guidance,
        width: req.width,
        height: req.height,
        control,
        signal: opts.signal,
        onProgress: opts.onProgress,
      });
    } catch (e) {
      this.afterError(e);
      throw e;
    }
    const firstRun = l.images === 0;
    l.images++;
    const image = res.images[0]!;
    const plan = res.plan;
    // The CLI's field order (generationInfo + the ControlNet fields), so the JSON chunks read alike.
    const info: GenerationInfo = {
      prompt: req.prompt,
      steps: plan.steps,
      guidance: plan.guidance,
      seed: req.seed,
      width: image.width,
      height: image.height,
      batchIndex: 0,
      batchSize: 1,
      negativePrompt: req.negativePrompt,
      sampler: l.model.scheduler,
      model: l.model.label,
      revision: l.revision,
      dtype: l.model.dtype,
      version: this.opts.version,
      ...(req.control && l.controlnetLabel !== undefined
        ? { controlnet: l.controlnetLabel, controlImage: req.control.name, controlScale: req.control.scale, invertControl: req.control.invert }
        : {}),
    };
    const png = await encodePng(image, pngTextChunks(info));
    return { image, png, info, timings: res.timings, ms: performance.now() - t0, firstRun, compiled: l.pipe.device.pipelineCount - kernelsBefore };
  }

  /** GPU failures leave the device in an unknown state: free everything so the next call starts clean. */
  private afterError(e: unknown): void {
    if (e instanceof DeviceError && (e.code === 'device_lost' || e.code === 'gpu_error')) this.dropAll(true);
  }

  /** The open device, if any (tests, the adapter panel). */
  get currentDevice(): Device | null {
    return this.opened?.device ?? null;
  }
}

/** Parses a ControlNet setting (org/name[@revision]) into a hub source on `endpoint`. */
export function controlNetSource(spec: string, endpoint: string): ModelSource {
  const r = parseRepoId(spec);
  if (!r) throw new InvalidArgumentError(`controlnet ${JSON.stringify(spec)}: expected a Hugging Face repo id, org/name[@revision]`, 'controlnet');
  return { kind: 'hub', repo: r.repo, revision: r.revision ?? 'main', endpoint };
}
