// Winograd convolution F(m×m, 3×3) (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural
// Networks"): a 3×3 stride-1 conv computed per m×m output tile as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)]A, where
// d is the tile's (m+2)×(m+2) input patch and g the 3×3 filter. Summed over channels, the elementwise
// product becomes (m+2)² independent GEMMs [tiles × C] · [C × O]: F(4×4, 3×3) does 36 multiplies per
// 16 outputs and channel pair where the direct conv does 144 (4×).
//   winograd_input  — one thread per (tile, c): V[ξ, t, c] = (Bᵀ d B)[ξ]   (f32)
//   winograd_filter — one thread per (o, c):    U[ξ, o, c] = (G g Gᵀ)[ξ]   (f32)
//   winograd_output — one thread per (tile, o): y[n, o, ·, ·] = Aᵀ M[·, t, o] A (+ bias, + residual, ReLU)
// The transforms are generated from the matrices below as straight-line code (constant coefficients,
// zeros skipped). Intermediates stay f32 whatever the storage type: the transforms scale values by up to
// ~100 and cancel them again, which f16 would not survive at the goldens' tolerances.
import { paramsStruct, type ParamSchema } from '../runtime.js';

export interface WinogradMatrices {
  /** Output tile side m (the input tile is m + 2). */
  m: number;
  BT: number[][];
  G: number[][];
  AT: number[][];
}

/** F(2×2, 3×3): interpolation points 0, ±1, ∞. */
export const F2: WinogradMatrices = {
  m: 2,
  BT: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
  G: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
  AT: [[1, 1, 1, 0], [0, 1, -1, -1]],
};

/** F(4×4, 3×3): interpolation points 0, ±1, ±2, ∞ (the paper's matrices). */
export const F4: WinogradMatrices = {
  m: 4,
  BT: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  G: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
};

export const WINOGRAD_PARAMS: ParamSchema = [
  ['C', 'u32'], ['H', 'u32'], ['W', 'u32'], ['O', 'u32'],
  ['OH', 'u32'], ['OW', 'u32'], ['pad', 'u32'], ['tiles_w', 'u32'],
  ['tiles_hw', 'u32'], ['t0', 'u32'], ['tc', 'u32'], ['has_bias', 'u32'],
  ['relu', 'u32'], ['has_res', 'u32'], ['o0', 'u32'], ['oc', 'u32'],
];

const HEADER = `${paramsStruct(WINOGRAD_PARAMS)}
@group(0) @binding(0) var<uniform> p: Params;`;

/** WGSL float literal for a coefficient. */
function lit(v: number): string {
  const s = String(v);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** `Σ_j coef[j] · name(j)` with zeros skipped and ±1 written as plain adds. */
function lin(coef: number[], name: (j: number) => string): string {
  const terms: string[] = [];
  coef.forEach((c, j) => {
    if (c === 0) return;
    const v = name(j);
    if (c === 1) terms.push(terms.length ? `+ ${v}` : v);
    else if (c === -1) terms.push(terms.length ? `- ${v}` : `-${v}`);
    else terms.push(`${terms.length ? '+ ' : ''}${lit(c)} * ${v}`);
  });
  return terms.length ? terms.join(' ') : '0.0';
}

/**
 * Workgroups of WG invocations, each taking ITEMS items (item i = (w·ITEMS + s)·WG + lane): on llvmpipe
 * a workgroup of 8 lanes is one SIMD pass and every workgroup has a fixed start-up cost, so fewer,
 * longer-lived workgroups go faster; GPUs get the plain one-item-per-thread grid (ITEMS = 1).
 */
export const WINOGRAD_ITEMS = 8;
const ITEMS_LOOP = (entry: string, n: string) => /* wgsl */ `
override WG: u32 = 64u;
override ITEMS: u32 = 1u;
@compute @workgroup_size(WG)
fn ${entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * nwg.x) * ITEMS;
  for (var s = 0u; s < ITEMS; s++) {
    let i = (first + s) * WG + lid;
    if (i < ${n}) { item(i); }
  }
}`;

/** Straight-line code for out = L · X · Lᵀ over `let` names (X is rows×cols via name(i, j)). */
function sandwich(L: number[][], R: number[][], x: (i: number, j: number) => string, tmp: string, out: string): string[] {
  const lines: string[] = [];
  const cols = R[0]!.length;
  // tmp = L · X (X is L's width × cols)
  for (let i = 0; i < L.length; i++) for (let j = 0; j < cols; j++) lines.push(`let ${tmp}${i}_${j} = ${lin(L[i]!, (k) => x(k, j))};`);
  // out = tmp · Rᵀ
  for (let i = 0; i < L.length; i++) for (let j = 0; j < R.length; j++) lines.push(`let ${out}${i}_${j} = ${lin(R[j]!, (k) => `${tmp}${i}_${k}`)};`);
  return lines;
}

/** Input transform: V[ξ, t − t0, c] for tiles t0 ≤ t < t0 + tc (one thread per (tile, channel)). */
export function winogradInputWGSL(f: WinogradMatrices): string {
  const a = f.m + 2;
  const loads: string[] = [];
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < a; j++) loads.push(`let d${i}_${j} = ld(base, iy0 + ${i}, ix0 + ${j});`);
  }
  const body = sandwich(f.BT, f.BT, (i, j) => `d${i}_${j}`, 't', 'v');
  const stores: string[] = [];
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) stores.push(`V[(${i * a + j}u * p.tc + tl) * p.C + c] = v${i}_${j};`);
  return /* wgsl */ `
alias T = f32;
${HEADER}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> V: array<f32>;

// Zero padding: a clamped index and a select keep the load branch-free.
fn ld(base: u32, iy: i32, ix: i32) -> f32 {
  let ok = iy >= 0 && iy < i32(p.H) && ix >= 0 && ix < i32(p.W);
  let idx = base + u32(clamp(iy, 0, i32(p.H) - 1)) * p.W + u32(clamp(ix, 0, i32(p.W) - 1));
  return select(0.0, f32(x[idx]), ok);
}

${ITEMS_LOOP('winograd_input', 'p.tc * p.C')}
fn item(i: u32) {
  let c = i % p.C;
  let tl = i / p.C;
  let t = p.t0 + tl;
  let n = t / p.tiles_hw;
  let r = t % p.tiles_hw;
  let iy0 = i32((r / p.tiles_w) * ${f.m}u) - i32(p.pad);
  let ix0 = i32((r % p.tiles_w) * ${f.m}u) - i32(p.pad);
  let base = (n * p.C + c) * p.H * p.W;
  ${loads.join('\n  ')}
  ${body.join('\n  ')}
  ${stores.join('\n  ')}
}
`;
}

