// Layout family: pure data movement (nearest upsample, strided block copy for concat/slice, permute)
// plus the f32↔f16 cast. One thread per element (or per vec4 / per input pixel); 2-D workgroup grid.
import { paramsStruct, type ParamSchema } from '../runtime.js';
import { CHUNK_LOOP } from '../elementwise/elementwise.wgsl.js';

const LINEAR = /* wgsl */ `
fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}`;

export const UPSAMPLE_PARAMS: ParamSchema = [['n', 'u32'], ['W', 'u32']];

// One thread per *input* element: it writes the 2×2 output block, so index math is paid once per 4
// outputs. Output row (2·r, 2·w) lives at (2r)·2W + 2w where r runs over all N·C·H input rows.
export const UPSAMPLE_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(UPSAMPLE_PARAMS)}
${LINEAR}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn upsample2x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  let r = i / p.W;
  let w = i - r * p.W;
  let v = x[i];
  let o = 4u * r * p.W + 2u * w;
  y[o] = v;
  y[o + 1u] = v;
  y[o + 2u * p.W] = v;
  y[o + 2u * p.W + 1u] = v;
}
`;

// W % 4 == 0: one thread per 4 input pixels of a row, vec4 in and 2×2 vec4 out (a quarter of the
// threads and index math of the scalar kernel). Params count vec4s: n = inputs/4, W = W/4.
/** Bindings and one vec4 of ×2 upsampling (input vec4 i → two vec4s on each of two output rows), shared by both kernels. */
const UPSAMPLE4_BODY = /* wgsl */ `
alias T = f32;
${paramsStruct(UPSAMPLE_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<T>>;

fn upsample4_at(i: u32) {
  let r = i / p.W;
  let w = i - r * p.W;
  let v = x[i];
  let a = v.xxyy;
  let b = v.zzww;
  let o = 4u * r * p.W + 2u * w;
  y[o] = a;
  y[o + 1u] = b;
  y[o + 2u * p.W] = a;
  y[o + 2u * p.W + 1u] = b;
}`;

export const UPSAMPLE4_WGSL = /* wgsl */ `
${UPSAMPLE4_BODY}
${LINEAR}

@compute @workgroup_size(256)
fn upsample2x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  upsample4_at(i);
}
`;

export const COPY_PARAMS: ParamSchema = [
  ['n', 'u32'], ['inner', 'u32'], ['src_stride', 'u32'], ['src_off', 'u32'], ['dst_stride', 'u32'], ['dst_off', 'u32'],
];

/**
 * dst[o·dst_stride + dst_off + j] = src[o·src_stride + src_off + j] for j < inner: concat writes each
 * input at its offset along the axis, slice reads a window. `vec4` moves 4 elements per thread (all
 * params are then in vec4 units) — used when every extent and offset is a multiple of 4.
 */
export function copyWgsl(vec4: boolean): string {
  const E = vec4 ? 'vec4<T>' : 'T';
  return /* wgsl */ `
alias T = f32;
${paramsStruct(COPY_PARAMS)}
${LINEAR}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<${E}>;
@group(0) @binding(2) var<storage, read_write> dst: array<${E}>;

@compute @workgroup_size(256)
fn ${vec4 ? 'copy4' : 'copy'}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  let o = i / p.inner;
  let j = i - o * p.inner;
  dst[o * p.dst_stride + p.dst_off + j] = src[o * p.src_stride + p.src_off + j];
}
`;
}

export const PERMUTE_PARAMS: ParamSchema = [
  ['n', 'u32'], ['rank', 'u32'],
  ...[0, 1, 2, 3, 4, 5].flatMap((i) => [[`d${i}`, 'u32'], [`s${i}`, 'u32']] as const),
];

// Gather: walk the output index from the innermost dim, adding the input stride of each output dim.
export const PERMUTE_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(PERMUTE_PARAMS)}
${LINEAR}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

fn dim(i: u32) -> vec2<u32> {
  switch i {
    case 0u: { return vec2<u32>(p.d0, p.s0); }
    case 1u: { return vec2<u32>(p.d1, p.s1); }
    case 2u: { return vec2<u32>(p.d2, p.s2); }
    case 3u: { return vec2<u32>(p.d3, p.s3); }
    case 4u: { return vec2<u32>(p.d4, p.s4); }
    default: { return vec2<u32>(p.d5, p.s5); }
  }
}

@compute @workgroup_size(256)
fn permute(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  var rem = i;
  var src = 0u;
  for (var k = 0u; k < p.rank; k++) {
    let d = dim(p.rank - 1u - k);
    let q = rem / d.x;
    src += (rem - q * d.x) * d.y;
    rem = q;
  }
  y[i] = x[src];
}
`;

export const CAST_PARAMS: ParamSchema = [['n', 'u32']];

