/**
 * Key → shape maps for the text encoder and TAESD from their configs alone (the UNet and
 * AutoencoderKL have `describe` on their classes). Used for random-weight full-size benchmarks and
 * parameter counts; the structure mirrors transformers' CLIPTextModel and diffusers' EncoderTiny /
 * DecoderTiny index by index.
 */
import { ParamSpec } from './param_spec.js';
import type { CLIPTextConfig } from '../clip/modeling_clip.js';
import type { AutoencoderTinyConfig } from '../autoencoders/autoencoder_tiny.js';

export function describeCLIPText(c: CLIPTextConfig): Map<string, number[]> {
  const s = new ParamSpec().pp('text_model');
  const D = c.hidden_size;
  s.pp('embeddings').add('token_embedding.weight', [c.vocab_size, D]).add('position_embedding.weight', [c.max_position_embeddings, D]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = s.pp('encoder').pp('layers').pp(i);
    const a = l.pp('self_attn');
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) a.linear(p, D, D);
    l.norm('layer_norm1', D).norm('layer_norm2', D);
    l.pp('mlp').linear('fc1', D, c.intermediate_size).linear('fc2', c.intermediate_size, D);
  }
  s.norm('final_layer_norm', D);
  return s.shapes;
}

function tinyBlock(s: ParamSpec, cin: number, cout: number): void {
  s.conv('conv.0', cin, cout, 3).conv('conv.2', cout, cout, 3).conv('conv.4', cout, cout, 3);
  if (cin !== cout) s.conv('skip', cin, cout, 1, false);
}

export function describeAutoencoderTiny(c: AutoencoderTinyConfig): Map<string, number[]> {
  const root = new ParamSpec();
  // EncoderTiny: conv (stride 2, no bias, after the first stage) then blocks, per stage; final conv.
  const enc = root.pp('encoder').pp('layers');
  let idx = 0;
  c.num_encoder_blocks.forEach((n, i) => {
    const ch = c.encoder_block_out_channels[i]!;
    if (i === 0) enc.conv(String(idx++), c.in_channels, ch, 3);
    else enc.conv(String(idx++), ch, ch, 3, false);
    for (let b = 0; b < n; b++) tinyBlock(enc.pp(idx++), ch, ch);
  });
  enc.conv(String(idx++), c.encoder_block_out_channels[c.encoder_block_out_channels.length - 1]!, c.latent_channels, 3);
  // DecoderTiny: conv, act, then per stage blocks, upsample (not last), conv (bias only on the last).
  const dec = root.pp('decoder').pp('layers');
  idx = 0;
  dec.conv(String(idx), c.latent_channels, c.decoder_block_out_channels[0]!, 3);
  idx += 2;
  c.num_decoder_blocks.forEach((n, i) => {
    const last = i === c.num_decoder_blocks.length - 1;
    const ch = c.decoder_block_out_channels[i]!;
    for (let b = 0; b < n; b++) tinyBlock(dec.pp(idx++), ch, ch);
    if (!last) idx++;
    dec.conv(String(idx++), ch, last ? c.out_channels : ch, 3, last);
  });
  return root.shapes;
}
