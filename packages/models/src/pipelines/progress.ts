/**
 * One progress stream for a generation's whole life, as transformers.js' `progress_callback` and
 * diffusers' callbacks give it: downloads (per file: initiate → progress → done), loading (per
 * component: start → end) and each pipeline stage's start and end (denoise: once per step, i of n).
 * A stage is announced when it starts, so a long UNet step shows as running, not as the stage before.
 */

/** Pipeline stages in the order they run (`encode_image`: img2img / informative init only). */
export type PipelineStage = 'tokenize' | 'text_encoder' | 'encode_image' | 'denoise' | 'decode';

/** One file of a hub download. `total` is null when the server did not say. */
export interface DownloadProgressEvent {
  type: 'download';
  status: 'initiate' | 'progress' | 'done';
  /** Repo id, e.g. "IDKiro/sdxs-512-0.9". */
  repo: string;
  /** Path inside the repo, e.g. "unet/diffusion_pytorch_model.safetensors". */
  file: string;
  /** Bytes of this file so far (at 'done': all of it). */
  loaded: number;
  total: number | null;
  /** 'done' only: served from the local cache without a transfer. */
  cached?: boolean | undefined;
}

/** Loading one component (weights read and uploaded to the GPU). */
export interface LoadProgressEvent {
  type: 'load';
  status: 'start' | 'end';
  /** diffusers' component name: 'tokenizer', 'text_encoder', 'unet', 'vae', 'controlnet'. */
  component: string;
  /** 0 at 'start'; the component's load time at 'end'. */
  ms: number;
}

/** One pipeline stage; for 'denoise', one event pair per step (`step` 0-based of `steps`). */
export interface StageProgressEvent {
  type: 'stage';
  status: 'start' | 'end';
  stage: PipelineStage;
  step?: number | undefined;
  steps?: number | undefined;
  /** 0 at 'start'; the stage's (or step's) duration at 'end'. */
  ms: number;
  /** 'text_encoder' at 'end' only: every embedding came from the prompt-embedding cache (the encoder did not run). */
  cached?: boolean | undefined;
}

export type ProgressEvent = DownloadProgressEvent | LoadProgressEvent | StageProgressEvent;

export type ProgressCallback = (e: ProgressEvent) => void;
