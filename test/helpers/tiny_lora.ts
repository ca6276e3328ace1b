// A kohya-format LoRA for the tiny SDXS UNet of tiny_sdxs_model.ts (the CLI and low-memory tests fuse it).
import { encodeSafetensors } from '@fewstep/tensor';
import { TorchGenerator } from '@fewstep/models';

/** Rank 4, no alpha, on two attention projections (down_blocks.0 attn2 to_q, up_blocks.2 attn1 to_k); seeded. */
export function tinyLoraFile(): Uint8Array {
  const g = new TorchGenerator(99);
  const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const m of ['down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q', 'up_blocks_2_attentions_1_transformer_blocks_0_attn1_to_k']) {
    t[`lora_unet_${m}.lora_down.weight`] = { dtype: 'F32', shape: [4, 32], data: g.randn([4, 32], 'f32') as Float32Array };
    t[`lora_unet_${m}.lora_up.weight`] = { dtype: 'F32', shape: [32, 4], data: g.randn([32, 4], 'f32') as Float32Array };
  }
  return encodeSafetensors(t);
}
