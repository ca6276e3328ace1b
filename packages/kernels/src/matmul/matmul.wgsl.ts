// Matmul family, llm.c-style version ladder in one file:
//   matmul_naive  — one thread per output element, straight K loop (the oracle, and fine for tiny shapes);
//   matmul_tiled  — shared-memory tiles (BM×BK of A, BK×BN of B) with a TM×TN register tile per thread.
// The tiled GEMM core is generated from three small WGSL functions (load_a, load_b, store_c) so conv2d
// reuses it as an implicit GEMM by gathering its A tile from the input image instead of a matrix.
// Storage is `T` (f32 or f16 via runtime.specialize); shared tiles and accumulation are always f32.
import { InvalidArgumentError } from '@fewstep/tensor';
import { paramsStruct, type ParamSchema } from '../runtime.js';

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
  a4?: string | undefined;
  /**
   * For the subgroup GEMM (subgroupGemmWGSL): load_a and load_b split into the part that is fixed for
   * a whole thread (per A row, per B column: hoisted out of the K loop) and the per-k part. WGSL defining
   *   struct SgRow; fn sg_row(bi: u32, m: u32) -> SgRow    (rows ≥ M may read any in-bounds value)
   *   struct SgK;   fn sg_k(bi: u32, k: u32) -> SgK        (shared by every row of a thread)
   *   fn sg_load_a(r: SgRow, q: SgK) -> f32                (= load_a; 0 for k ≥ K)
   *   struct SgCol; fn sg_col(bi: u32, n: u32) -> SgCol    (columns ≥ N may read any in-bounds value)
   *   fn sg_load_b(c: SgCol, k: u32) -> f32                (= load_b; 0 for k ≥ K)
   */
  sg: string;
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
export function tiledGemmWGSL(pieces: GemmPieces, entry: string, reg: RegTile, split?: { partBinding: number }): string {
  const { TM, TN } = reg;
  if (TM % 4 || TN % 4) throw new InvalidArgumentError('tiledGemmWGSL: TM and TN must be multiples of 4', 'reg');
  const am = TM / 4, bn = TN / 4;
  const accDecl: string[] = [], fma: string[] = [], aLoads: string[] = [], bLoads: string[] = [], stores: string[] = [];
  for (let i = 0; i < TM; i++) for (let j = 0; j < bn; j++) accDecl.push(`var c${i}_${j} = vec4<f32>();`);
  for (let i = 0; i < am; i++) aLoads.push(`let a${i} = As[abase + ${i}u];`);
  for (let j = 0; j < bn; j++) bLoads.push(`let b${j} = Bs[bbase + ${j}u];`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < bn; j++) fma.push(`c${i}_${j} = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b${j}, c${i}_${j});`);
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < bn; j++) {
      stores.push(split ? `put_part(ks, bi, row0 + ${i}u, col0 + ${j * 4}u, c${i}_${j});` : `put(bi, row0 + ${i}u, col0 + ${j * 4}u, c${i}_${j});`);
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
${split ? SPLIT_K_WGSL(split.partBinding) : ''}
@compute @workgroup_size(TX, TY)
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${split ? `let gs = wid.x + wid.y * nwg.x;
  let ks = gs / (p.tiles_m * p.tiles_n * p.batch); // this workgroup's K chunk
  if (ks >= split_count()) { return; }
  let g = gs % (p.tiles_m * p.tiles_n * p.batch);
  let kbeg = ks * KC;
  let kend = min(p.K, kbeg + KC);` : `let g = wid.x + wid.y * nwg.x;
  let kbeg = 0u;
  let kend = p.K;`}
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
  for (var k0 = kbeg; k0 < kend; k0 += BK) {
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

/**
 * Split-K (real GPUs, products with few output tiles and a long K): workgroups also split K into
 * chunks of KC (a multiple of BK, so no tile straddles two chunks) and write raw f32 partial sums to
 * `part` [splits, batch, M, N]; the `gemm_reduce` entry of the same module sums them and applies
 * store_c (alpha, bias, layout). A text encoder's [77, 1024] × [1024, 1024] otherwise runs as a few
 * dozen workgroups each walking all of K: ~110 µs, ≈1.5 TFLOP/s on an H200.
 */
const SPLIT_K_WGSL = (binding: number) => /* wgsl */ `
@group(0) @binding(${binding}) var<storage, read_write> part: array<f32>;
override KC: u32 = 256u;
fn split_count() -> u32 { return (p.K + KC - 1u) / KC; }
fn put_part(ks: u32, bi: u32, m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  let row = ((ks * p.batch + bi) * p.M + m) * p.N;
  for (var c = 0u; c < 4u; c++) {
    if (n0 + c < p.N) { part[row + n0 + c] = v[c]; }
  }
}
@compute @workgroup_size(256)
fn gemm_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  let per_batch = p.M * p.N;
  let total = per_batch * p.batch;
  if (i >= total) { return; }
  var acc = 0.0;
  for (var s = 0u; s < split_count(); s++) { acc += part[s * total + i]; }
  store_c(i / per_batch, (i % per_batch) / p.N, i % p.N, acc);
}
`;

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
    sg: `
struct SgRow { off: u32 }
fn sg_row(bi: u32, m: u32) -> SgRow { return SgRow(bi * p.a_bs + ${transA ? 'min(m, p.M - 1u)' : 'min(m, p.M - 1u) * p.K'}); }
struct SgK { off: u32, ok: bool }
fn sg_k(bi: u32, k: u32) -> SgK { return SgK(${transA ? 'min(k, p.K - 1u) * p.M' : 'min(k, p.K - 1u)'}, k < p.K); }
fn sg_load_a(r: SgRow, q: SgK) -> f32 { return select(0.0, f32(a[r.off + q.off]), q.ok); }
struct SgCol { off: u32 }
fn sg_col(bi: u32, n: u32) -> SgCol { return SgCol(bi * p.b_bs + ${transB ? 'min(n, p.N - 1u) * p.K' : 'min(n, p.N - 1u)'}); }
fn sg_load_b(c: SgCol, k: u32) -> f32 { return select(0.0, f32(b[c.off + ${transB ? 'min(k, p.K - 1u)' : 'min(k, p.K - 1u) * p.N'}]), k < p.K); }`,
    aKFast: !transA,
    bKFast: transB,
  };
}


