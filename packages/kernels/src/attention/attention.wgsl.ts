// Flash-style multi-head attention (online softmax; the Lq×Lk scores never leave the workgroup).
// Two kernels: attentionWGSL (GPUs, and CPU adapters without a fixed subgroup size), described here,
// and subgroupAttentionWGSL (CPU adapters with one: lavapipe), described at its definition.
// One workgroup per (batch·head, block of queries). Each thread owns TQ queries (1 on GPUs; more on
// CPU rasterisers, to reuse each shared read) and keeps their pre-scaled rows and output accumulators
// in private arrays of DC = ceil(D/4) vec4s. K/V tiles of BK keys are staged in workgroup memory as f32
// vec4 (zero-padded past D) and read by all threads at the same address (a broadcast). Per tile:
// scores into the thread's columns of `ss`, one rescale of the accumulators by exp2(m_old − m_new),
// then P·V. Scores live in the log2 domain (scale·log2 e folded into q) so the softmax uses exp2.
//
// Private arrays must have a constant size (WGSL forbids override-sized function arrays), so the
// source is generated per tile configuration, which is part of the pipeline key.
import { paramsStruct, type ParamSchema } from '../runtime.js';

export const ATTENTION_PARAMS: ParamSchema = [
  ['units', 'u32'], ['nqb', 'u32'], ['heads', 'u32'], ['lq', 'u32'], ['lk', 'u32'], ['d', 'u32'], ['hd', 'u32'],
  ['scale', 'f32'], // scale · log2(e)
  ['flags', 'u32'], // bit 0: causal, bit 1: key mask, bit 2: key mask stored as f16
];

/** Whether key i is masked out; the key mask is f32, or packed f16 pairs (flags bit 2). */
const KEY_MASKED = /* wgsl */ `
fn key_masked(i: u32) -> bool {
  if ((p.flags & 4u) != 0u) {
    let h = unpack2x16float(kmask[i >> 1u]);
    return select(h.x, h.y, (i & 1u) == 1u) == 0.0;
  }
  return bitcast<f32>(kmask[i]) == 0.0;
}`;

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
${KEY_MASKED}

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

/** Tile of the subgroup attention kernel (CPU adapters with a fixed subgroup size). */
export interface SgAttentionTile {
  dc: number; // vec4s per head row: ceil(D / 4)
  sg: number; // lanes = the adapter's fixed subgroup size; also keys per block
  tq: number; // queries per lane (SG·TQ queries per workgroup)
  vec: boolean; // D % 4 == 0: q/k/v/o bound as vec4 arrays
}

/**
 * Flash attention for CPU adapters (llvmpipe), without workgroup memory. There a workgroup's
 * invocations are SIMD lanes and every load whose address differs per lane — storage or workgroup
 * memory, and the shared kernel's same-address reads of its K/V tiles too — compiles to a scalar loop
 * over the lanes, while subgroupBroadcast from a constant lane is a couple of vector instructions.
 * So the workgroup is one subgroup of SG lanes; lane l owns queries qstart + l + r·SG (r < TQ), with
 * their scaled rows and output accumulators in private arrays. Per block of SG keys, lane j loads key
 * j's K and V rows once, and subgroupBroadcast(·, j) hands them to every lane for the scores and for
 * P·V: per lane and block, 2·D loads for 2·SG·TQ·D multiply-adds (the shared kernel reads one element
 * from workgroup memory per TQ ≤ 2 multiply-adds, besides staging the tiles). Online softmax per block
 * in the log2 domain with the shared kernel's SOFT/HARD sentinels; keys past the end of a partial
 * block score HARD.
 *
 * Against the shared kernel on lavapipe (2 Zen 4 cores, 8 heads, medians of 9 interleaved runs, f32 /
 * f16): Lq×Lk×D 1024×1024×80 500 → 80 ms / 503 → 78, 4096×77×40 42 → 15 / 54 → 18, 256×77×160
 * 44 → 5.2 / 48 → 6.2. Cold compile at D=80: 8.2 → 3.3 s.
 *
 * Compile time: the block body (SG keys × DC vec4s × TQ queries) is written out, since lanes must be
 * constants and the private arrays are then constant-indexed registers. Every lane-addressed load or
 * store expands in llvmpipe's IR into per-lane branches (exec mask and bounds), and the cost of LLVM's
 * passes (coroutine frame, scheduling) grows faster than linearly with the code, so every storage
 * access sits in a loop whose trip count (dcu, from the params) the compiler cannot unroll, and
 * writes or reads a private array by a dynamic index (branch-free per-lane code). Writing the K/V
 * loads out instead: D=80 4.7 s cold compile and ~20% slower; writing out the q loads and the stores
 * too: 29 s.
 */