/** Filter transform: U[ξ, o − o0, c] = (G g Gᵀ)[ξ] for w [O, C, 3, 3], o0 ≤ o < o0 + oc (one thread per (o, c)). */
export function winogradFilterWGSL(f: WinogradMatrices): string {
  const a = f.m + 2;
  const loads: string[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) loads.push(`let g${i}_${j} = f32(w[base + ${i * 3 + j}u]);`);
  const body = sandwich(f.G, f.G, (i, j) => `g${i}_${j}`, 't', 'u');
  const stores: string[] = [];
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) stores.push(`U[${i * a + j}u * p.oc * p.C + oc] = u${i}_${j};`);
  return /* wgsl */ `
alias T = f32;
${HEADER}
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read_write> U: array<f32>;

${ITEMS_LOOP('winograd_filter', 'p.oc * p.C')}
fn item(oc: u32) {
  let base = (p.o0 * p.C + oc) * 9u;
  ${loads.join('\n  ')}
  ${body.join('\n  ')}
  ${stores.join('\n  ')}
}
`;
}

/** Output transform: y tile = Aᵀ M A (+ bias, residual, ReLU) from M [ξ, t − t0, o − o0] (one thread per (tile, o)). */
export function winogradOutputWGSL(f: WinogradMatrices): string {
  const a = f.m + 2;
  const loads: string[] = [];
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) loads.push(`let m${i}_${j} = M[(${i * a + j}u * p.tc + tl) * p.oc + ol];`);
  const body = sandwich(f.AT, f.AT, (i, j) => `m${i}_${j}`, 't', 'y');
  const stores: string[] = [];
  for (let i = 0; i < f.m; i++) {
    for (let j = 0; j < f.m; j++) stores.push(`if (oy0 + ${i}u < p.OH && ox0 + ${j}u < p.OW) { let at = base + (oy0 + ${i}u) * p.OW + ox0 + ${j}u; out[at] = T(fin(y${i}_${j}, b, at)); }`);
  }
  return /* wgsl */ `
alias T = f32;
${HEADER}
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read> res: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

// + bias, + residual (read only when there is one: its binding is a stand-in otherwise), ReLU.
fn fin(v: f32, b: f32, at: u32) -> f32 {
  var r = v + b;
  if (p.has_res != 0u) { r += f32(res[at]); }
  return select(r, max(r, 0.0), p.relu != 0u);
}

${ITEMS_LOOP('winograd_output', 'p.tc * p.oc')}
fn item(i: u32) {
  let ol = i % p.oc;
  let o = p.o0 + ol;
  let tl = i / p.oc;
  let t = p.t0 + tl;
  let n = t / p.tiles_hw;
  let r = t % p.tiles_hw;
  let oy0 = (r / p.tiles_w) * ${f.m}u;
  let ox0 = (r % p.tiles_w) * ${f.m}u;
  let base = (n * p.O + o) * p.OH * p.OW;
  let b = select(0.0, f32(bias[min(o, arrayLength(&bias) - 1u)]), p.has_bias != 0u);
  ${loads.join('\n  ')}
  ${body.join('\n  ')}
  ${stores.join('\n  ')}
}
`;
}
