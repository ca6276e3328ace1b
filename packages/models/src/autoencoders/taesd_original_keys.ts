/**
 * Original TAESD checkpoints (madebyollin/taesd `taesd_encoder.pth` / `taesd_decoder.pth`, and the
 * `.safetensors` copies with the same keys) name weights by their index in taesd.py's nn.Sequential:
 * `"K.conv.0.weight"`. diffusers' AutoencoderTiny keeps the same modules under `encoder.layers.K` /
 * `decoder.layers.K`, except that the original Decoder starts with a parameter-free Clamp (tanh(x/3)*3,
 * applied inside diffusers' DecoderTiny.forward), so every decoder index is one lower in diffusers.
 * This file is the one place that mapping lives.
 */
import { WeightsError } from '../errors.js';

export type TaesdPart = 'encoder' | 'decoder';

/** Original key ("3.conv.0.weight", or "decoder.3.conv.0.weight" from a whole TAESD module) → diffusers key. */
export function taesdDiffusersKey(part: TaesdPart, originalKey: string): string {
  const m = /^(?:(?:encoder|decoder)\.)?(\d+)\.(.+)$/.exec(originalKey);
  if (!m) throw new WeightsError(`"${originalKey}" is not an original TAESD ${part} key (expected "<layer index>.<name>")`);
  const i = Number(m[1]) - (part === 'decoder' ? 1 : 0);
  if (i < 0) throw new WeightsError(`"${originalKey}": layer 0 of the original TAESD decoder is the parameter-free Clamp and holds no weights`);
  return `${part}.layers.${i}.${m[2]}`;
}

/**
 * Which half a state dict with original keys is: the encoder's layer 0 is a conv (`0.weight`), the
 * decoder's is the Clamp, so only an encoder has `0.*` keys. Keys prefixed `encoder.`/`decoder.` (a whole
 * taesd.py TAESD module) give 'both'. undefined when the keys are not original TAESD keys at all.
 */
export function detectTaesdPart(keys: Iterable<string>): TaesdPart | 'both' | undefined {
  const ks = [...keys];
  if (!ks.length) return undefined;
  if (ks.every((k) => /^(encoder|decoder)\.\d+\./.test(k))) return 'both';
  if (!ks.every((k) => /^\d+\./.test(k))) return undefined;
  return ks.some((k) => k.startsWith('0.')) ? 'encoder' : 'decoder';
}

/**
 * diffusers key → original key for every key of an original TAESD state dict. `part` is detected when
 * omitted; 'both' expects `encoder.`/`decoder.` prefixes.
 */
export function taesdKeyMap(keys: Iterable<string>, part?: TaesdPart | 'both', what = 'state dict'): Map<string, string> {
  const ks = [...keys];
  const p = part ?? detectTaesdPart(ks);
  if (!p) throw new WeightsError(`${what}: keys ${ks.slice(0, 3).map((k) => `"${k}"`).join(', ')}${ks.length > 3 ? ', …' : ''} are not original TAESD keys ("<layer index>.<name>")`);
  const out = new Map<string, string>();
  for (const k of ks) {
    const half: TaesdPart = p === 'both' ? (k.startsWith('encoder.') ? 'encoder' : k.startsWith('decoder.') ? 'decoder' : fail(what, k)) : p;
    if (p !== 'both' && /^(encoder|decoder)\./.test(k)) fail(what, k);
    let d: string;
    try {
      d = taesdDiffusersKey(half, k);
    } catch (e) {
      throw new WeightsError(`${what}: ${(e as Error).message}`);
    }
    out.set(d, k);
  }
  return out;
}

function fail(what: string, key: string): never {
  throw new WeightsError(`${what}: key "${key}" does not fit an original TAESD encoder/decoder state dict`);
}