export function subgroupAttentionWGSL({ dc, sg, tq, vec }: SgAttentionTile): string {
  const R = (f: (r: number) => string) => Array.from({ length: tq }, (_, r) => f(r)).join('\n');
  const J = (f: (j: number) => string) => Array.from({ length: sg }, (_, j) => f(j)).join('\n');
  const C = (f: (c: number) => string) => Array.from({ length: dc }, (_, c) => f(c)).join('\n');
  const scores = J((j) => `{
    ${R((r) => `var a${r} = vec4<f32>(0.0);`)}
    ${C((c) => `{ let kc = subgroupBroadcast(kr[${c}], ${j}u);
      ${R((r) => `a${r} = fma(qv[${r * dc + c}], kc, a${r});`)} }`)}
    let mk${j} = subgroupBroadcast(kmk, ${j}u);
    ${R((r) => `s[${r * sg + j}] = select(select(a${r}.x + a${r}.y + a${r}.z + a${r}.w, SOFT, mk${j} != 0u), HARD, ${j}u >= nk || (causal && t0 + ${j}u > qi[${r}]));`)}
  }`);
  // Online softmax per query: one max and one rescale (corrR) per block of SG keys.
  const softmax = R((r) => `var mx${r} = m[${r}];
    ${J((j) => `mx${r} = max(mx${r}, s[${r * sg + j}]);`)}
    let corr${r} = exp2(m[${r}] - mx${r});
    m[${r}] = mx${r};
    var ls${r} = l[${r}] * corr${r};
    ${J((j) => `s[${r * sg + j}] = exp2(s[${r * sg + j}] - mx${r}); ls${r} += s[${r * sg + j}];`)}
    l[${r}] = ls${r};`);
  // P·V, head-dim outer so each accumulator stays in registers across the block's keys.
  const pv = C((c) => `{
    ${R((r) => `var o${r} = ov[${r * dc + c}] * corr${r};`)}
    ${J((j) => `{ let vc = subgroupBroadcast(vr[${c}], ${j}u);
      ${R((r) => `o${r} = fma(vec4<f32>(s[${r * sg + j}]), vc, o${r});`)} }`)}
    ${R((r) => `ov[${r * dc + c}] = o${r};`)}
  }`);
  // With D % 4 == 0 every row starts on a vec4, so q/k/v/o bind as vec4 arrays: one vec4 access is
  // one per-lane loop on llvmpipe instead of four (~10% faster: 4096×77×40 17.5 → 15.7 ms).
  const el = vec ? 'vec4<T>' : 'T';
  const mem = vec ? `fn ldq4(row: u32, c: u32) -> vec4<f32> { return vec4<f32>(q[row / 4u + c]); }
fn ldk4(row: u32, c: u32) -> vec4<f32> { return vec4<f32>(k[row / 4u + c]); }
fn ldv4(row: u32, c: u32) -> vec4<f32> { return vec4<f32>(v[row / 4u + c]); }
fn st4(row: u32, c: u32, x: vec4<f32>) { o[row / 4u + c] = vec4<T>(x); }` : `// Element indices of vec4 c of a row, clamped into the row: past D, q reads as zero, k and v read a
// finite in-row value that meets q's zeros (K) or is never stored (V).
fn idx4(row: u32, c: u32) -> vec4<u32> { return row + min(vec4<u32>(c * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.d - 1u)); }
fn ldq4(row: u32, c: u32) -> vec4<f32> {
  let i = idx4(row, c);
  return select(vec4<f32>(0.0), vec4<f32>(f32(q[i.x]), f32(q[i.y]), f32(q[i.z]), f32(q[i.w])), vec4<u32>(c * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.d));
}
fn ldk4(row: u32, c: u32) -> vec4<f32> { let i = idx4(row, c); return vec4<f32>(f32(k[i.x]), f32(k[i.y]), f32(k[i.z]), f32(k[i.w])); }
fn ldv4(row: u32, c: u32) -> vec4<f32> { let i = idx4(row, c); return vec4<f32>(f32(v[i.x]), f32(v[i.y]), f32(v[i.z]), f32(v[i.w])); }
fn st4(row: u32, c: u32, x: vec4<f32>) {
  for (var e = 0u; e < 4u; e++) {
    if (c * 4u + e < p.d) { o[row + c * 4u + e] = T(x[e]); }
  }
}`;
  return /* wgsl */ `
alias T = f32;
${paramsStruct(ATTENTION_PARAMS)}
const DC = ${dc}u;
const SG = ${sg}u;
const TQ = ${tq}u;
const BQ = ${sg * tq}u;
const SOFT = -1.0e30;
const HARD = -3.0e38;
const INIT_M = -3.4e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<${el}>;
@group(0) @binding(2) var<storage, read> k: array<${el}>;
@group(0) @binding(3) var<storage, read> v: array<${el}>;
@group(0) @binding(4) var<storage, read> kmask: array<u32>;
@group(0) @binding(5) var<storage, read_write> o: array<${el}>;

${mem}
${KEY_MASKED}

@compute @workgroup_size(${sg})
fn attention_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) l_id: u32) {
  let unit = wid.x + wid.y * nwg.x;
  if (unit >= p.units) { return; } // uniform, so the subgroup ops below stay in uniform control flow
  let bh = unit / p.nqb;
  let qstart = (unit % p.nqb) * BQ;
  let b = bh / p.heads;
  let hoff = (bh % p.heads) * p.d;
  let causal = (p.flags & 1u) != 0u;
  let masked = (p.flags & 2u) != 0u;

  // Lane l owns queries qstart + l + r·SG (r < TQ); rows past Lq load row Lq−1 and are never written.
  var qi: array<u32, ${tq}>;
  var qv: array<vec4<f32>, ${tq * dc}>;
  var ov: array<vec4<f32>, ${tq * dc}>;
  var m: array<f32, ${tq}>;
  var l: array<f32, ${tq}>;
  ${R((r) => `qi[${r}] = qstart + l_id + ${r * sg}u; m[${r}] = INIT_M; l[${r}] = 0.0;`)}
  for (var i = 0u; i < ${tq * dc}u; i++) { ov[i] = vec4<f32>(0.0); }
  // Storage accesses stay in loops the compiler cannot unroll (dcu is not a constant): see above.
  let dcu = (p.d + 3u) / 4u;
  for (var i = 0u; i < TQ * dcu; i++) {
    let r = i / dcu;
    let c = i % dcu;
    qv[r * DC + c] = ldq4((b * p.lq + min(qstart + l_id + r * SG, p.lq - 1u)) * p.hd + hoff, c) * p.scale;
  }

  var kend = p.lk;
  if (causal) { kend = min(p.lk, qstart + BQ); }
  for (var t0 = 0u; t0 < kend; t0 += SG) {
    let nk = min(SG, kend - t0);
    let krow = (b * p.lk + t0 + min(l_id, nk - 1u)) * p.hd + hoff;
    var kr: array<vec4<f32>, DC>;
    var vr: array<vec4<f32>, DC>;
    for (var c = 0u; c < dcu; c++) { kr[c] = ldk4(krow, c); vr[c] = ldv4(krow, c); }
    var kmk = 0u;
    if (masked) { kmk = select(0u, 1u, key_masked(b * p.lk + t0 + min(l_id, nk - 1u))); }
    var s: array<f32, ${tq * sg}>;
    ${scores}
    ${softmax}
    ${pv}
  }

  for (var i = 0u; i < TQ * dcu; i++) {
    let r = i / dcu;
    let c = i % dcu;
    let qr = qstart + l_id + r * SG;
    if (qr < p.lq) { st4((b * p.lq + qr) * p.hd + hoff, c, ov[r * DC + c] / l[r]); }
  }
}
`;
}
