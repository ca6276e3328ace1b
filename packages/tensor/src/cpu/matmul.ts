// CPU reference for the matmul family: plain loops, float64 accumulation.
import type { Shape } from '../tensor.js';

export interface CpuMatmulOptions {
  transA?: boolean | undefined;
  transB?: boolean | undefined;
  bias?: ArrayLike<number> | undefined;
  alpha?: number | undefined;
}

/**
 * a [...batch, M, K] (or [..., K, M] with transA) × b [...batch, K, N] or 2-D (or [..., N, K] with
 * transB) → [values, shape [...batch, M, N]]; out = alpha·(a·b) + bias.
 */
export function cpuMatmul(a: ArrayLike<number>, as: Shape, b: ArrayLike<number>, bs: Shape, opts: CpuMatmulOptions = {}): [Float32Array, number[]] {
  const { transA = false, transB = false, bias, alpha = 1 } = opts;
  const M = transA ? as[as.length - 1]! : as[as.length - 2]!;
  const K = transA ? as[as.length - 2]! : as[as.length - 1]!;
  const N = transB ? bs[bs.length - 2]! : bs[bs.length - 1]!;
  const batchDims = as.slice(0, -2);
  const batch = batchDims.reduce((x, y) => x * y, 1);
  const bBatched = bs.length > 2;
  const out = new Float32Array(batch * M * N);
  for (let t = 0; t < batch; t++) {
    const ao = t * M * K, bo = bBatched ? t * K * N : 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * M + m : m * K + k)]!;
          const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
          s += av * bv;
        }
        out[t * M * N + m * N + n] = alpha * s + (bias ? bias[n]! : 0);
      }
    }
  }
  return [out, [...batchDims, M, N]];
}
