// Normalisation family: GroupNorm (+ fused SiLU), LayerNorm, softmax. One workgroup per reduced unit
// (an (n, group) block, or a row); statistics accumulate in f32 with a shared-memory tree reduction.
// Mean and variance are two passes over global memory (exact mean first, then Σ(x−mean)²): one more read
// than a one-pass formula, but no cancellation when |mean| ≫ std. Variance is biased, as PyTorch's.
import { paramsStruct, type ParamSchema } from '../runtime.js';

export const NORM_WG = 256;
export const ROW_WG = 64;

// cpg = channels per group; spatial = elements per channel (a group is cpg·spatial contiguous values).
export const GROUPNORM_PARAMS: ParamSchema = [
  ['units', 'u32'], ['groups', 'u32'], ['cpg', 'u32'], ['spatial', 'u32'], ['eps', 'f32'],
  ['flags', 'u32'], // bit 0: gamma, bit 1: beta, bit 2: SiLU
];
export const ROW_PARAMS: ParamSchema = [['rows', 'u32'], ['d', 'u32'], ['eps', 'f32'], ['flags', 'u32']];

/** Tree reduction of `red` (a workgroup array of WG f32) into red[0]; ends with a barrier. */
export const REDUCE_SUM = (wg: number) => /* wgsl */ `
fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier(); // red is reused by the next reduction
  return r;
}`;

export const GROUPNORM_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(GROUPNORM_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

var<workgroup> red: array<f32, ${NORM_WG}>;
${REDUCE_SUM(NORM_WG)}

@compute @workgroup_size(${NORM_WG})
fn groupnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let unit = wid.x + wid.y * nwg.x;  // n * groups + g
  if (unit >= p.units) { return; }   // uniform per workgroup, so barriers stay uniform
  let count = p.cpg * p.spatial;
  let base = unit * count;           // groups are contiguous in [N, C, ...spatial]
  let c0 = (unit % p.groups) * p.cpg;

  var s = 0.0;
  for (var i = lid; i < count; i += ${NORM_WG}u) { s += f32(x[base + i]); }
  let mean = reduce_sum(lid, s) / f32(count);

  var q = 0.0;
  for (var i = lid; i < count; i += ${NORM_WG}u) { let t = f32(x[base + i]) - mean; q += t * t; }
  let rstd = inverseSqrt(reduce_sum(lid, q) / f32(count) + p.eps);

  // Per channel: fold mean, rstd, gamma, beta into one multiply-add (no per-element division).
  for (var c = 0u; c < p.cpg; c++) {
    var g = rstd;
    if ((p.flags & 1u) != 0u) { g *= f32(gamma[c0 + c]); }
    var b = -mean * g;
    if ((p.flags & 2u) != 0u) { b += f32(beta[c0 + c]); }
    let off = base + c * p.spatial;
    for (var i = lid; i < p.spatial; i += ${NORM_WG}u) {
      var v = f32(x[off + i]) * g + b;
      if ((p.flags & 4u) != 0u) { v = v / (1.0 + exp(-v)); }
      y[off + i] = T(v);
    }
  }
}
`;

export const LAYERNORM_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(ROW_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

var<workgroup> red: array<f32, ${ROW_WG}>;
${REDUCE_SUM(ROW_WG)}

@compute @workgroup_size(${ROW_WG})
fn layernorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; } // uniform per workgroup, so barriers stay uniform
  let base = row * p.d;
  var s = 0.0;
  for (var i = lid; i < p.d; i += ${ROW_WG}u) { s += f32(x[base + i]); }
  let mean = reduce_sum(lid, s) / f32(p.d);
  var q = 0.0;
  for (var i = lid; i < p.d; i += ${ROW_WG}u) { let t = f32(x[base + i]) - mean; q += t * t; }
  let rstd = inverseSqrt(reduce_sum(lid, q) / f32(p.d) + p.eps);
  for (var i = lid; i < p.d; i += ${ROW_WG}u) {
    var v = (f32(x[base + i]) - mean) * rstd;
    if ((p.flags & 1u) != 0u) { v *= f32(gamma[i]); }
    if ((p.flags & 2u) != 0u) { v += f32(beta[i]); }
    y[base + i] = T(v);
  }
}
`;

