// GroupNorm for large groups on real GPUs. The one-workgroup-per-group kernel gives a 32-group norm
// only 32 workgroups: on an H200 the SD VAE's 30 norms at up to 128×512² took 66 ms of a 178 ms decode.
// Here each group is cut into slices: (1) every slice's count, mean and M2 (two passes over the slice),
// (2) one thread per group merges them (Chan et al.'s pairwise update: no cancellation), (3) an
// elementwise pass applies (x − mean)·rstd·γ + β and the optional SiLU.
import { Tensor } from '@fewstep/tensor';
import { ceilDiv, getPipeline, grid1d, packParams, paramsStruct, type ParamSchema } from '../runtime.js';
import { REDUCE_SUM } from './norm.wgsl.js';

const WG = 256;
const STATS_PARAMS: ParamSchema = [['units', 'u32'], ['slices', 'u32'], ['count', 'u32'], ['chunk', 'u32']];
const MERGE_PARAMS: ParamSchema = [['units', 'u32'], ['slices', 'u32'], ['eps', 'f32']];
const APPLY_PARAMS: ParamSchema = [['total', 'u32'], ['groups', 'u32'], ['cpg', 'u32'], ['spatial', 'u32'], ['flags', 'u32']];

const STATS_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(STATS_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>; // per slice: n, mean, M2

var<workgroup> red: array<f32, ${WG}>;
${REDUCE_SUM(WG)}

@compute @workgroup_size(${WG})
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x; // unit * slices + slice
  if (id >= p.units * p.slices) { return; }
  let unit = id / p.slices;
  let lo = (id % p.slices) * p.chunk;
  let hi = min(p.count, lo + p.chunk);
  let base = unit * p.count;
  var s = 0.0;
  for (var i = lo + lid; i < hi; i += ${WG}u) { s += f32(x[base + i]); }
  let n = f32(max(hi, lo) - lo);
  let mean = reduce_sum(lid, s) / max(n, 1.0);
  var q = 0.0;
  for (var i = lo + lid; i < hi; i += ${WG}u) { let t = f32(x[base + i]) - mean; q += t * t; }
  let m2 = reduce_sum(lid, q);
  if (lid == 0u) {
    part[3u * id] = n;
    part[3u * id + 1u] = mean;
    part[3u * id + 2u] = m2;
  }
}
`;

const MERGE_WGSL = /* wgsl */ `
${paramsStruct(MERGE_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>; // per unit: mean, rstd

@compute @workgroup_size(64)
fn merge(@builtin(global_invocation_id) gid: vec3<u32>) {
  let unit = gid.x;
  if (unit >= p.units) { return; }
  var n = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var s = 0u; s < p.slices; s++) {
    let j = 3u * (unit * p.slices + s);
    let nb = part[j];
    if (nb == 0.0) { continue; }
    let d = part[j + 1u] - mean;
    let nt = n + nb;
    mean += d * nb / nt;
    m2 += part[j + 2u] + d * d * n * nb / nt;
    n = nt;
  }
  stats[2u * unit] = mean;
  stats[2u * unit + 1u] = inverseSqrt(m2 / n + p.eps);
}
`;

const APPLY_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(APPLY_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

@compute @workgroup_size(${WG})
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (i >= p.total) { return; }
  let ch = i / p.spatial;           // n * C + c
  let unit = ch / p.cpg;            // n * groups + g
  let c = ch % (p.groups * p.cpg);
  var g = stats[2u * unit + 1u];
  if ((p.flags & 1u) != 0u) { g *= f32(gamma[c]); }
  var b = -stats[2u * unit] * g;
  if ((p.flags & 2u) != 0u) { b += f32(beta[c]); }
  var v = f32(x[i]) * g + b;
  if ((p.flags & 4u) != 0u) { v = v / (1.0 + exp(-v)); }
  y[i] = T(v);
}
`;

/** Groups at least this large take the split path on GPUs (below, one workgroup per group keeps up). */
export const GROUPNORM_SPLIT_MIN = 1 << 16;
const SLICE = 1 << 14; // elements per stats workgroup

/** The split GroupNorm (same contract as `groupNorm`, whose checks have already run). */
export function groupNormSplit(x: Tensor, groups: number, gamma: Tensor | null, beta: Tensor | null, eps: number, silu: boolean, y: Tensor): void {
  const device = x.device;
  const [n, c] = x.shape as [number, number];
  const units = n * groups;
  const count = x.size / units;
  const slices = ceilDiv(count, SLICE);
  const chunk = ceilDiv(count, slices);
  const part = Tensor.empty(device, [units * slices * 3], 'f32');
  const stats = Tensor.empty(device, [units * 2], 'f32');
  const xb = x.binding('groupNorm x');
  try {
    const ps = getPipeline(device, { family: 'norm/split', entry: 'stats', dtype: x.dtype, code: STATS_WGSL, storage: ['read', 'rw'] });
    device.dispatch(ps, packParams(STATS_PARAMS, { units, slices, count, chunk }), [xb, part.binding()], grid1d(units * slices), 'groupNorm stats');
    const pm = getPipeline(device, { family: 'norm/split', entry: 'merge', dtype: 'f32', code: MERGE_WGSL, storage: ['read', 'rw'] });
    device.dispatch(pm, packParams(MERGE_PARAMS, { units, slices, eps }), [part.binding(), stats.binding()], [ceilDiv(units, 64), 1, 1], 'groupNorm merge');
    const pa = getPipeline(device, { family: 'norm/split', entry: 'apply', dtype: x.dtype, code: APPLY_WGSL, storage: ['read', 'read', 'read', 'read', 'rw'] });
    const flags = (gamma ? 1 : 0) | (beta ? 2 : 0) | (silu ? 4 : 0);
    const params = packParams(APPLY_PARAMS, { total: x.size, groups, cpg: c / groups, spatial: count / (c / groups), flags });
    device.dispatch(pa, params, [xb, gamma?.binding('groupNorm gamma') ?? xb, beta?.binding('groupNorm beta') ?? xb, stats.binding(), y.binding('groupNorm y')], grid1d(ceilDiv(x.size, WG)), 'groupNorm apply');
  } finally {
    part.dispose();
    stats.dispose();
  }
}