/** Register tile of the subgroup GEMM: one subgroup (workgroup) computes R rows × SG·C columns. */
export interface SgTile {
  /** Rows per workgroup, ≤ 32 (see subgroupGemmWGSL). */
  R: number;
  /** Columns per lane (strided by the subgroup size). */
  C: number;
}

/**
 * Subgroup GEMM for CPU adapters (llvmpipe), without workgroup memory. There a workgroup's invocations
 * are SIMD lanes, and every load whose address differs per lane — storage and workgroup memory alike —
 * compiles to a scalar loop over the lanes (~12 instructions per lane, with exec-mask and bounds tests),
 * while an FMA or a subgroupBroadcast from a constant lane is one or two vector instructions. So this
 * kernel minimises lane loads per FMA: the workgroup is exactly one subgroup of SG lanes; lane l owns
 * columns n0 + l + SG·j (j < C) of R rows and loads its own B values, while A is loaded once per SG
 * k-steps (lane l fetches k0 + l of a row) and subgroupBroadcast hands each k to every lane. Per k that
 * is R + SG·C lane loads for R·SG·C FMAs (R = 32, C = 8: 96 per 2048; the 8×8-per-thread shared-memory
 * kernel does 16 shared loads per 64 FMAs plus the global→shared copies).
 *
 * The row loop has at most 32 iterations: at R = 32 llvmpipe unrolls it (seen in the generated code),
 * so acc[] becomes plain registers and stack slots; R = 48 or 64 (one or two rows per iteration) ran
 * 1.4–1.8× slower. Writing the rows out by hand instead compiles ~10× slower (23 s vs 2 s cold for
 * R = 32, C = 8) for the same speed. Per row, the C accumulators stay in registers for all SG k-steps
 * and B comes from registers or the stack (k-outer order, where every accumulator spills each step:
 * 74 vs 63 ms at 1024×640×640). Dispatch only with SG = the adapter's fixed subgroup size.
 */
export function subgroupGemmWGSL(pieces: GemmPieces, entry: string, t: SgTile & { SG: number }): string {
  const { SG, R, C } = t;
  if (R < 1 || R > 32 || C < 1) throw new InvalidArgumentError(`subgroupGemmWGSL: need 1 ≤ R ≤ 32 and C ≥ 1, got R=${R}, C=${C}`, 't');
  const cols: string[] = [], bLoads: string[] = [], body: string[] = [], stores: string[] = [];
  for (let j = 0; j < C; j++) cols.push(`let bc${j} = sg_col(bi, n0 + ${SG * j}u);`);
  for (let kk = 0; kk < SG; kk++) for (let j = 0; j < C; j++) bLoads.push(`let b${kk}_${j} = sg_load_b(bc${j}, k0 + ${kk}u);`);
  for (let j = 0; j < C; j++) body.push(`var c${j} = acc[r * ${C}u + ${j}u];`);
  for (let kk = 0; kk < SG; kk++) {
    body.push(`let x${kk} = subgroupBroadcast(a, ${kk}u);`);
    for (let j = 0; j < C; j++) body.push(`c${j} = fma(x${kk}, b${kk}_${j}, c${j});`);
  }
  for (let j = 0; j < C; j++) body.push(`acc[r * ${C}u + ${j}u] = c${j};`);
  for (let j = 0; j < C; j++) stores.push(`if (m0 + r < p.M && n0 + ${SG * j}u < p.N) { store_c(bi, m0 + r, n0 + ${SG * j}u, acc[r * ${C}u + ${j}u]); }`);
  return /* wgsl */ `
alias T = f32;
${pieces.header}
${pieces.fns}
${pieces.sg}

@compute @workgroup_size(${SG})
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) l: u32) {
  let g = wid.x + wid.y * nwg.x;
  let per_batch = p.tiles_m * p.tiles_n;
  let bi = g / per_batch;
  if (bi >= p.batch) { return; }  // uniform, so the subgroup ops below stay in uniform control flow
  let t = g % per_batch;
  let m0 = (t / p.tiles_n) * ${R}u;
  let n0 = (t % p.tiles_n) * ${SG * C}u + l;
  var rows: array<SgRow, ${R}>;
  for (var r = 0u; r < ${R}u; r++) { rows[r] = sg_row(bi, m0 + r); }
  ${cols.join('\n  ')}
  var acc: array<f32, ${R * C}>;
  for (var k0 = 0u; k0 < p.K; k0 += ${SG}u) {
    let q = sg_k(bi, k0 + l);
    // All SG×C B values of this K block first, then row by row.
    ${bLoads.join('\n    ')}
    for (var r = 0u; r < ${R}u; r++) {
      let a = sg_load_a(rows[r], q);
      ${body.join('\n      ')}
    }
  }
  for (var r = 0u; r < ${R}u; r++) {
    ${stores.join('\n    ')}
  }
}
`;
}
