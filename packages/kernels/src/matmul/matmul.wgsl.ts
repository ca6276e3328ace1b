// Matmul family, llm.c-style version ladder in one file:
//   matmul_naive  — one thread per output element, straight K loop (the oracle, and fine for tiny shapes);
//   matmul_tiled  — shared-memory tiles (BM×BK of A, BK×BN of B) with a TM×TN register tile per thread.
// The tiled GEMM core is generated from three small WGSL functions (load_a, load_b, store_c) so conv2d
// reuses it as an implicit GEMM by gathering its A tile from the input image instead of a matrix.
// Storage is `T` (f32 or f16 via runtime.specialize); shared tiles and accumulation are always f32.
import { paramsStruct, type ParamSchema } from '../runtime';

export const GEMM_PARAMS: ParamSchema = [
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['tiles_m', 'u32'],
  ['tiles_n', 'u32'], ['a_bs', 'u32'], ['b_bs', 'u32'], ['c_bs', 'u32'],
  ['alpha', 'f32'], ['has_bias', 'u32'], ['batch', 'u32'],
];

/** Per-thread register tile (compile-time: it sizes private registers, which overrides cannot). */
export interface RegTile {
  TM: number;
  TN: number;
}

/**
 * The variant-specific pieces a GEMM needs. Each is WGSL text defining:
 *   fn load_a(b: u32, m: u32, k: u32) -> f32   (0 outside the problem)
 *   fn load_b(b: u32, k: u32, n: u32) -> f32   (0 outside the problem)
 *   fn store_c(b: u32, m: u32, n: u32, v: f32) (called only in bounds; applies alpha/bias)
 * `aKFast`/`bKFast`: whether consecutive k are adjacent in memory, which decides how threads walk the
 * tile while loading it (adjacent threads should touch adjacent addresses).
 */
export interface GemmPieces {
  /** Params struct, bindings and helpers; must declare `p` with fields M, N, K, tiles_m, tiles_n. */
  header: string;
  fns: string;
  aKFast: boolean;
  bKFast: boolean;
  /**
   * Optional, only when !aKFast: WGSL defining `struct ARow`, `fn a_row(b: u32, m: u32) -> ARow` and
   * `fn load_a4(r: ARow, k: u32) -> vec4<f32>` (= load_a at m..m+3, k). Each thread then loads the
   * same 4 rows of the A tile at every K step, so a_row's per-row index math (conv: n, oy, ox) runs
   * once per thread instead of once per gathered element. Needs NT % (BM / 4) == 0 (see a4Fits).
   */
  a4?: string;
}

/** Whether the a4 loader walk fits a tiling: every thread keeps one fixed vec4 row slot of the A tile. */
export function a4Fits(t: RegTile & { TX: number }): boolean {
  return (4 * t.TX) % t.TM === 0;
}

/**
 * Shared-memory tiled GEMM. Workgroup = TX×TY threads (overrides), tile = (TY·TM)×(TX·TN), K step BK
 * (override). Thread (tx, ty) owns rows ty·TM.. and columns tx·TN.., read from shared memory as vec4s.
 * Workgroups are numbered linearly (batch-major) so any problem size fits the 65,535 grid limit.
 */
