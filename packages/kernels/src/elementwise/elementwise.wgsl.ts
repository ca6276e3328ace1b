// Elementwise family: unary activations, binary ops with numpy broadcasting (rank ≤ 6), GEGLU.
// One thread per output element; workgroups laid out 2-D (see runtime.grid1d) for > 65,535 groups.
// Math is f32 whatever T is; `alias T` is swapped to f16 by runtime.specialize.
import { paramsStruct, type ParamSchema } from '../runtime.js';

export const UNARY_PARAMS: ParamSchema = [['n', 'u32'], ['op', 'u32'], ['alpha', 'f32'], ['beta', 'f32']];
export const BINARY_PARAMS: ParamSchema = [
  ['n', 'u32'], ['op', 'u32'], ['rank', 'u32'], ['alpha', 'f32'],
  ...[0, 1, 2, 3, 4, 5].flatMap((i) => [[`d${i}`, 'u32'], [`sa${i}`, 'u32'], [`sb${i}`, 'u32']] as const),
];
export const GEGLU_PARAMS: ParamSchema = [['n', 'u32'], ['half', 'u32']];

export const ACTIVATIONS = `
fn erf_approx(x: f32) -> f32 {
  // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd-extended.
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return select(-y, y, x >= 0.0);
}
fn gelu_erf(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)); }
fn gelu_tanh(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
}
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x: f32) -> f32 { return x * sigmoid(x); }
fn quick_gelu(x: f32) -> f32 { return x * sigmoid(1.702 * x); }
`;

export const ELEMENTWISE_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(UNARY_PARAMS, 'UnaryParams')}
${ACTIVATIONS}

fn apply_unary(op: u32, x: f32, alpha: f32, beta: f32) -> f32 {
  switch op {
    case 0u: { return x * alpha + beta; }        // affine (scale)
    case 1u: { return silu(x); }
    case 2u: { return gelu_erf(x); }
    case 3u: { return gelu_tanh(x); }
    case 4u: { return quick_gelu(x); }
    case 5u: { return tanh(clamp(x, -15.0, 15.0)); }
    case 6u: { return max(x, 0.0); }
    default: { return x; }
  }
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@group(0) @binding(0) var<uniform> up: UnaryParams;
@group(0) @binding(1) var<storage, read> ux: array<T>;
@group(0) @binding(2) var<storage, read_write> uy: array<T>;

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_id(wid, nwg, lid);
  if (i >= up.n) { return; }
  uy[i] = T(apply_unary(up.op, f32(ux[i]), up.alpha, up.beta));
}
`;

export const BINARY_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(BINARY_PARAMS, 'BinaryParams')}

@group(0) @binding(0) var<uniform> p: BinaryParams;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

fn dim(i: u32) -> vec3<u32> {
  switch i {
    case 0u: { return vec3<u32>(p.d0, p.sa0, p.sb0); }
    case 1u: { return vec3<u32>(p.d1, p.sa1, p.sb1); }
    case 2u: { return vec3<u32>(p.d2, p.sa2, p.sb2); }
    case 3u: { return vec3<u32>(p.d3, p.sa3, p.sb3); }
    case 4u: { return vec3<u32>(p.d4, p.sa4, p.sb4); }
    default: { return vec3<u32>(p.d5, p.sa5, p.sb5); }
  }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  // Walk dims from innermost, turning the output index into a and b offsets (stride 0 = broadcast).
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var k = 0u; k < p.rank; k++) {
    let d = dim(p.rank - 1u - k);
    let c = rem % d.x;
    rem = rem / d.x;
    ia += c * d.y;
    ib += c * d.z;
  }
  let x = f32(a[ia]);
  let z = f32(b[ib]);
  var r: f32;
  switch p.op {
    case 0u: { r = x + p.alpha * z; }   // add (alpha scales b: alpha=-1 is subtract)
    case 1u: { r = x * z; }             // mul
    default: { r = x / z; }             // div
  }
  y[i] = T(r);
}
`;

export const GEGLU_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(GEGLU_PARAMS, 'GegluParams')}
${ACTIVATIONS}
@group(0) @binding(0) var<uniform> p: GegluParams;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

// diffusers GEGLU: hidden, gate = proj(x).chunk(2, dim=-1); out = hidden * gelu(gate).
@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let row = i / p.half;
  let c = i % p.half;
  let h = f32(x[row * 2u * p.half + c]);
  let g = f32(x[row * 2u * p.half + p.half + c]);
  y[i] = T(h * gelu_erf(g));
}
`;

// ---- chunked kernels (CPU adapters: see streaming.ts) -------------------------------------------------
// Workgroups of WG lanes; workgroup w walks vec4s [w·CHUNK, (w+1)·CHUNK) with lane l at k + l, so the
// loop is uniform and only the last chunk masks lanes. Shapes must be multiples of 4 where they say so.

export const CHUNK_LOOP = (chunk: number) => /* wgsl */ `
override WG: u32 = 8u;
const CHUNK = ${chunk}u;
fn chunk_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }`;

/** n = vec4s; y = op(x) per component. */
export const unaryChunkedWGSL = (chunk: number) => /* wgsl */ `
alias T = f32;
${paramsStruct(UNARY_PARAMS, 'UnaryParams')}
${ACTIVATIONS}
${CHUNK_LOOP(chunk)}

