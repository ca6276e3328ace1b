/**
 * What reading one weight file may cost, in one place. A small hostile file must not be able to take
 * unbounded memory, time or stack: every value below is far above what a real checkpoint needs (SD1.5's
 * UNet .bin: ~700 tensors, a few thousand pickle opcodes, a pickle of ~100 KB; the largest real state
 * dicts: some thousands of tensors, a few MB of pickle) and each is checked where the cost arises, with
 * one ResourceLimitError (code 'resource_limit') naming the file — and the tensor, where there is one.
 */
export const TENSOR_FILE_LIMITS = Object.freeze({
  /** safetensors: largest JSON header, in bytes (the reference implementation's own limit). */
  safetensorsHeaderBytes: 100_000_000,
  /** safetensors: deepest JSON nesting in a header (a valid header nests 3 deep: {name: {shape: [..]}}). */
  safetensorsHeaderDepth: 64,
  /** Most entries in one file: tensors, plus (PyTorch) the other keys and nested dicts of the state dict. */
  entries: 262_144,
  /** Most characters in all tensor names of one file together (PyTorch: after joining nested keys with '.'). */
  nameChars: 16 * 2 ** 20,
  /** Highest tensor rank. */
  rank: 64,
  /** Largest one tensor held in memory at once, in bytes (as stored, or after conversion to the requested dtype). */
  tensorBytes: 2 ** 32,
  /**
   * PyTorch: all tensors of a checkpoint together may materialize at most this factor times the file's size
   * plus `viewExpansionBytes`. Views repeat bytes (shared storages, e.g. tied embeddings; stride-0 broadcast
   * dims), so a few bytes of storage can describe gigabytes of tensor.
   */
  viewExpansionFactor: 8,
  viewExpansionBytes: 64 * 2 ** 20,
  /** PyTorch: largest data.pkl record, in bytes. */
  pickleBytes: 64 * 2 ** 20,
  /**
   * PyTorch: most values the unpickler may produce: every value pushed and every memo slot counts 1, and a
   * value fetched again from the memo (or DUP) counts its whole size, so a "billion laughs" of nested memo
   * references is refused as the expansion it is.
   */
  pickleNodes: 4 * 2 ** 20,
  /** PyTorch: most unpickler work: one unit per opcode and per item moved, copied or converted. */
  pickleWork: 8 * 2 ** 20,
  /** PyTorch: longest pickled integer (bytes of a LONG1/LONG4, characters of a text INT/LONG). */
  pickleIntLength: 1024,
  /** PyTorch: deepest nesting of dicts in a state dict whose tensors are listed (deeper ones are skipped). */
  stateDictDepth: 8,
});

export type TensorFileLimits = typeof TENSOR_FILE_LIMITS;

/**
 * Text from a file made fit for a one-line error message: control characters (line breaks included) escaped
 * as \uXXXX, and at most `max` characters.
 */
export function oneLine(s: string, max = 2000): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  // eslint-disable-next-line no-control-regex
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A name (of a tensor, record, key) as error messages quote it: one line, at most 200 characters. */
export function quoteName(name: string): string {
  return `"${oneLine(name, 200)}"`;
}

/** A short, non-recursive description of a JSON value for error messages (never a deep or long serialisation). */
export function previewJson(v: unknown): string {
  const short = (x: unknown): string | undefined => {
    if (x === null || typeof x === 'number' || typeof x === 'boolean') return String(x);
    if (typeof x === 'string') return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x);
    return undefined;
  };
  const s = short(v);
  if (s !== undefined) return s;
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) {
    if (v.length <= 16) {
      const items: string[] = [];
      for (const x of v) {
        const p = short(x);
        if (p === undefined) return `an array of ${v.length} item(s) holding ${Array.isArray(x) ? 'an array' : typeof x === 'object' ? 'an object' : typeof x}`;
        items.push(p);
      }
      return `[${items.join(',')}]`;
    }
    return `an array of ${v.length} items`;
  }
  return typeof v === 'object' ? 'an object' : typeof v;
}