export function tiledGemmWGSL(pieces: GemmPieces, entry: string, reg: RegTile): string {
  const { TM, TN } = reg;
  if (TM % 4 || TN % 4) throw new Error('tiledGemmWGSL: TM and TN must be multiples of 4');
  const am = TM / 4, bn = TN / 4;
  const accDecl: string[] = [], fma: string[] = [], aLoads: string[] = [], bLoads: string[] = [], stores: string[] = [];
  for (let i = 0; i < TM; i++) for (let j = 0; j < bn; j++) accDecl.push(`var c${i}_${j} = vec4<f32>();`);
  for (let i = 0; i < am; i++) aLoads.push(`let a${i} = As[abase + ${i}u];`);
  for (let j = 0; j < bn; j++) bLoads.push(`let b${j} = Bs[bbase + ${j}u];`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < bn; j++) fma.push(`c${i}_${j} = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b${j}, c${i}_${j});`);
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < bn; j++) {
      stores.push(`put(bi, row0 + ${i}u, col0 + ${j * 4}u, c${i}_${j});`);
    }
  }
  // Loader walk: the k-fast operand steps k across adjacent threads, the other steps m (or n).
  // Each loader step fills one whole vec4 of shared memory (4 adjacent m or n at one k): one shared
  // store instead of four partial ones, which on llvmpipe is a per-lane loop each.
  const aIdx = pieces.aKFast ? 'let kk = e % BK; let m4 = e / BK;' : 'let m4 = e % (BM / 4u); let kk = e / (BM / 4u);';
  const useA4 = !pieces.aKFast && pieces.a4 !== undefined;
  const aSetup = useA4 ? `let am4 = lid % (BM / 4u);
  let arow = a_row(bi, m0 + am4 * 4u);` : '';
  const aLoop = useA4 ? `for (var kk = lid / (BM / 4u); kk < BK; kk += NT / (BM / 4u)) {
      As[kk * (BM / 4u) + am4] = load_a4(arow, k0 + kk);
    }` : `for (var e = lid; e < BM * BK / 4u; e += NT) {
      ${aIdx}
      let m = m0 + m4 * 4u;
      let k = k0 + kk;
      As[kk * (BM / 4u) + m4] = vec4<f32>(load_a(bi, m, k), load_a(bi, m + 1u, k), load_a(bi, m + 2u, k), load_a(bi, m + 3u, k));
    }`;
  const bIdx = pieces.bKFast ? 'let kk = e % BK; let n4 = e / BK;' : 'let n4 = e % (BN / 4u); let kk = e / (BN / 4u);';
  return /* wgsl */ `
alias T = f32;
${pieces.header}
${pieces.fns}
${useA4 ? pieces.a4 : ''}

override TX: u32 = 16u;
override TY: u32 = 16u;
override BK: u32 = 16u;
const TM = ${TM}u;
const TN = ${TN}u;
override BM: u32 = TY * TM;
override BN: u32 = TX * TN;
override NT: u32 = TX * TY;

// k-major tiles so a thread's TM rows (TN columns) at one k are TM/4 (TN/4) adjacent vec4s.
var<workgroup> As: array<vec4<f32>, BK * TY * TM / 4u>;
var<workgroup> Bs: array<vec4<f32>, BK * TX * TN / 4u>;

fn put(bi: u32, m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n0 + c < p.N) { store_c(bi, m, n0 + c, v[c]); }
  }
}

@compute @workgroup_size(TX, TY)
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  let per_batch = p.tiles_m * p.tiles_n;
  let bi = g / per_batch;
  if (bi >= p.batch) { return; }  // grid1d may round the grid up; uniform, so before barriers is fine
  let t = g % per_batch;
  let m0 = (t / p.tiles_n) * BM;
  let n0 = (t % p.tiles_n) * BN;
  let tx = lid3.x;
  let ty = lid3.y;
  ${accDecl.join('\n  ')}
  ${aSetup}
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    ${aLoop}
    for (var e = lid; e < BN * BK / 4u; e += NT) {
      ${bIdx}
      let n = n0 + n4 * 4u;
      let k = k0 + kk;
      Bs[kk * (BN / 4u) + n4] = vec4<f32>(load_b(bi, k, n), load_b(bi, k, n + 1u), load_b(bi, k, n + 2u), load_b(bi, k, n + 3u));
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let abase = (k * BM + ty * TM) / 4u;
      let bbase = (k * BN + tx * TN) / 4u;
      ${aLoads.join('\n      ')}
      ${bLoads.join('\n      ')}
      ${fma.join('\n      ')}
    }
    workgroupBarrier();
  }
  let row0 = m0 + ty * TM;
  let col0 = n0 + tx * TN;
  ${stores.join('\n  ')}
}
`;
}

/** One thread per output element: the oracle the tiled kernel is checked against. */
export function naiveGemmWGSL(pieces: GemmPieces, entry: string): string {
  return /* wgsl */ `
alias T = f32;
${pieces.header}
${pieces.fns}

@compute @workgroup_size(256)
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  let per_batch = p.M * p.N;
  if (i >= per_batch * p.batch) { return; }
  let bi = i / per_batch;
  let m = (i % per_batch) / p.N;
  let n = i % p.N;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc = fma(load_a(bi, m, k), load_b(bi, k, n), acc); }
  store_c(bi, m, n, acc);
}
`;
}

/** The plain batched-matmul pieces; transA/transB only change the index math and the loader walk. */
export function matmulPieces(transA: boolean, transB: boolean): GemmPieces {
  return {
    header: `${paramsStruct(GEMM_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> c: array<T>;`,
    fns: `
// Clamped index + select rather than an early return: branch-free, so the loader stays in uniform
// control flow.
fn load_a(bi: u32, m: u32, k: u32) -> f32 {
  let mc = min(m, p.M - 1u);
  let kc = min(k, p.K - 1u);
  let v = f32(a[bi * p.a_bs + ${transA ? 'kc * p.M + mc' : 'mc * p.K + kc'}]);
  return select(0.0, v, m < p.M && k < p.K);
}
fn load_b(bi: u32, k: u32, n: u32) -> f32 {
  let kc = min(k, p.K - 1u);
  let nc = min(n, p.N - 1u);
  let v = f32(b[bi * p.b_bs + ${transB ? 'nc * p.K + kc' : 'kc * p.N + nc'}]);
  return select(0.0, v, k < p.K && n < p.N);
}
fn store_c(bi: u32, m: u32, n: u32, v: f32) {
  var r = v * p.alpha;
  if (p.has_bias != 0u) { r += f32(bias[n]); }
  c[bi * p.c_bs + m * p.N + n] = T(r);
}`,
    aKFast: !transA,
    bKFast: transB,
  };
}
