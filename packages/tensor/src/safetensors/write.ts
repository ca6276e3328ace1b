import { ST_DTYPE_BYTES, type StDType } from './format.js';
import { numel } from '../tensor.js';
import { InvalidArgumentError, ShapeError } from '../errors.js';

export interface TensorToWrite {
  dtype: StDType;
  shape: readonly number[];
  /** Raw values: a typed array whose element size matches dtype (Uint16Array for F16/BF16 bits). */
  data: ArrayBufferView;
}

export interface TensorHeaderEntry {
  name: string;
  dtype: StDType;
  shape: readonly number[];
}

/**
 * The first bytes of a safetensors file for tensors written back to back in the given order: 8-byte
 * length + JSON header (padded with spaces to 8 bytes). Streaming writers emit this, then each tensor's
 * bytes in order; `offsets[i]` is where tensor i starts in the data section.
 */
export function safetensorsHeader(entries: readonly TensorHeaderEntry[], metadata?: Record<string, string>): { bytes: Uint8Array; offsets: number[]; dataBytes: number } {
  // No prototype: a tensor named "__proto__" (a valid name) must become a key, not the object's prototype.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata && Object.keys(metadata).length) header['__metadata__'] = metadata;
  let offset = 0;
  const offsets: number[] = [];
  for (const t of entries) {
    if (t.name === '__metadata__') throw new InvalidArgumentError('safetensors: a tensor cannot be named "__metadata__"', 'name');
    if (Object.hasOwn(header, t.name)) throw new InvalidArgumentError(`safetensors: tensor "${t.name}" given twice`, 'name');
    const bytes = numel(t.shape) * ST_DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offsets.push(offset);
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  const out = new Uint8Array(8 + json.length + pad);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, (json.length + pad) % 2 ** 32, true);
  dv.setUint32(4, Math.floor((json.length + pad) / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length);
  return { bytes: out, offsets, dataBytes: offset };
}

/** Serialises tensors (in the given key order) to the safetensors format, header padded to 8 bytes. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    const bytes = numel(t.shape) * ST_DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) throw new ShapeError(`encodeSafetensors: tensor "${name}" ${t.dtype} ${JSON.stringify(t.shape)} needs ${bytes} bytes, got ${t.data.byteLength}`);
  }
  // The header is padded by its UTF-8 byte length (names may be non-ASCII).
  const head = safetensorsHeader(entries.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })), metadata);
  const out = new Uint8Array(head.bytes.length + head.dataBytes);
  out.set(head.bytes, 0);
  entries.forEach(([, t], i) => out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), head.bytes.length + head.offsets[i]!));
  return out;
}
