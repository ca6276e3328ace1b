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
