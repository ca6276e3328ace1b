// Conv2d family (NCHW, zero padding):
//   conv2d_direct — one thread per output value, loops over C·kh·kw (the oracle);
//   conv2d (tiled) — implicit GEMM on the matmul family's tiled core: M = N·H'·W' output pixels,
//     N = O output channels, K = C·kh·kw. load_a gathers input pixels on the fly into the shared
//     A tile (no im2col buffer); the weight [O, C·kh·kw] is the GEMM's B read transposed.
import { paramsStruct, type ParamSchema } from '../runtime.js';
import type { GemmPieces } from '../matmul/matmul.wgsl.js';

export const CONV_PARAMS: ParamSchema = [
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['tiles_m', 'u32'],
  ['tiles_n', 'u32'], ['batch', 'u32'], ['alpha', 'f32'], ['has_bias', 'u32'],
  ['C', 'u32'], ['H', 'u32'], ['W', 'u32'], ['OH', 'u32'],
  ['OW', 'u32'], ['KH', 'u32'], ['KW', 'u32'], ['stride', 'u32'],
  ['pad', 'u32'], ['relu', 'u32'], // relu: fused max(·, 0) after the bias
];

const HEADER = `${paramsStruct(CONV_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;`;

/** GEMM pieces: A[m][k] = x[n, c, oh·s − pad + ky, ow·s − pad + kx], B[k][o] = w[o, k], C → y[n, o, oh, ow]. */
export const CONV_GEMM_PIECES: GemmPieces = {
  header: HEADER,
  fns: `
fn load_a(bi: u32, m: u32, k: u32) -> f32 {
  let ohw = p.OH * p.OW;
  let khw = p.KH * p.KW;
  let n = m / ohw;
  let pix = m % ohw;
  let c = k / khw;
  let r = k % khw;
  let ih = i32((pix / p.OW) * p.stride + r / p.KW) - i32(p.pad);
  let iw = i32((pix % p.OW) * p.stride + r % p.KW) - i32(p.pad);
  let ok = m < p.M && k < p.K && ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
  // Clamped index + select keeps the gather branch-free; the clamp keeps it inside x.
  let idx = ((min(n, (p.M - 1u) / ohw) * p.C + min(c, p.C - 1u)) * p.H + u32(clamp(ih, 0, i32(p.H) - 1))) * p.W + u32(clamp(iw, 0, i32(p.W) - 1));
  return select(0.0, f32(x[idx]), ok);
}
fn load_b(bi: u32, k: u32, o: u32) -> f32 {
  let v = f32(w[min(o, p.N - 1u) * p.K + min(k, p.K - 1u)]);
  return select(0.0, v, k < p.K && o < p.N);
}
fn store_c(bi: u32, m: u32, o: u32, v: f32) {
  let ohw = p.OH * p.OW;
  var r = v * p.alpha;
  if (p.has_bias != 0u) { r += f32(bias[o]); }
  if (p.relu != 0u) { r = max(r, 0.0); }
  y[((m / ohw) * p.N + o) * ohw + m % ohw] = T(r);
}`,
  // A-tile rows: (n, oy, ox) of 4 adjacent output pixels once per thread; each K step then only splits
  // k into (c, ky, kx) once per 4 gathers. A row past M gets ih0 far below 0, so every k reads 0.
  a4: `
struct ARow { base: vec4<u32>, ih0: vec4<i32>, iw0: vec4<i32> }
fn a_row(bi: u32, m: u32) -> ARow {
  let ohw = p.OH * p.OW;
  let mv = vec4<u32>(m) + vec4<u32>(0u, 1u, 2u, 3u);
  let mc = min(mv, vec4<u32>(p.M - 1u));
  let n = mc / ohw;
  let pix = mc % ohw;
  let oy = pix / p.OW;
  let ox = pix % p.OW;
  let ih0 = select(vec4<i32>(-0x40000000), vec4<i32>(oy * p.stride) - i32(p.pad), mv < vec4<u32>(p.M));
  return ARow(n * (p.C * p.H * p.W), ih0, vec4<i32>(ox * p.stride) - i32(p.pad));
}
fn load_a4(r: ARow, k: u32) -> vec4<f32> {
  let kc = min(k, p.K - 1u);
  let khw = p.KH * p.KW;
  let c = kc / khw;
  let rr = kc - c * khw;
  let ky = rr / p.KW;
  let kx = rr - ky * p.KW;
  let ih = r.ih0 + i32(ky);
  let iw = r.iw0 + i32(kx);
  let ok = (ih >= vec4<i32>(0)) & (ih < vec4<i32>(i32(p.H))) & (iw >= vec4<i32>(0)) & (iw < vec4<i32>(i32(p.W))) & vec4<bool>(k < p.K);
  let idx = r.base + c * (p.H * p.W) + vec4<u32>(clamp(ih, vec4<i32>(0), vec4<i32>(i32(p.H) - 1))) * p.W + vec4<u32>(clamp(iw, vec4<i32>(0), vec4<i32>(i32(p.W) - 1)));
  return select(vec4<f32>(0.0), vec4<f32>(f32(x[idx.x]), f32(x[idx.y]), f32(x[idx.z]), f32(x[idx.w])), ok);
}`,
  // Subgroup GEMM split: an output pixel's (n, oy, ox) once per row and thread, k's (c, ky, kx) once per
  // lane and K block; each gather is then two adds, a bounds test and the load. Out-of-range k gets
  // ky = −2³⁰ (so ih < 0); past-M rows read clamped pixels that are never stored.
  sg: `
struct SgRow { off: i32, ih0: i32, iw0: i32 }
fn sg_row(bi: u32, m: u32) -> SgRow {
  let ohw = p.OH * p.OW;
  let mc = min(m, p.M - 1u);
  let pix = mc % ohw;
  let ih0 = i32((pix / p.OW) * p.stride) - i32(p.pad);
  let iw0 = i32((pix % p.OW) * p.stride) - i32(p.pad);
  return SgRow(i32((mc / ohw) * p.C * p.H * p.W) + ih0 * i32(p.W) + iw0, ih0, iw0);
}
struct SgK { off: i32, ky: i32, kx: i32 }
fn sg_k(bi: u32, k: u32) -> SgK {
  let khw = p.KH * p.KW;
  let kc = min(k, p.K - 1u);
  let c = kc / khw;
  let rr = kc - c * khw;
  let ky = rr / p.KW;
  let kx = rr - ky * p.KW;
  return SgK(i32(c * p.H * p.W + ky * p.W + kx), select(-0x40000000, i32(ky), k < p.K), i32(kx));
}
fn sg_load_a(r: SgRow, q: SgK) -> f32 {
  let ok = u32(r.ih0 + q.ky) < p.H && u32(r.iw0 + q.kx) < p.W;
  return select(0.0, f32(x[u32(select(0, r.off + q.off, ok))]), ok);
}
struct SgCol { off: u32 }
fn sg_col(bi: u32, o: u32) -> SgCol { return SgCol(min(o, p.N - 1u) * p.K); }
fn sg_load_b(c: SgCol, k: u32) -> f32 { return select(0.0, f32(w[c.off + min(k, p.K - 1u)]), k < p.K); }`,
  // Adjacent m are adjacent output pixels (adjacent input columns at stride 1): walk m when loading.
  aKFast: false,
  bKFast: true,
};

