// Embedding family: token(+position) gather over a windowed table binding, and diffusers' sinusoidal
// timestep embedding with accurate sin/cos for large arguments.
import { paramsStruct, type ParamSchema } from '../runtime.js';

export const GATHER_PARAMS: ParamSchema = [
  ['n', 'u32'], ['D', 'u32'], ['L', 'u32'], ['V', 'u32'], ['row0', 'u32'], ['rows', 'u32'], ['first', 'u32'],
];

/**
 * One thread per output element. The table binding covers rows [row0, row0 + rows) only (tables can
 * exceed one storage binding); a thread writes only if its id falls in that window, so over all windows
 * each element is written once. Ids outside [0, V) are written by the first window as zero (+ position).
 */
export function gatherWgsl(withPositions: boolean): string {
  const posDecl = withPositions ? '@group(0) @binding(3) var<storage, read> pos: array<T>;' : '';
  const yBinding = withPositions ? 4 : 3;
  return /* wgsl */ `
alias T = f32;
${paramsStruct(GATHER_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<T>;
${posDecl}
@group(0) @binding(${yBinding}) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn ${withPositions ? 'gather_pos' : 'gather'}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let t = i / p.D;
  let c = i - t * p.D;
  let id = ids[t];
  // Compare as u32: negative ids wrap to huge values, so one test covers both ends.
  let local = u32(id) - p.row0;
  var v = 0.0;
  if (local < p.rows && u32(id) >= p.row0) {
    v = f32(table[local * p.D + c]);
  } else if (p.first == 0u || u32(id) < p.V) {
    return;
  }
  ${withPositions ? 'v += f32(pos[(t % p.L) * p.D + c]);' : ''}
  y[i] = T(v);
}
`;
}

export const TIMESTEP_PARAMS: ParamSchema = [['n', 'u32'], ['dim', 'u32'], ['half', 'u32'], ['flip', 'u32'], ['scale', 'f32']];

/**
 * sin/cos that stay accurate (~3e-7 abs) for |a| up to ~1e4 on any GPU: WGSL only promises 2^-11
 * absolute error inside [-π, π] and nothing outside. Cody–Waite reduction by π/2 with a 3-part split
 * (the first two parts have few mantissa bits, so k·P1 and k·P2 are exact for k < 2^13), then the
 * cephes sinf/cosf polynomials on [-π/4, π/4] and quadrant selection.
 */
export const ACCURATE_SINCOS = /* wgsl */ `
fn sincos_acc(a: f32) -> vec2<f32> {
  let k = round(a * 0.63661977236758134);
  var r = a - k * 1.5703125;
  r = r - k * 4.837512969970703125e-4;
  r = r - k * 7.54978995489188216e-8;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  switch (i32(k) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}`;

// freqs (f32 [half]) come from the host, rounded exactly like torch's f32 ops; the argument t·f·scale
// is formed here with the same two correctly-rounded f32 multiplies torch performs.
export const TIMESTEP_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(TIMESTEP_PARAMS)}
${ACCURATE_SINCOS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ts: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn timestep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let b = i / p.dim;
  let c = i - b * p.dim;
  if (c >= 2u * p.half) { y[i] = T(0.0); return; }   // odd dim: zero pad column
  let second = c >= p.half;
  let j = select(c, c - p.half, second);
  let a = (ts[b] * freqs[j]) * p.scale;
  let sc = sincos_acc(a);
  // [sin, cos], or [cos, sin] when flipped.
  y[i] = T(select(sc.x, sc.y, second != (p.flip != 0u)));
}
`;
