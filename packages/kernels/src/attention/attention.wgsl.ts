// Flash-style multi-head attention (online softmax; the Lq×Lk scores never leave the workgroup).
// One workgroup per (batch·head, block of queries). Each thread owns TQ queries (1 on GPUs; more on
// CPU rasterisers, to reuse each shared read) and keeps their pre-scaled rows and output accumulators
// in private arrays of DC = ceil(D/4) vec4s. K/V tiles of BK keys are staged in workgroup memory as f32
// vec4 (zero-padded past D) and read by all threads at the same address (a broadcast). Per tile:
// scores into the thread's columns of `ss`, one rescale of the accumulators by exp2(m_old − m_new),
// then P·V. Scores live in the log2 domain (scale·log2 e folded into q) so the softmax uses exp2.
//
// Private arrays must have a constant size (WGSL forbids override-sized function arrays), so the
// source is generated per tile configuration, which is part of the pipeline key.
import { paramsStruct, type ParamSchema } from '../runtime';

export const ATTENTION_PARAMS: ParamSchema = [
  ['units', 'u32'], ['nqb', 'u32'], ['heads', 'u32'], ['lq', 'u32'], ['lk', 'u32'], ['d', 'u32'], ['hd', 'u32'],
  ['scale', 'f32'], // scale · log2(e)
  ['flags', 'u32'], // bit 0: causal, bit 1: key mask, bit 2: key mask stored as f16
];

export interface AttentionTiles {
  dc: number; // vec4s per head row: ceil(D / 4)
  nt: number; // threads per workgroup
  tq: number; // queries per thread (BQ = nt·tq queries per workgroup)
  bk: number; // keys per staged tile
}

