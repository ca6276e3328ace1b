import { InvalidArgumentError, ShapeError, Tensor, UnsupportedError, shapeStr, type Device } from '@fewstep/tensor';
import { ceilDiv, checkDType, getPipeline, grid1d, packParams, sameDType } from '../runtime.js';
import { dispatchGemm, isCpuAdapter, type GemmVariant } from '../matmul/matmul.js';
import { kernelSettings } from '../settings.js';
import { add, relu } from '../elementwise/elementwise.js';
import { conv2dWinograd, type WinogradTile } from './winograd.js';
import { CONV_DIRECT_WGSL, CONV_GEMM_PIECES, CONV_PARAMS } from './conv2d.wgsl.js';

export interface Conv2dOptions {
  stride?: number | undefined;
  padding?: number | undefined;
  bias?: Tensor | undefined;
  /**
   * Fused ReLU on the output (conv → relu in one pass). On lavapipe a separate ReLU over TAESD's
   * 64×512² activations cost ~17 ms each (31 of them: ~0.55 s of a 5.4 s decode).
   */
  relu?: boolean | undefined;
  /**
   * Added to the output before the ReLU (shape and dtype of the output): TAESD's blocks end in
   * relu(conv(h) + x). Fused into the Winograd output pass; other paths add it in a second pass.
   */
  residual?: Tensor | undefined;
}

/** NCHW conv: x [N, C, H, W] ⊛ w [O, C, kh, kw] (+ bias [O]) → [N, O, H', W']. Implicit GEMM. */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  return conv2dVariant(x, w, opts, 'tiled');
}

/** `conv2d` through the direct-convolution kernel (one thread per output): the oracle tests compare the GEMM paths with. */
export function conv2dDirect(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  return conv2dVariant(x, w, opts, 'naive');
}

function conv2dVariant(x: Tensor, w: Tensor, opts: Conv2dOptions, variant: GemmVariant): Tensor {
  const { stride = 1, padding = 0, bias } = opts;
  const desc = () => `x ${shapeStr(x.shape)} ⊛ w ${shapeStr(w.shape)} (stride ${stride}, padding ${padding})`;
  if (x.rank !== 4 || w.rank !== 4) throw new ShapeError(`conv2d: x and w must be 4-D (NCHW, OIHW): ${desc()}`);
  const dtype = sameDType('conv2d', x, w, ...(bias ? [bias] : []));
  if (dtype === 'i32') throw new UnsupportedError('conv2d: i32 is not supported');
  checkDType(x.device, 'conv2d', dtype);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cw, KH, KW] = w.shape as [number, number, number, number];
  if (C !== Cw) throw new ShapeError(`conv2d: input has ${C} channels but the weight expects ${Cw}: ${desc()}`);
  if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(padding) || padding < 0) throw new InvalidArgumentError(`conv2d: bad stride/padding: ${desc()}`, 'stride');
  if (bias && (bias.rank !== 1 || bias.shape[0] !== O)) throw new ShapeError(`conv2d: bias ${shapeStr(bias.shape)} must be [${O}]: ${desc()}`);
  const OH = Math.floor((H + 2 * padding - KH) / stride) + 1;
  const OW = Math.floor((W + 2 * padding - KW) / stride) + 1;
  if (OH < 1 || OW < 1) throw new ShapeError(`conv2d: kernel larger than the padded input: ${desc()}`);
  const { residual } = opts;
  if (residual && (shapeStr(residual.shape) !== shapeStr([N, O, OH, OW]) || residual.dtype !== dtype)) {
    throw new ShapeError(`conv2d: residual ${shapeStr(residual.shape)} ${residual.dtype} must match the output [${N}, ${O}, ${OH}, ${OW}] ${dtype}: ${desc()}`);
  }
  const wino = variant === 'tiled' ? winogradTile(x.device, KH, KW, stride, N * ceilDiv(OH, 4) * ceilDiv(OW, 4)) : null;
  if (wino) {
    const y = Tensor.empty(x.device, [N, O, OH, OW], dtype);
    if (y.size > 0) conv2dWinograd(x, w, y, { padding, bias, residual, relu: !!opts.relu, m: wino, label: `conv2d ${desc()}` });
    return y;
  }
  if (residual) {
    // Unfused: conv (+ bias), then + residual and the ReLU.
    const h = conv2dVariant(x, w, { ...opts, relu: false, residual: undefined }, variant);
    const s = add(h, residual);
    h.dispose();
    if (!opts.relu) return s;
    const r = relu(s);
    s.dispose();
    return r;
  }
  const y = Tensor.empty(x.device, [N, O, OH, OW], dtype);
  if (y.size === 0) return y;
  const M = N * OH * OW, K = C * KH * KW;
  const params = { M, N: O, K, tiles_m: 1, tiles_n: 1, batch: 1, alpha: 1, has_bias: bias ? 1 : 0, C, H, W, OH, OW, KH, KW, stride, pad: padding, relu: opts.relu ? 1 : 0 };
  const buffers = [x.binding('conv2d x'), w.binding('conv2d w'), (bias ?? x).binding('conv2d bias'), y.binding('conv2d out')];
  const storage: ('read' | 'rw')[] = ['read', 'read', 'read', 'rw'];
  if (variant === 'naive') {
    const pipe = getPipeline(x.device, { family: 'conv2d', entry: 'conv2d_direct', dtype, code: CONV_DIRECT_WGSL, storage });
    x.device.dispatch(pipe, packParams(CONV_PARAMS, params), buffers, grid1d(ceilDiv(y.size, 256)), `conv2d ${desc()} (direct)`);
    return y;
  }
  dispatchGemm({ device: x.device, dtype, family: 'conv2d', pieces: CONV_GEMM_PIECES, schema: CONV_PARAMS, params, M, N: O, batch: 1, storage, buffers, variant: 'tiled', label: `conv2d ${desc()}` });
  return y;
}

