/**
 * What the page asks of whatever generates its images. The page talks only to this interface: the WebGPU
 * backend runs the pipeline in the tab (webgpu_backend.ts); the server backend (server_backend.ts) asks
 * `fewstep serve` over its OpenAI-compatible API — the same calls: report what it runs on, load a model,
 * generate one image (returned as the PNG with its metadata).
 */
import type { GenerationInfo, ProgressCallback, RGBImage } from '@fewstep/models';

export interface ModelSource {
  kind: 'hub';
  /** org/name */
  repo: string;
  revision: string;
  /** Hub base URL (no trailing slash). */
  endpoint: string;
}

/** A folder the user picked in this tab (File objects; a server backend would have to upload or refuse it). */
export interface FolderSource {
  kind: 'folder';
  /** Unique per pick (two picks of folders with the same name are different models). */
  id: string;
  /** The folder's name, for display and metadata. */
  name: string;
  files: readonly File[];
}

export interface ModelSpec {
  source: ModelSource | FolderSource;
  dtype: 'f32' | 'f16';
  /** A ControlNet (sketch mode): a hub repo, or a folder inside a picked model folder (e.g. 'controlnet'). */
  controlnet?: ModelSource | { kind: 'subfolder'; path: string } | undefined;
}

export interface GenerationRequest {
  prompt: string;
  negativePrompt: string;
  /** The generator seed (torch.Generator('cpu').manual_seed). */
  seed: number;
  /** Absent: the model's own. */
  steps?: number | undefined;
  guidance?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  /** Sketch mode: the drawing as drawn (black on white) and whether the ControlNet gets 255 − it. */
  control?: { image: RGBImage; scale: number; invert: boolean; name: string } | undefined;
}

export interface GenerationOutput {
  image: RGBImage;
  /** The PNG with the same metadata the CLI writes (A1111 "parameters" + "fewstep" JSON). */
  png: Uint8Array;
  info: GenerationInfo;
  /** ms per stage as the pipeline reports them (tokenize, text_encoder, denoise, denoise.<i>, decode, total). */
  timings: Record<string, number>;
  /** Wall time of this call (includes a first run's shader compiles). */
  ms: number;
  /** This image was the model's first (its kernels were compiled during it). */
  firstRun: boolean;
  /** GPU pipelines (kernels) compiled during this call, when the backend knows. */
  compiled?: number | undefined;
}

export interface LoadedModel {
  /** The model as the metadata names it (repo id, or the folder's name). */
  label: string;
  /** The model's own steps, guidance, width and height (null when the backend does not say: a server). */
  defaults: { steps: number; guidance: number; width: number; height: number } | null;
  scheduler: string;
  dtype: 'f32' | 'f16';
  controlnet: string | null;
  /** ms per component load (tokenizer, text_encoder, unet, vae, controlnet). */
  loadMs: Record<string, number>;
  /** Served from this browser's cache (no download at all). */
  fromCache: boolean;
}

export interface BackendInfo {
  /** One line, e.g. "swiftshader (google) — WebGPU in this tab". */
  name: string;
  /** Whether f16 weights/kernels can run here. */
  f16: boolean;
  /** Free-form facts for the adapter panel (limits, features). */
  details: Record<string, string>;
}

export interface RunOptions {
  onProgress?: ProgressCallback | undefined;
  signal?: AbortSignal | undefined;
}

export interface GenerationBackend {
  /** Opens what the backend runs on (the GPU device) and reports it. */
  info(): Promise<BackendInfo>;
  /** Makes `spec` the loaded model (downloading what it needs); a no-op when it already is. */
  load(spec: ModelSpec, opts?: RunOptions): Promise<LoadedModel>;
  /** Loads `spec` if needed, then generates one image. */
  generate(spec: ModelSpec, req: GenerationRequest, opts?: RunOptions): Promise<GenerationOutput>;
  /** Frees the model and the device (the next call opens them again). */
  reset(): void;
}

/** The key that says whether two specs load the same model. */
export function specKey(spec: ModelSpec): string {
  const s = spec.source;
  const src = s.kind === 'hub' ? `hub:${s.endpoint}|${s.repo}|${s.revision}` : `folder:${s.id}`;
  const c = spec.controlnet;
  const cn = !c ? '' : c.kind === 'hub' ? `hub:${c.endpoint}|${c.repo}|${c.revision}` : `sub:${c.path}`;
  return `${src}|${spec.dtype}|${cn}`;
}