/** WGSL for one tile configuration. */
export function attentionWGSL({ dc, nt, tq, bk }: AttentionTiles): string {
  const bq = nt * tq;
  return /* wgsl */ `
alias T = f32;
${paramsStruct(ATTENTION_PARAMS)}
const DC = ${dc}u;
const NT = ${nt}u;
const TQ = ${tq}u;
const BQ = ${bq}u;
const BK = ${bk}u;
// Finite sentinels (some compilers treat infinities as undefined). A key-masked score is SOFT: it
// loses its value like transformers' finfo.min bias, so an all-masked row averages uniformly; a causal
// one is HARD and never wins the max against a real or soft score; INIT_M sits below both.
const SOFT = -1.0e30;
const HARD = -3.0e38;
const INIT_M = -3.4e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> kmask: array<u32>; // f32 or packed f16 words, per flags
@group(0) @binding(5) var<storage, read_write> o: array<T>;

var<workgroup> ks: array<vec4<f32>, ${bk * dc}>;
var<workgroup> vs: array<vec4<f32>, ${bk * dc}>;
var<workgroup> kmasked: array<u32, ${bk}>;
var<workgroup> ss: array<f32, ${bk * bq}>;

// Zero past D (and past the keys of a partial tile); the index is clamped rather than branched on.
fn ldq4(row: u32, d0: u32) -> vec4<f32> {
  let e = vec4<u32>(d0, d0 + 1u, d0 + 2u, d0 + 3u);
  let ok = e < vec4<u32>(p.d);
  let i = row + min(e, vec4<u32>(p.d - 1u));
  return select(vec4<f32>(0.0), vec4<f32>(f32(q[i.x]), f32(q[i.y]), f32(q[i.z]), f32(q[i.w])), ok);
}
fn ldkv4(row: u32, d0: u32, key_ok: bool, is_v: bool) -> vec4<f32> {
  let e = vec4<u32>(d0, d0 + 1u, d0 + 2u, d0 + 3u);
  let ok = (e < vec4<u32>(p.d)) & vec4<bool>(key_ok);
  let i = row + min(e, vec4<u32>(p.d - 1u));
  var x: vec4<f32>;
  if (is_v) { x = vec4<f32>(f32(v[i.x]), f32(v[i.y]), f32(v[i.z]), f32(v[i.w])); }
  else { x = vec4<f32>(f32(k[i.x]), f32(k[i.y]), f32(k[i.z]), f32(k[i.w])); }
  return select(vec4<f32>(0.0), x, ok);
}
fn key_masked(i: u32) -> bool {
  if ((p.flags & 4u) != 0u) {
    let h = unpack2x16float(kmask[i >> 1u]);
    return select(h.x, h.y, (i & 1u) == 1u) == 0.0;
  }
  return bitcast<f32>(kmask[i]) == 0.0;
}

@compute @workgroup_size(${nt})
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let unit = wid.x + wid.y * nwg.x;
  if (unit >= p.units) { return; } // uniform per workgroup
  let bh = unit / p.nqb;
  let qstart = (unit % p.nqb) * BQ;
  let b = bh / p.heads;
  let hoff = (bh % p.heads) * p.d;
  let causal = (p.flags & 1u) != 0u;

  // Thread lid owns queries qstart + lid + r·NT (r < TQ): its query rows (scaled) and accumulators.
  // Rows past Lq load row Lq−1 and are never written.
  var qv: array<vec4<f32>, ${tq * dc}>;
  var ov: array<vec4<f32>, ${tq * dc}>;
  var m: array<f32, ${tq}>;
  var l: array<f32, ${tq}>;
  for (var r = 0u; r < TQ; r++) {
    let qrow = (b * p.lq + min(qstart + lid + r * NT, p.lq - 1u)) * p.hd + hoff;
    for (var c = 0u; c < DC; c++) {
      qv[r * DC + c] = ldq4(qrow, c * 4u) * p.scale;
      ov[r * DC + c] = vec4<f32>(0.0);
    }
    m[r] = INIT_M;
    l[r] = 0.0;
  }

  // Causal: keys past the block's last query are masked for every thread, so skip their tiles.
  var kend = p.lk;
  if (causal) { kend = min(p.lk, qstart + BQ); }
  for (var t0 = 0u; t0 < kend; t0 += BK) {
    let nk = min(BK, kend - t0);
    workgroupBarrier(); // the previous tile is consumed
    for (var i = lid; i < BK * DC; i += NT) {
      let j = i / DC;
      let d0 = (i % DC) * 4u;
      let row = (b * p.lk + t0 + min(j, nk - 1u)) * p.hd + hoff;
      ks[i] = ldkv4(row, d0, j < nk, false);
      vs[i] = ldkv4(row, d0, j < nk, true);
    }
    if (lid < BK) {
      kmasked[lid] = select(0u, 1u, (p.flags & 2u) != 0u && lid < nk && key_masked(b * p.lk + t0 + lid));
    }
    workgroupBarrier();

    // Scores. K is read at a workgroup-uniform address (a broadcast) and reused for TQ queries.
    var tmax: array<f32, ${tq}>;
    for (var r = 0u; r < TQ; r++) { tmax[r] = m[r]; }
    for (var j = 0u; j < nk; j++) {
      // Zeroed by hand: lavapipe was seen to keep a loop-local array's value across iterations.
      var acc: array<vec4<f32>, ${tq}>;
      for (var r = 0u; r < TQ; r++) { acc[r] = vec4<f32>(0.0); }
      for (var c = 0u; c < DC; c++) {
        let kc = ks[j * DC + c];
        for (var r = 0u; r < TQ; r++) { acc[r] = fma(qv[r * DC + c], kc, acc[r]); }
      }
      for (var r = 0u; r < TQ; r++) {
        var s = acc[r].x + acc[r].y + acc[r].z + acc[r].w;
        if (kmasked[j] != 0u) { s = SOFT; }
        if (causal && t0 + j > qstart + lid + r * NT) { s = HARD; }
        ss[j * BQ + r * NT + lid] = s;
        tmax[r] = max(tmax[r], s);
      }
    }
    // One rescale per tile, then P·V with V likewise read once per TQ queries.
    for (var r = 0u; r < TQ; r++) {
      let corr = exp2(m[r] - tmax[r]);
      m[r] = tmax[r];
      l[r] *= corr;
      for (var c = 0u; c < DC; c++) { ov[r * DC + c] *= corr; }
    }
    for (var j = 0u; j < nk; j++) {
      var pj: array<f32, ${tq}>;
      for (var r = 0u; r < TQ; r++) {
        pj[r] = exp2(ss[j * BQ + r * NT + lid] - m[r]);
        l[r] += pj[r];
      }
      for (var c = 0u; c < DC; c++) {
        let vc = vs[j * DC + c];
        for (var r = 0u; r < TQ; r++) { ov[r * DC + c] = fma(vec4<f32>(pj[r]), vc, ov[r * DC + c]); }
      }
    }
  }

  for (var r = 0u; r < TQ; r++) {
    let qi = qstart + lid + r * NT;
    if (qi < p.lq) {
      let inv = 1.0 / l[r];
      let orow = (b * p.lq + qi) * p.hd + hoff;
      for (var c = 0u; c < DC; c++) {
        let val = ov[r * DC + c] * inv;
        for (var e = 0u; e < 4u; e++) {
          if (c * 4u + e < p.d) { o[orow + c * 4u + e] = T(val[e]); }
        }
      }
    }
  }
}
`;
}