// T is the half side (runtime.specialize makes it f16). f32 → f16 follows torch's .half(): values past
// the f16 range become ±inf and NaN stays NaN — WGSL leaves out-of-range conversions indeterminate,
// so those cases are decided on the f32 bits and written as explicit half bit patterns.
export const CAST_TO_HALF_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(CAST_PARAMS)}
${LINEAR}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn cast_to_half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  let v = x[i];
  let bits = bitcast<u32>(v);
  let mag = bits & 0x7fffffffu;
  // 0x477ff000 = 65520.0, the first magnitude that rounds to inf in round-to-nearest-even.
  if (mag >= 0x477ff000u) {
    let sign = (bits >> 16u) & 0x8000u;
    let h = select(sign | 0x7c00u, 0x7e00u, mag > 0x7f800000u);
    y[i] = T(bitcast<vec2<f16>>(h).x);
  } else {
    y[i] = T(v);
  }
}
`;

export const CAST_FROM_HALF_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(CAST_PARAMS)}
${LINEAR}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn cast_from_half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= p.n) { return; }
  y[i] = f32(x[i]);
}
`;

// Chunked casts (CPU adapters, n % 4 == 0; see streaming.ts): workgroups of WG lanes walking CHUNK
// vec4s each (the elementwise kernels' CHUNK_LOOP). To half: components past the f16 range are decided on their f32 bits as above.

/** The chunk walk: `body` runs for each vec4 index i of the workgroup's chunk (i < n). */
const chunkedEntry = (entry: string, n: string, body: string) => /* wgsl */ `
@compute @workgroup_size(WG)
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = chunk_id(wid, nwg) * CHUNK;
  let end = min(base + CHUNK, ${n});
  for (var k = base; k < end; k += WG) {
    let i = k + lid;
    if (i < end) {${body}}
  }
}`;

export const castToHalfChunkedWGSL = (chunk: number) => /* wgsl */ `
alias T = f32;
${paramsStruct(CAST_PARAMS)}
${CHUNK_LOOP(chunk)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<T>>;

${chunkedEntry('cast_to_half4', 'p.n', `
      let v = x[i];
      let bits = bitcast<vec4<u32>>(v);
      let mag = bits & vec4<u32>(0x7fffffffu);
      let big = mag >= vec4<u32>(0x477ff000u);
      if (any(big)) {
        let sign = (bits >> vec4<u32>(16u)) & vec4<u32>(0x8000u);
        let h = select(sign | vec4<u32>(0x7c00u), vec4<u32>(0x7e00u), mag > vec4<u32>(0x7f800000u));
        let special = vec4<T>(bitcast<vec2<T>>(h.x | (h.y << 16u)), bitcast<vec2<T>>(h.z | (h.w << 16u)));
        y[i] = select(vec4<T>(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0))), special, big);
      } else {
        y[i] = vec4<T>(v);
      }
    `)}
`;

export const castFromHalfChunkedWGSL = (chunk: number) => /* wgsl */ `
alias T = f32;
${paramsStruct(CAST_PARAMS)}
${CHUNK_LOOP(chunk)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

${chunkedEntry('cast_from_half4', 'p.n', ` y[i] = vec4<f32>(x[i]); `)}
`;

/** Chunked ×2 upsample (W % 4 == 0): the vec4 kernel's body for each of a workgroup's CHUNK vec4s. */
export const upsample4ChunkedWGSL = (chunk: number) => /* wgsl */ `
${UPSAMPLE4_BODY}
${CHUNK_LOOP(chunk)}
${chunkedEntry('upsample2x4c', 'p.n', ' upsample4_at(i); ')}
`;

// Chunked batched transpose y[n, a, b] = x[n, b, a] (A % 4 == 0, B % 4 == 0): a lane moves a 4×4 block —
// four vec4 rows of x in, transposed in registers, four vec4 rows of y out — so a permute costs the lane
// loads of a vec4 copy. What permute NCHW → NHWC (and back) collapses to.
export const TRANSPOSE_PARAMS: ParamSchema = [['rows', 'u32'], ['chunks', 'u32'], ['A', 'u32'], ['B', 'u32'], ['A4', 'u32'], ['B4', 'u32']];

// A workgroup takes one row of blocks (one n, one ib: rows = N·B/4) and a chunk of its A/4 blocks, so
// only the lane's block column varies per lane (no per-lane division).
export const transpose4ChunkedWGSL = (chunk: number) => /* wgsl */ `
alias T = f32;
${paramsStruct(TRANSPOSE_PARAMS)}
${CHUNK_LOOP(chunk)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<T>>;

@compute @workgroup_size(WG)
fn transpose4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  let row = id / p.chunks;
  if (row >= p.rows) { return; }
  let n = row / p.B4;
  let ib = row % p.B4;
  let a0 = (id % p.chunks) * CHUNK;
  let a1 = min(a0 + CHUNK, p.A4);
  let xr = (n * p.B + 4u * ib) * p.A4;
  let yr = n * p.A * p.B4 + ib;
  for (var k = a0; k < a1; k += WG) {
    let ia = k + lid;
    if (ia < a1) {
      let xi = xr + ia;
      let r0 = x[xi];
      let r1 = x[xi + p.A4];
      let r2 = x[xi + 2u * p.A4];
      let r3 = x[xi + 3u * p.A4];
      let yi = yr + 4u * ia * p.B4;
      y[yi] = vec4<T>(r0.x, r1.x, r2.x, r3.x);
      y[yi + p.B4] = vec4<T>(r0.y, r1.y, r2.y, r3.y);
      y[yi + 2u * p.B4] = vec4<T>(r0.z, r1.z, r2.z, r3.z);
      y[yi + 3u * p.B4] = vec4<T>(r0.w, r1.w, r2.w, r3.w);
    }
  }
}
`;
