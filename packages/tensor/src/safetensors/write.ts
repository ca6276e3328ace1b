import { ST_DTYPE_BYTES, type StDType } from './format';
import { numel } from '../tensor';

export interface TensorToWrite {
  dtype: StDType;
  shape: readonly number[];
  /** Raw values: a typed array whose element size matches dtype (Uint16Array for F16/BF16 bits). */
  data: ArrayBufferView;
}

/** Serialises tensors (in the given key order) to the safetensors format, header padded to 8 bytes. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = numel(t.shape) * ST_DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) throw new Error(`encodeSafetensors: tensor "${name}" ${t.dtype} ${JSON.stringify(t.shape)} needs ${bytes} bytes, got ${t.data.byteLength}`);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    parts.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((json.length + 8) % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, headerBytes.length, true);
  dv.setUint32(4, 0, true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.length;
  for (const b of parts) {
    out.set(b, p);
    p += b.byteLength;
  }
  return out;
}