/** Auto Winograd needs at least this many 4×4 output tiles (a 32² map): fewer leave the GEMMs mostly padding. */
export const WINOGRAD_MIN_TILES = 64;

/**
 * Whether a conv runs as Winograd F(m×m, 3×3), and with which m: the device's `kernels.conv.winograd`,
 * else F(4×4) on CPU adapters for 3×3 stride-1 convs with at least WINOGRAD_MIN_TILES output tiles.
 * F(4×4) does 4× fewer multiplies than the implicit GEMM, and llvmpipe runs the GEMM at a fixed
 * ~25–30 GFLOP/s, so the transforms' memory passes are cheap by comparison (lavapipe, f32, one
 * interleaved run: conv 320 ch @ 64² 3.9×, 64 ch @ 512² 2.0× faster). The filter transform is redone
 * per call (keeping 36/9 of every conv weight in f32 would cost gigabytes); below 64 tiles (16² maps)
 * it costs about what it saves. Real GPUs keep the implicit GEMM (not measured there).
 */
function winogradTile(device: Device, KH: number, KW: number, stride: number, tiles4: number): WinogradTile | null {
  if (KH !== 3 || KW !== 3 || stride !== 1) return null;
  const forced = kernelSettings(device).conv.winograd;
  if (forced === 'off') return null;
  if (forced !== null) return forced;
  return isCpuAdapter(device) && tiles4 >= WINOGRAD_MIN_TILES ? 4 : null;
}

/** Which kernel conv2d takes for these shapes on this device (what `bench` reports; tests pin it). */
export function conv2dPath(device: Device, xShape: readonly number[], wShape: readonly number[], stride = 1, padding = 0): 'winograd4' | 'winograd2' | 'implicit-gemm' {
  const [N, , H, W] = xShape as [number, number, number, number];
  const [, , KH, KW] = wShape as [number, number, number, number];
  const OH = Math.floor((H + 2 * padding - KH) / stride) + 1, OW = Math.floor((W + 2 * padding - KW) / stride) + 1;
  const m = winogradTile(device, KH, KW, stride, N * ceilDiv(OH, 4) * ceilDiv(OW, 4));
  return m ? `winograd${m}` : 'implicit-gemm';
}
