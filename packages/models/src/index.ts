/**
 * @fewstep/models: diffusers / transformers models on WebGPU, loaded from Hugging Face weights by key name and
 * exact to diffusers 0.25.1 / transformers 4.36. Configs follow one convention (modeling/config.ts):
 * `model.config` is config.json's keys with the defaults applied; UNet and ControlNet add `resolvedConfig`.
 * Test and benchmark helpers (deterministic random weights, the configs of full-size models) are in
 * `@fewstep/models/testing`.
 */

// ---- Components: load a diffusers/transformers folder by the class its config.json names.
export { COMPONENT_CLASSES, componentInfo, loadComponent, loadVae, type Component, type ComponentInfo, type LoadComponentOptions } from './modeling/registry.js';
export { findWeightFiles, openComponentWeights, readConfig, type FromFolderOptions, type FromSourceOptions } from './modeling/component.js';
export { selectWeightFiles, type WeightFileOptions, type WeightFileSelection } from './modeling/weight_files.js';
export type { ConfigInput } from './modeling/config.js';
export type { RandomWeightsOptions } from './modeling/random_weights.js';

// ---- Weights by name: tensor sources, the scope a model's one walk (`build`) loads or records through.
export {
  RenamedSource,
  SafetensorsSource,
  TensorFileSource,
  WeightScope,
  countParameters,
  type TensorSource,
  type WeightDType,
  type WeightTransform,
} from './modeling/weights.js';

// ---- Errors (besides @fewstep/tensor's UnsupportedError, ShapeError, InvalidArgumentError, FileFormatError).
export { ConfigError, ModelFolderError, WeightsError } from './errors.js';

// ---- Text: the CLIP tokenizer and text encoder (transformers).
export { CLIPTokenizer, type AddedTokenSpec, type CLIPEncoding, type CLIPTokenizerContents, type CLIPTokenizerFromFolderOptions } from './clip/tokenization_clip.js';
export {
  CLIPTextModel,
  CLIPTextModelWithProjection,
  type CLIPTextForwardOptions,
  type CLIPTextModelWithProjectionOutput,
  type CLIPTextOutput,
} from './clip/modeling_clip.js';
export {
  CLIP_DEFAULTS,
  CLIP_TEXT_DEFAULTS,
  CLIP_VISION_DEFAULTS,
  clipConfig,
  clipTextConfig,
  clipVisionConfig,
  type CLIPConfig,
  type CLIPEncoderConfig,
  type CLIPTextConfig,
  type CLIPVisionConfig,
} from './clip/configuration_clip.js';

// ---- CLIP: the vision tower, CLIPModel (both towers, projections, logit_scale), CLIP score (torchmetrics).
export { CLIPVisionModelWithProjection, type CLIPVisionModelWithProjectionOutput, type CLIPVisionOutput } from './clip/modeling_clip_vision.js';
export { CLIPModel, type CLIPModelInputs, type CLIPModelOutput } from './clip/modeling_clip_model.js';
export { clipLogits, clipScore, l2NormalizeRows, type EmbeddingRows } from './clip/clip_score.js';
export { CLIPScorer, type CLIPScoreTokens, type CLIPScorerOptions } from './clip/clip_scorer.js';

// ---- UNet2DConditionModel and ControlNetModel (which shares the UNet's encoder half).
export {
  UNET_2D_CONDITION_DEFAULTS,
  UNet2DConditionModel,
  resolveUNetConfig,
  unet2DConditionConfig,
  type ResolvedUNetConfig,
  type UNet2DConditionConfig,
  type UNetForwardOptions,
} from './unets/unet_2d_condition.js';
export type { PerBlock, ResolvedUNetEncoderConfig, Timestep, UNetEncoderConfig } from './unets/unet_encoder.js';
export {
  CONTROLNET_DEFAULTS,
  ControlNetModel,
  controlNetConfig,
  resolveControlNetConfig,
  type ControlNetConfig,
  type ControlNetForwardOptions,
  type ControlNetOutput,
  type ResolvedControlNetConfig,
} from './controlnets/controlnet.js';

// ---- VAEs: AutoencoderTiny (TAESD, also from madebyollin's original files) and AutoencoderKL, both a `Vae`.
export type { NoiseGenerator, Vae } from './autoencoders/autoencoder.js';
export { AUTOENCODER_TINY_DEFAULTS, AutoencoderTiny, autoencoderTinyConfig, findOriginalTaesdFiles, type AutoencoderTinyConfig } from './autoencoders/autoencoder_tiny.js';
export { AUTOENCODER_KL_DEFAULTS, AutoencoderKL, autoencoderKLConfig, type AutoencoderKLConfig, type LatentDistribution } from './autoencoders/autoencoder_kl.js';
export { detectTaesdPart, taesdDiffusersKey, taesdKeyMap, type TaesdPart } from './autoencoders/taesd_original_keys.js';

// ---- Schedulers (diffusers' step arithmetic, float32 as torch).
export {
  DDIMScheduler,
  DDPMScheduler,
  DEISMultistepScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  SCHEDULER_CLASSES,
  schedulerFromConfig,
  type DDIMConfig,
  type DDIMStepOptions,
  type DDPMConfig,
  type DEISConfig,
  type EulerDiscreteConfig,
  type EulerStepOptions,
  type LCMConfig,
  type NoiseSource,
  type Scheduler,
  type SchedulerClassName,
  type StepOptions,
  type StepOutput,
} from './schedulers/index.js';

// ---- LoRA (kohya, diffusers, PEFT), fused into the weights as they load.
export {
  LoraAdapter,
  combineTransforms,
  loadLora,
  loraTransform,
  parseLoraSpec,
  type LoadLoraOptions,
  type LoraComponent,
  type LoraFormat,
  type LoraTarget,
} from './loaders/lora.js';

// ---- torch.randn, bit for bit (torch.Generator("cpu").manual_seed(n)).
export { TorchGenerator, torchRandn, type RandnDType } from './random/torch_randn.js';
export { GeneratorList } from './random/generator_list.js';

// ---- Pipelines: text-to-image, image-to-image, ControlNet; the request rules; the progress stream.
export { StableDiffusionPipeline, Pipeline, type FromComponentsOptions, type GenerateResult } from './pipelines/pipeline_stable_diffusion.js';
export { ComponentResidency, weightStream, type ComponentLoaders, type ComponentName, type ComponentTypes } from './pipelines/low_memory.js';
export { PromptEmbeddingCache, PROMPT_CACHE_ENTRIES, type PromptCacheKeyParts } from './pipelines/prompt_cache.js';
export {
  resolveVaeDtype,
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
export { crc32, decodePng, encodePng, type DecodedPng, type PngDecodeLimits } from './image/png.js';
export { IMAGE_LIMITS, type ImageLimits } from './image/image_limits.js';
export { parametersText, pngTextChunks, type GenerationInfo } from './image/png_metadata.js';
export { invertControlImage, postprocess, preprocess, preprocessControlImage, roundHalfToEven, type PostprocessResult } from './pipelines/image_processor.js';
export { PIL_RESAMPLE_CODES, resampleFilter, resizeRGB, type ResampleFilter, type ResizeOptions } from './image/resample.js';
export { DIFFUSERS_RESIZE_MODES, FIT_MODES, fitImage, pasteRGB, type FitMode } from './image/image_fit.js';
export { CLIPImageProcessor, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, centerCropRGB, clipResizeOutputSize, type CLIPImageProcessorConfigJson, type CLIPImageProcessorOutput, type ImageSizeDict } from './clip/image_processing_clip.js';
