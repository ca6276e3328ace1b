/**
 * Which weight files of one component folder diffusers/transformers load — the one rule used for a
 * local folder (`findWeightFiles`), a hub repo's file list (`@fewstep/weights-tools`' selectModelFiles)
 * and a ControlNet repo. Names only, no IO (browser-safe).
 *
 *  - safetensors whenever the folder has any: the standard names `diffusion_pytorch_model` / `model`,
 *    with an optional variant (`model.fp16.safetensors`) and shards (`-00001-of-00002`); without any
 *    standard name, every `*.safetensors` of the folder;
 *  - PyTorch pickles (`diffusion_pytorch_model…bin` / `pytorch_model…bin`, read by the whitelist
 *    unpickler) only when the folder has no safetensors at all;
 *  - diffusers' name over transformers' when a folder has both;
 *  - the variant: `variant` first when given, then fp16 for `dtype: 'f16'` and the plain files for f32
 *    (the default), each falling back to the other; a folder with a single other variant uses it.
 */
import { ModelFolderError } from '../errors.js';

export interface WeightFileOptions {
  /** Weight variant asked for (e.g. 'fp16', 'bf16'); tried before the dtype's order. */
  variant?: string | undefined;
  /** 'f16' prefers the fp16 variant, 'f32' (default) the plain files; each falls back to the other. */
  dtype?: 'f32' | 'f16' | undefined;
  /** Names the folder in error messages ("… has no weights"), e.g. a path or "org/name: unet/". */
  where?: string | undefined;
}

export interface WeightFileSelection {
  /** The chosen file names (as given), sorted. */
  files: string[];
  /** The variant of the chosen files; '' for plain (and non-standard) names. */
  variant: string;
  format: 'safetensors' | 'bin';
}

/** `diffusion_pytorch_model[.variant][-0000i-of-0000N].safetensors`, `model…safetensors`. */
const STD_SAFETENSORS = /^(diffusion_pytorch_model|model)(?:\.([A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.safetensors$/;
/** Their PyTorch-pickle counterparts. */
const STD_BIN = /^(diffusion_pytorch_model|pytorch_model)(?:\.([A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.bin$/;
/** PyTorch checkpoints that are not loaded under their own name (named in the error). */
const OTHER_PICKLE = /\.(bin|pt|pth|ckpt)$/;

/** Variant → its files among `names` with standard names of one format. */
function byVariant(names: readonly string[], re: RegExp): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const n of names) {
    const m = re.exec(n);
    if (!m) continue;
    const v = m[2] ?? '';
    const list = out.get(v);
    if (list) list.push(n);
    else out.set(v, [n]);
  }
  return out;
}

/**
 * The weight files of one component folder, from its file names (base names; anything with a '/' is
 * ignored). Throws a ModelFolderError (code 'not_a_model') naming the folder when there are none it can load.
 */
export function selectWeightFiles(names: readonly string[], opts: WeightFileOptions = {}): WeightFileSelection {
  const where = opts.where ?? 'the folder';
  const here = names.filter((n) => !n.includes('/'));
  const hasSafetensors = here.some((n) => n.endsWith('.safetensors'));
  const format = hasSafetensors ? 'safetensors' : 'bin';
  const groups = byVariant(here, hasSafetensors ? STD_SAFETENSORS : STD_BIN);
  if (groups.size === 0) {
    // No standard names: diffusers loads every .safetensors of the folder; pickles need their names.
    if (hasSafetensors) return { files: here.filter((n) => n.endsWith('.safetensors')).sort(), variant: '', format };
    const other = here.filter((n) => OTHER_PICKLE.test(n)).sort();
    throw new ModelFolderError(
      `${where} has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin)` +
        (other.length ? `; found ${other.join(', ')}, which are not the names diffusers/transformers load (\`fewstep convert\` turns one into safetensors)` : ''),
      opts.where,
    );
  }
  const order = [...new Set([...(opts.variant ? [opts.variant] : []), ...(opts.dtype === 'f16' ? ['fp16', ''] : ['', 'fp16'])])];
  let variant = order.find((v) => groups.has(v));
  if (variant === undefined) {
    if (groups.size > 1) {
      const asked = order.map((v) => v || 'plain').join(' or ');
      throw new ModelFolderError(`${where} has several weight variants (${[...groups.keys()].map((v) => v || 'plain').join(', ')}) and no ${asked} one`, opts.where);
    }
    variant = [...groups.keys()][0]!;
  }
  let files = groups.get(variant)!;
  // Both diffusers' and transformers' names: diffusers loads its own.
  if (files.some((n) => n.startsWith('diffusion_pytorch_model'))) files = files.filter((n) => n.startsWith('diffusion_pytorch_model'));
  return { files: files.sort(), variant, format };
}
