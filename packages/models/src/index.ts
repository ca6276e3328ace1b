export * from './modeling/weights.js';
export * from './modeling/component.js';
export * from './modeling/weight_files.js';
export * from './layers/linear.js';
export * from './layers/conv2d.js';
export * from './layers/norm.js';
export * from './clip/tokenization_clip.js';
export * from './clip/modeling_clip.js';
export * from './autoencoders/vae_tiny.js';
export * from './autoencoders/autoencoder_tiny.js';
export * from './modeling/registry.js';
export * from './schedulers/index.js';
export * from './random/torch_randn.js';
export * from './modeling/random_weights.js';
export * from './blocks/embeddings.js';
export * from './blocks/resnet.js';
export * from './blocks/downsampling.js';
export * from './blocks/upsampling.js';
export * from './blocks/attention_processor.js';
export * from './blocks/attention.js';
export * from './blocks/transformer_2d.js';
export * from './unets/unet_2d_blocks.js';
export * from './unets/unet_2d_condition.js';
export * from './controlnets/controlnet.js';
export * from './autoencoders/vae.js';
export * from './autoencoders/autoencoder_kl.js';
export * from './autoencoders/autoencoder.js';
export * from './modeling/known_configs.js';
export * from './loaders/lora.js';
export * from './autoencoders/taesd_original_keys.js';

// ---- Pipelines: text-to-image, image-to-image, ControlNet; the request rules; the progress stream.
export { StableDiffusionPipeline, Pipeline, type FromComponentsOptions, type GenerateResult } from './pipelines/pipeline_stable_diffusion.js';
export {
  loadPipelineComponents,
  readPipelineConfigs,
  type PipelineComponents,
  type PipelineConfigs,
  type PipelineLoadOptions,
  type ResolveRequest,
  type TransformableComponent,
  type WeightTransformRequest,
} from './pipelines/pipeline_loading.js';
export {
  MAX_BATCH,
  MAX_IMAGE_SIDE,
  modelInfoFromConfigs,
  resolveGenerateOptions,
  type GenerateOptions,
  type GenerationInit,
  type GenerationPlan,
  type HostTensor,
  type ModelInfo,
  type PipelineDefaults,
  type StepTrace,
} from './pipelines/generation_options.js';
export type { DownloadProgressEvent, LoadProgressEvent, PipelineStage, ProgressCallback, ProgressEvent, StageProgressEvent } from './pipelines/progress.js';
export { informativeInit, referenceStats, type LatentReference } from './pipelines/informative_init.js';

// ---- Images: the one RGB type, PNG with metadata, diffusers' image processor steps.
export { checkRGBImage, rgbaToRGB, type RGBImage } from './image/rgb_image.js';
export { crc32, decodePng, encodePng, type DecodedPng } from './image/png.js';
export { invertControlImage, postprocess, preprocess, preprocessControlImage, roundHalfToEven, type PostprocessResult } from './pipelines/image_processor.js';
export { PIL_RESAMPLE_CODES, resampleFilter, resizeRGB, type ResampleFilter, type ResizeOptions } from './image/resample.js';
export { DIFFUSERS_RESIZE_MODES, FIT_MODES, fitImage, pasteRGB, type FitMode } from './image/image_fit.js';
export { CLIPImageProcessor, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, centerCropRGB, clipResizeOutputSize, type CLIPImageProcessorConfigJson, type CLIPImageProcessorOutput, type ImageSizeDict } from './clip/image_processing_clip.js';
