// CPU references for the layout family: index arithmetic spelled out per element, nothing clever.
import type { Shape } from '../tensor.js';

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** PyTorch `F.interpolate(x, scale_factor=2, mode='nearest')` on [N, C, H, W]. */
export function cpuUpsampleNearest2x(x: ArrayLike<number>, shape: Shape): [Float32Array, number[]] {
  const [N, C, H, W] = shape as [number, number, number, number];
  const y = new Float32Array(N * C * 4 * H * W);
  for (let nc = 0; nc < N * C; nc++)
    for (let oh = 0; oh < 2 * H; oh++)
      for (let ow = 0; ow < 2 * W; ow++) y[(nc * 2 * H + oh) * 2 * W + ow] = x[(nc * H + Math.floor(oh / 2)) * W + Math.floor(ow / 2)]!;
  return [y, [N, C, 2 * H, 2 * W]];
}

/** torch.cat along a non-negative axis. */
export function cpuConcat(xs: ArrayLike<number>[], shapes: Shape[], axis: number): [Float32Array, number[]] {
  const out = [...shapes[0]!];
  out[axis] = shapes.reduce((a, s) => a + s[axis]!, 0);
  const y = new Float32Array(prod(out));
  const oStr = stridesOf(out);
  let offset = 0;
  xs.forEach((x, k) => {
    const s = shapes[k]!;
    const st = stridesOf(s);
    for (let i = 0; i < prod(s); i++) {
      let o = 0;
      for (let d = 0; d < s.length; d++) {
        const c = Math.floor(i / st[d]!) % s[d]!;
        o += (d === axis ? c + offset : c) * oStr[d]!;
      }
      y[o] = x[i]!;
    }
    offset += s[axis]!;
  });
  return [y, out];
}

/** torch.permute(x, perm).contiguous(). */
export function cpuPermute(x: ArrayLike<number>, shape: Shape, perm: readonly number[]): [Float32Array, number[]] {
  const out = perm.map((p) => shape[p]!);
  const inStr = stridesOf([...shape]);
  const outStr = stridesOf(out);
  const y = new Float32Array(prod(out));
  for (let i = 0; i < y.length; i++) {
    let src = 0;
    for (let d = 0; d < out.length; d++) src += (Math.floor(i / outStr[d]!) % out[d]!) * inStr[perm[d]!]!;
    y[i] = x[src]!;
  }
  return [y, out];
}

/** x[..., start:end, ...] along a non-negative axis. */
export function cpuSlice(x: ArrayLike<number>, shape: Shape, axis: number, start: number, end: number): [Float32Array, number[]] {
  const out = [...shape];
  out[axis] = end - start;
  const inStr = stridesOf([...shape]);
  const outStr = stridesOf(out);
  const y = new Float32Array(prod(out));
  for (let i = 0; i < y.length; i++) {
    let src = 0;
    for (let d = 0; d < out.length; d++) {
      const c = Math.floor(i / outStr[d]!) % out[d]!;
      src += (d === axis ? c + start : c) * inStr[d]!;
    }
    y[i] = x[src]!;
  }
  return [y, out];
}
