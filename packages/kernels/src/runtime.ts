/**
 * What every kernel dispatcher shares: the params schema (declared once in TS and checked against the
 * WGSL `struct Params` by a test), the f32/f16 source variants, the pipeline-cache key, and grid math.
 */
import { DeviceError, InvalidArgumentError, ShapeError, type Device, type DType, type Tensor } from '@fewstep/tensor';

export type ScalarType = 'u32' | 'i32' | 'f32';
/** Ordered field list of a kernel's `struct Params` (all 4-byte scalars). */
export type ParamSchema = readonly (readonly [name: string, type: ScalarType])[];

/** Packs values in schema order into a uniform-buffer image (size rounded up to 16 bytes). */
export function packParams(schema: ParamSchema, values: Record<string, number>): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((schema.length * 4) / 16) * 16));
  const dv = new DataView(buf);
  schema.forEach(([name, type], i) => {
    const v = values[name];
    if (v === undefined || Number.isNaN(v)) throw new InvalidArgumentError(`kernel params: missing value for "${name}"`, name);
    if (type === 'f32') dv.setFloat32(i * 4, v, true);
    else if (type === 'i32') dv.setInt32(i * 4, v, true);
    else {
      if (v < 0 || v > 0xffffffff || !Number.isInteger(v)) throw new InvalidArgumentError(`kernel params: "${name}" = ${v} is not a u32`, name);
      dv.setUint32(i * 4, v, true);
    }
  });
  return buf;
}

/** Generates the WGSL struct for a schema (kernels include it via `${paramsStruct(...)}`). */
export function paramsStruct(schema: ParamSchema, name = 'Params'): string {
  return `struct ${name} {\n${schema.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n};`;
}

/**
 * Makes the dtype variant of a kernel: sources declare `alias T = f32;` for the storage type and
 * compute in f32; the f16 variant enables f16 and swaps that one line.
 */
export function specialize(code: string, dtype: DType, extraEnables: string[] = []): string {
  const enables = [...extraEnables];
  if (dtype === 'f16') enables.unshift('f16');
  const header = enables.map((e) => `enable ${e};`).join('\n');
  if (dtype === 'f16') {
    if (!code.includes('alias T = f32;')) throw new InvalidArgumentError('kernel source has no `alias T = f32;` line to specialise', 'code');
    code = code.replace('alias T = f32;', 'alias T = f16;');
  }
  return header ? `${header}\n${code}` : code;
}

export interface KernelDef {
  family: string;
  entry: string;
  dtype: DType;
  code: string;
  storage: ('read' | 'rw')[];
  overrides?: Record<string, number> | undefined;
  enables?: string[] | undefined;
}

// What each cached pipeline was built from (see getPipeline).
const builtFrom = new WeakMap<GPUComputePipeline, { code: string; enables: string }>();

/**
 * Pipeline keyed only on compile-time facts: family:entry:dtype:overrides. Never a shape. The family
 * must name everything else that shapes the code (tile sizes, kernel settings): a key met again with a
 * different source throws instead of silently running the pipeline built first.
 */
export function getPipeline(device: Device, k: KernelDef): GPUComputePipeline {
  const ov = k.overrides ? Object.entries(k.overrides).map(([a, b]) => `${a}=${b}`).join(',') : '';
  const key = `${k.family}:${k.entry}:${k.dtype}${ov ? ':' + ov : ''}`;
  const enables = k.enables?.join(',') ?? '';
  let fresh = false;
  const p = device.pipeline(key, () => {
    fresh = true;
    return { code: specialize(k.code, k.dtype, k.enables), entryPoint: k.entry, constants: k.overrides, storage: k.storage };
  });
  const built = builtFrom.get(p);
  if (fresh || !built) builtFrom.set(p, { code: k.code, enables });
  // Usually the very string built from (constant or cached sources): O(1). Generated GEMM sources cost
  // one comparison of a few kB, less than generating them.
  else if (built.code !== k.code || built.enables !== enables) {
    throw new InvalidArgumentError(`pipeline ${key}: the key was reused for different WGSL (a setting that shapes the code is missing from the family name)`, 'family');
  }
  return p;
}

/** Checks that a dtype is usable on this device. */
export function checkDType(device: Device, op: string, dtype: DType): void {
  if (dtype === 'f16' && !device.features.f16) throw new DeviceError('feature_missing', `${op}: f16 needs the 'shader-f16' feature, which this adapter (${device.adapter.name}) lacks; use f32`);
}

export function sameDType(op: string, ...ts: Tensor[]): DType {
  const d = ts[0]!.dtype;
  for (const t of ts) if (t.dtype !== d) throw new ShapeError(`${op}: dtype mismatch (${ts.map((x) => x.dtype).join(', ')})`);
  return d;
}

/**
 * Splits `n` workgroups over x and y so neither passes the 65,535 limit. Shaders recover the linear
 * workgroup id as `wid.x + wid.y * nwg.x` (see `LINEAR_WG` below).
 */
export function grid1d(n: number, max = 65535): [number, number, number] {
  if (n <= max) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / max);
  return [Math.ceil(n / y), y, 1];
}

export const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);