export const SOFTMAX_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(ROW_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

const NEG_BIG = -3.0e38;
var<workgroup> rm: array<f32, ${ROW_WG}>;
var<workgroup> rs: array<f32, ${ROW_WG}>;

@compute @workgroup_size(${ROW_WG})
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  // Online (max, sum) per thread, then merge pairs: one read for the statistics instead of two.
  var m = NEG_BIG;
  var s = 0.0;
  for (var i = lid; i < p.d; i += ${ROW_WG}u) {
    let v = f32(x[base + i]);
    let nm = max(m, v);
    s = s * exp(m - nm) + exp(v - nm);
    m = nm;
  }
  rm[lid] = m;
  rs[lid] = s;
  workgroupBarrier();
  for (var k = ${ROW_WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m2 = rm[lid + k];
      let nm = max(rm[lid], m2);
      rs[lid] = rs[lid] * exp(rm[lid] - nm) + rs[lid + k] * exp(m2 - nm);
      rm[lid] = nm;
    }
    workgroupBarrier();
  }
  let mx = rm[0];
  let inv = 1.0 / rs[0];
  for (var i = lid; i < p.d; i += ${ROW_WG}u) { y[base + i] = T(exp(f32(x[base + i]) - mx) * inv); }
}
`;

// ---- chunked kernels (CPU adapters with a fixed subgroup size: see streaming.ts) ---------------------
// A workgroup is one subgroup of WG lanes, so a reduction is one subgroupAdd (no workgroup memory, no
// barrier), and lanes walk vec4s. Statistics take one pass: sums of (x − shift) and (x − shift)² with the
// shift = the unit's first value, so |mean| ≫ std cancels no more than the two-pass form (the shifted
// mean is O(std)); each lane keeps vec4 partial sums (4·WG accumulators per unit).

/** GroupNorm with spatial % 4 == 0 (sp4 = spatial / 4); one workgroup per (n, group). */
export const GROUPNORM_CHUNKED_PARAMS: ParamSchema = [
  ['units', 'u32'], ['groups', 'u32'], ['cpg', 'u32'], ['sp4', 'u32'], ['eps', 'f32'], ['flags', 'u32'],
];

export const GROUPNORM_CHUNKED_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(GROUPNORM_CHUNKED_PARAMS)}
override WG: u32 = 8u;
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<T>>;

@compute @workgroup_size(WG)
fn groupnorm4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lid: u32) {
  let unit = wid.x + wid.y * nwg.x;  // n * groups + g
  if (unit >= p.units) { return; }   // uniform, so the subgroup ops stay in uniform control flow
  let count4 = p.cpg * p.sp4;
  let base = unit * count4;
  let shift = f32(x[base].x);
  // Two-level sums (blocks of 64 strides, then the blocks' sums): a group of 2^20 values adds ~600
  // terms per accumulator instead of 2^15.
  var s = vec4<f32>(0.0);
  var q = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < count4; k0 += 64u * WG) {
    let k1 = min(k0 + 64u * WG, count4);
    var bs = vec4<f32>(0.0);
    var bq = vec4<f32>(0.0);
    for (var k = k0; k < k1; k += WG) {
      let i = k + lid;
      if (i < k1) {
        let v = vec4<f32>(x[base + i]) - shift;
        bs += v;
        bq += v * v;
      }
    }
    s += bs;
    q += bq;
  }
  let n = f32(count4 * 4u);
  let dm = subgroupAdd(s.x + s.y + s.z + s.w) / n;
  let var_ = max(subgroupAdd(q.x + q.y + q.z + q.w) / n - dm * dm, 0.0);
  let mean = shift + dm;
  let rstd = inverseSqrt(var_ + p.eps);
  let c0 = (unit % p.groups) * p.cpg;
  for (var c = 0u; c < p.cpg; c++) {
    var g = rstd;
    if ((p.flags & 1u) != 0u) { g *= f32(gamma[c0 + c]); }
    var b = -mean * g;
    if ((p.flags & 2u) != 0u) { b += f32(beta[c0 + c]); }
    let off = base + c * p.sp4;
    for (var k = 0u; k < p.sp4; k += WG) {
      let i = k + lid;
      if (i < p.sp4) {
        var v = vec4<f32>(x[off + i]) * g + b;
        if ((p.flags & 4u) != 0u) { v = v / (1.0 + exp(-v)); }
        y[off + i] = vec4<T>(v);
      }
    }
  }
}
`;