/** Direct convolution, one thread per output value: the oracle for the implicit GEMM. */
export const CONV_DIRECT_WGSL = /* wgsl */ `
alias T = f32;
${HEADER}

@compute @workgroup_size(256)
fn conv2d_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  let ohw = p.OH * p.OW;
  if (i >= p.M * p.N) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let o = (i / ohw) % p.N;
  let n = i / (ohw * p.N);
  var acc = 0.0;
  for (var c = 0u; c < p.C; c++) {
    for (var ky = 0u; ky < p.KH; ky++) {
      let ih = i32(oh * p.stride + ky) - i32(p.pad);
      if (ih < 0 || ih >= i32(p.H)) { continue; }
      for (var kx = 0u; kx < p.KW; kx++) {
        let iw = i32(ow * p.stride + kx) - i32(p.pad);
        if (iw < 0 || iw >= i32(p.W)) { continue; }
        acc += f32(x[((n * p.C + c) * p.H + u32(ih)) * p.W + u32(iw)]) * f32(w[((o * p.C + c) * p.KH + ky) * p.KW + kx]);
      }
    }
  }
  if (p.has_bias != 0u) { acc += f32(bias[o]); }
  if (p.relu != 0u) { acc = max(acc, 0.0); }
  y[i] = T(acc);
}
`;