fn apply_unary(op: u32, x: vec4<f32>, alpha: f32, beta: f32) -> vec4<f32> {
  switch op {
    case 0u: { return x * alpha + beta; }
    case 1u: { return x / (1.0 + exp(-x)); }
    case 2u: { return vec4<f32>(gelu_erf(x.x), gelu_erf(x.y), gelu_erf(x.z), gelu_erf(x.w)); }
    case 3u: { return vec4<f32>(gelu_tanh(x.x), gelu_tanh(x.y), gelu_tanh(x.z), gelu_tanh(x.w)); }
    case 4u: { return x / (1.0 + exp(-1.702 * x)); }
    case 5u: { return tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0))); }
    case 6u: { return max(x, vec4<f32>(0.0)); }
    default: { return x; }
  }
}

@group(0) @binding(0) var<uniform> up: UnaryParams;
@group(0) @binding(1) var<storage, read> ux: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> uy: array<vec4<T>>;

@compute @workgroup_size(WG)
fn unary4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = chunk_id(wid, nwg) * CHUNK;
  let end = min(base + CHUNK, up.n);
  for (var k = base; k < end; k += WG) {
    let i = k + lid;
    if (i < end) { uy[i] = vec4<T>(apply_unary(up.op, vec4<f32>(ux[i]), up.alpha, up.beta)); }
  }
}
`;

// y[r, j] = a[r, j] (op) b[r, j] over rows × inner (inner % 4 == 0): an operand either varies along the
// row (`vec`: vec4 loads at row·s/4 + j) or is one value per row (stride 0 along it: a scalar binding,
// read once per workgroup at a uniform address). A workgroup covers one chunk of one row.
export const BINARY_CHUNKED_PARAMS: ParamSchema = [
  ['rows', 'u32'], ['inner4', 'u32'], ['chunks', 'u32'], ['op', 'u32'], ['alpha', 'f32'], ['sa', 'u32'], ['sb', 'u32'],
];

export function binaryChunkedWGSL(chunk: number, avec: boolean, bvec: boolean): string {
  const load = (v: string, vec: boolean) => (vec ? `vec4<f32>(${v}[(${v}o >> 2u) + j])` : `${v}s`);
  return /* wgsl */ `
alias T = f32;
${paramsStruct(BINARY_CHUNKED_PARAMS)}
${CHUNK_LOOP(chunk)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<${avec ? 'vec4<T>' : 'T'}>;
@group(0) @binding(2) var<storage, read> b: array<${bvec ? 'vec4<T>' : 'T'}>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<T>>;

@compute @workgroup_size(WG)
fn binary4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = chunk_id(wid, nwg);
  let row = id / p.chunks;
  if (row >= p.rows) { return; }
  let j0 = (id % p.chunks) * CHUNK;
  let j1 = min(j0 + CHUNK, p.inner4);
  let ao = row * p.sa; // element offsets of the row in a and b
  let bo = row * p.sb;
  ${avec ? '' : 'let as_ = vec4<f32>(f32(a[ao]));'}
  ${bvec ? '' : 'let bs_ = vec4<f32>(f32(b[bo]));'}
  let yo = row * p.inner4;
  for (var k = j0; k < j1; k += WG) {
    let j = k + lid;
    if (j < j1) {
      let x = ${avec ? load('a', true) : 'as_'};
      let z = ${bvec ? load('b', true) : 'bs_'};
      var r: vec4<f32>;
      switch p.op {
        case 0u: { r = x + p.alpha * z; }
        case 1u: { r = x * z; }
        default: { r = x / z; }
      }
      y[yo + j] = vec4<T>(r);
    }
  }
}
`;
}

/** GEGLU with half % 4 == 0: n4 = rows × half4; workgroups cover chunks of one row. */
export const GEGLU_CHUNKED_PARAMS: ParamSchema = [['rows', 'u32'], ['half4', 'u32'], ['chunks', 'u32']];

export const gegluChunkedWGSL = (chunk: number) => /* wgsl */ `
alias T = f32;
${paramsStruct(GEGLU_CHUNKED_PARAMS)}
${ACTIVATIONS}
${CHUNK_LOOP(chunk)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<T>>;

@compute @workgroup_size(WG)
fn geglu4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = chunk_id(wid, nwg);
  let row = id / p.chunks;
  if (row >= p.rows) { return; }
  let j0 = (id % p.chunks) * CHUNK;
  let j1 = min(j0 + CHUNK, p.half4);
  let xo = row * 2u * p.half4;
  let yo = row * p.half4;
  for (var k = j0; k < j1; k += WG) {
    let j = k + lid;
    if (j < j1) {
      let h = vec4<f32>(x[xo + j]);
      let g = vec4<f32>(x[xo + p.half4 + j]);
      y[yo + j] = vec4<T>(h * vec4<f32>(gelu_erf(g.x), gelu_erf(g.y), gelu_erf(g.z), gelu_erf(g.w)));
    }
  }
}
`;
