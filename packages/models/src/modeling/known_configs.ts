/**
 * The real configs of the models fewstep targets (models.md §1.2, §1.5, §2.1, §4), for random-weight
 * full-size benchmarks and structure tests, each as the model's `config` would hold it (defaults applied).
 * Weights and configs of real runs come from their folders. Exported from `@fewstep/models/testing`.
 */
import { unet2DConditionConfig, type UNet2DConditionConfig } from '../unets/unet_2d_condition.js';
import { clipConfig, clipTextConfig, type CLIPConfig, type CLIPTextConfig } from '../clip/configuration_clip.js';
import { autoencoderKLConfig, type AutoencoderKLConfig } from '../autoencoders/autoencoder_kl.js';
import { autoencoderTinyConfig, type AutoencoderTinyConfig } from '../autoencoders/autoencoder_tiny.js';

const common: Partial<UNet2DConditionConfig> = {
  act_fn: 'silu',
  addition_embed_type: null,
  addition_embed_type_num_heads: 64,
  addition_time_embed_dim: null,
  attention_type: 'default',
  center_input_sample: false,
  class_embed_type: null,
  class_embeddings_concat: false,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  cross_attention_norm: null,
  downsample_padding: 1,
  dropout: 0.0,
  dual_cross_attention: false,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  mid_block_only_cross_attention: null,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  num_attention_heads: null,
  num_class_embeds: null,
  out_channels: 4,
  projection_class_embeddings_input_dim: null,
  resnet_out_scale_factor: 1.0,
  resnet_skip_time_act: false,
  resnet_time_scale_shift: 'default',
  reverse_transformer_layers_per_block: null,
  sample_size: 64,
  time_cond_proj_dim: null,
  time_embedding_act_fn: null,
  time_embedding_dim: null,
  time_embedding_type: 'positional',
  timestep_post_act: null,
  transformer_layers_per_block: 1,
  upcast_attention: false,
};

/** IDKiro/sdxs-512-0.9 (models.md §1.2). */
export const SDXS_09: Readonly<UNet2DConditionConfig> = unet2DConditionConfig({
  ...common,
  attention_head_dim: [8, 8, 8],
  block_out_channels: [320, 640, 1280],
  cross_attention_dim: 1024,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  layers_per_block: 1,
  mid_block_type: null,
  only_cross_attention: [true, false, false],
  use_linear_projection: true,
});

/** IDKiro/sdxs-512-dreamshaper (models.md §2.1). */
export const SDXS_DREAMSHAPER: Readonly<UNet2DConditionConfig> = unet2DConditionConfig({
  ...common,
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280],
  cross_attention_dim: 768,
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
  layers_per_block: 1,
  mid_block_type: null,
  only_cross_attention: false,
  use_linear_projection: false,
});

/** runwayml/stable-diffusion-v1-5 (models.md §4.3). */
export const SD15: Readonly<UNet2DConditionConfig> = unet2DConditionConfig({
  ...common,
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  layers_per_block: 2,
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  only_cross_attention: false,
  use_linear_projection: false,
});

/** stabilityai/stable-diffusion-2-1-base (models.md §4.2). */
export const SD21_BASE: Readonly<UNet2DConditionConfig> = unet2DConditionConfig({
  ...SD15,
  attention_head_dim: [5, 10, 20, 20],
  cross_attention_dim: 1024,
  use_linear_projection: true,
});

const clipBase = { vocab_size: 49408, max_position_embeddings: 77, layer_norm_eps: 1e-5, pad_token_id: 1, bos_token_id: 0, eos_token_id: 2 };

/** SD2.x / SD-Turbo / SDXS-512-0.9 text encoder (OpenCLIP ViT-H/14 text tower as CLIPTextModel). */
export const CLIP_TEXT_SD2: Readonly<CLIPTextConfig> = clipTextConfig({ ...clipBase, hidden_size: 1024, intermediate_size: 4096, projection_dim: 512, num_hidden_layers: 23, num_attention_heads: 16, hidden_act: 'gelu' });

/** SD1.x / DreamShaper text encoder (openai CLIP ViT-L/14 text tower). */
export const CLIP_TEXT_SD15: Readonly<CLIPTextConfig> = clipTextConfig({ ...clipBase, hidden_size: 768, intermediate_size: 3072, projection_dim: 768, num_hidden_layers: 12, num_attention_heads: 12, hidden_act: 'quick_gelu' });

/**
 * openai/clip-vit-large-patch14 as a CLIPModel (the CLIP score model; 427,616,513 parameters): the ViT-L/14 text
 * tower of SD1.x (12 × 768, legacy eos_token_id 2) and a 24 × 1024 vision tower on 224² images in 14² patches,
 * both projected to 768. The keys its config.json sets that fewstep reads (the rest are transformers' defaults).
 */
export const CLIP_VIT_L14: Readonly<CLIPConfig> = clipConfig({
  architectures: ['CLIPModel'],
  model_type: 'clip',
  projection_dim: 768,
  logit_scale_init_value: 2.6592,
  text_config: { ...clipBase, hidden_size: 768, intermediate_size: 3072, projection_dim: 768, num_hidden_layers: 12, num_attention_heads: 12, hidden_act: 'quick_gelu', model_type: 'clip_text_model' },
  vision_config: {
    hidden_size: 1024, intermediate_size: 4096, projection_dim: 768, num_hidden_layers: 24, num_attention_heads: 16,
    image_size: 224, patch_size: 14, num_channels: 3, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, model_type: 'clip_vision_model',
  },
});

/** TAESD (madebyollin/taesd, SDXS `vae/`): diffusers' AutoencoderTiny defaults. */
export const TAESD: Readonly<AutoencoderTinyConfig> = autoencoderTinyConfig({});

export const KNOWN_UNETS = { 'sdxs-512-0.9': SDXS_09, 'sdxs-512-dreamshaper': SDXS_DREAMSHAPER, sd15: SD15, 'sd21-base': SD21_BASE } as const;

/** The SD VAE (SD1.x/2.x, SDXS `vae_large/`): diffusers' AutoencoderKL with SD's four stages. */
export const SD_VAE: Readonly<AutoencoderKLConfig> = autoencoderKLConfig({
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 512,
  scaling_factor: 0.18215,
});
