import { Tensor } from '@fewstep/tensor';
import { ceilDiv, getPipeline, grid1d, packParams } from '../runtime.js';
import { isCpuAdapter, matmul } from '../matmul/matmul.js';
import { kernelSettings } from '../settings.js';
import { F2, F4, WINOGRAD_ITEMS, WINOGRAD_PARAMS, winogradFilterWGSL, winogradInputWGSL, winogradOutputWGSL, type WinogradMatrices } from './winograd.wgsl.js';

export type WinogradTile = 2 | 4;

const MATRICES: Record<WinogradTile, WinogradMatrices> = { 2: F2, 4: F4 };
const sources = new Map<string, string>();
function source(kind: 'input' | 'filter' | 'output', m: WinogradTile): string {
  const key = `${kind}${m}`;
  let s = sources.get(key);
  if (!s) {
    const f = MATRICES[m];
    s = kind === 'input' ? winogradInputWGSL(f) : kind === 'filter' ? winogradFilterWGSL(f) : winogradOutputWGSL(f);
    sources.set(key, s);
  }
  return s;
}

/**
 * Bytes of each f32 intermediate per chunk: the input transform of a 64-channel 512² map is ~150 MB and
 * the transformed filter of a 1280×1280 conv 236 MB, so output channels and tiles go through in chunks of
 * equal size. Small caps keep what the pool retains between convs small (with 32/64 MiB caps the UNet's
 * pool peak grew by ~440 MB); the GEMMs still get hundreds of rows per chunk.
 */
export const WINOGRAD_CHUNK_BYTES = 8 << 20;
export const WINOGRAD_FILTER_CHUNK_BYTES = 16 << 20;

/** n items in equal chunks of at most `cap`: the chunk size. */
const balanced = (n: number, cap: number) => Math.ceil(n / Math.ceil(n / Math.max(1, Math.min(n, cap))));

/**
 * 3×3 stride-1 conv2d by Winograd F(m×m, 3×3) (see winograd.wgsl.ts). x [N, C, H, W], w [O, C, 3, 3],
 * already validated by conv2d. Per chunk of output channels: filter transform; then per chunk of
 * output tiles: input transform → (m+2)² batched GEMMs on the matmul kernels → output transform with
 * bias, residual and ReLU.
 */
export function conv2dWinograd(x: Tensor, w: Tensor, y: Tensor, o: { padding: number; bias?: Tensor | undefined; residual?: Tensor | undefined; relu: boolean; m: WinogradTile; label: string }): void {
  const device = x.device, dtype = x.dtype;
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const O = w.shape[0]!;
  const [, , OH, OW] = y.shape as [number, number, number, number];
  const m = o.m, a = m + 2, xi = a * a;
  const tilesW = ceilDiv(OW, m), tilesHW = ceilDiv(OH, m) * tilesW, T = N * tilesHW;
  const { winogradChunkTiles, winogradChunkChannels } = kernelSettings(device).conv;
  const ocMax = balanced(O, winogradChunkChannels ?? Math.floor(WINOGRAD_FILTER_CHUNK_BYTES / (4 * xi * C)));
  const tcMax = balanced(T, winogradChunkTiles ?? Math.floor(WINOGRAD_CHUNK_BYTES / (4 * xi * Math.max(C, ocMax))));
  const base = { C, H, W, O, OH, OW, pad: o.padding, tiles_w: tilesW, tiles_hw: tilesHW, has_bias: o.bias ? 1 : 0, has_res: o.residual ? 1 : 0, relu: o.relu ? 1 : 0 };
  // CPU adapters: 8-lane workgroups of WINOGRAD_ITEMS items each (see ITEMS_LOOP); GPUs: 64 threads, one item each.
  const [WG, ITEMS] = isCpuAdapter(device) ? [8, WINOGRAD_ITEMS] : [64, 1];
  const pipe = (kind: 'input' | 'filter' | 'output', storage: ('read' | 'rw')[]) =>
    getPipeline(device, { family: `conv2d/winograd${m}`, entry: `winograd_${kind}`, dtype, code: source(kind, m), storage, overrides: { WG, ITEMS } });
  const grid = (items: number) => grid1d(ceilDiv(items, WG * ITEMS));

  for (let o0 = 0; o0 < O; o0 += ocMax) {
    const oc = Math.min(ocMax, O - o0);
    const U = Tensor.empty(device, [xi, oc, C], 'f32');
    try {
      device.dispatch(pipe('filter', ['read', 'rw']), packParams(WINOGRAD_PARAMS, { ...base, o0, oc, t0: 0, tc: 0 }), [w.binding('conv2d w'), U.binding('winograd U')], grid(oc * C), `${o.label} (winograd filter)`);
      for (let t0 = 0; t0 < T; t0 += tcMax) {
        const tc = Math.min(tcMax, T - t0);
        const params = packParams(WINOGRAD_PARAMS, { ...base, o0, oc, t0, tc });
        const V = Tensor.empty(device, [xi, tc, C], 'f32');
        let M: Tensor | undefined;
        try {
          device.dispatch(pipe('input', ['read', 'rw']), params, [x.binding('conv2d x'), V.binding('winograd V')], grid(tc * C), `${o.label} (winograd input)`);
          M = matmul(V, U, { transB: true });
          device.dispatch(pipe('output', ['read', 'read', 'read', 'rw']), params, [M.binding('winograd M'), (o.bias ?? M).binding('conv2d bias'), (o.residual ?? M).binding('conv2d residual'), y.binding('conv2d out')], grid(tc * oc), `${o.label} (winograd output)`);
        } finally {
          V.dispose();
          M?.dispose();
        }
      }
    } finally {
      U.dispose();
    }
  }
}