/** LayerNorm rows with d % 4 == 0 (d4 = d / 4): LN_ROWS rows per workgroup, gamma/beta loaded once per column for all of them. */
export const LN_ROWS = 8;
export const LAYERNORM_CHUNKED_PARAMS: ParamSchema = [['rows', 'u32'], ['d4', 'u32'], ['eps', 'f32'], ['flags', 'u32']];

export const LAYERNORM_CHUNKED_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(LAYERNORM_CHUNKED_PARAMS)}
override WG: u32 = 8u;
const R = ${LN_ROWS}u;
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> gamma: array<vec4<T>>;
@group(0) @binding(3) var<storage, read> beta: array<vec4<T>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<T>>;

@compute @workgroup_size(WG)
fn layernorm4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lid: u32) {
  let r0 = (wid.x + wid.y * nwg.x) * R;
  if (r0 >= p.rows) { return; }
  let nr = min(R, p.rows - r0);
  var mean: array<f32, R>;
  var rstd: array<f32, R>;
  let n = f32(p.d4 * 4u);
  for (var r = 0u; r < R; r++) {
    if (r < nr) {
      let base = (r0 + r) * p.d4;
      let shift = f32(x[base].x);
      var s = vec4<f32>(0.0);
      var q = vec4<f32>(0.0);
      for (var k = 0u; k < p.d4; k += WG) {
        let i = k + lid;
        if (i < p.d4) {
          let v = vec4<f32>(x[base + i]) - shift;
          s += v;
          q += v * v;
        }
      }
      let dm = subgroupAdd(s.x + s.y + s.z + s.w) / n;
      mean[r] = shift + dm;
      rstd[r] = inverseSqrt(max(subgroupAdd(q.x + q.y + q.z + q.w) / n - dm * dm, 0.0) + p.eps);
    }
  }
  for (var k = 0u; k < p.d4; k += WG) {
    let i = k + lid;
    if (i < p.d4) {
      var g = vec4<f32>(1.0);
      if ((p.flags & 1u) != 0u) { g = vec4<f32>(gamma[i]); }
      var b = vec4<f32>(0.0);
      if ((p.flags & 2u) != 0u) { b = vec4<f32>(beta[i]); }
      for (var r = 0u; r < R; r++) {
        if (r < nr) {
          let o = (r0 + r) * p.d4 + i;
          y[o] = vec4<T>((vec4<f32>(x[o]) - mean[r]) * rstd[r] * g + b);
        }
      }
    }
  }
}
`;

/** Softmax rows of any length: SM_ROWS rows per workgroup of one subgroup; per lane an online (max, sum), merged by subgroupMax / subgroupAdd. */
export const SM_ROWS = 8;
export const SOFTMAX_CHUNKED_WGSL = /* wgsl */ `
alias T = f32;
${paramsStruct(ROW_PARAMS)}
override WG: u32 = 8u;
const R = ${SM_ROWS}u;
const NEG_BIG = -3.0e38;
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn softmax_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lid: u32) {
  let r0 = (wid.x + wid.y * nwg.x) * R;
  if (r0 >= p.rows) { return; }
  let nr = min(R, p.rows - r0);
  for (var r = 0u; r < nr; r++) {
    let base = (r0 + r) * p.d;
    var m = NEG_BIG;
    var s = 0.0;
    for (var k = 0u; k < p.d; k += WG) {
      let i = k + lid;
      if (i < p.d) {
        let v = f32(x[base + i]);
        let nm = max(m, v);
        s = s * exp(m - nm) + exp(v - nm);
        m = nm;
      }
    }
    let mx = subgroupMax(m);
    let inv = 1.0 / subgroupAdd(s * exp(m - mx));
    for (var k = 0u; k < p.d; k += WG) {
      let i = k + lid;
      if (i < p.d) { y[base + i] = T(exp(f32(x[base + i]) - mx) * inv); }
    }
  }
}
`;
