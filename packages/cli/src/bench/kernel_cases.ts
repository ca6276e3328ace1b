/**
 * The kernel benchmark cases: the shapes SDXS-512 really runs (names of the ORT anchor cases kept,
 * so rows line up with shared/anchors/ort-ops). Each case builds its inputs, returns a closure that
 * records one run, its cost, and a sampled check against a scalar CPU reference.
 */
import { Tensor, roundToF16, type DType, type Device } from '@fewstep/tensor';
import * as K from '@fewstep/kernels';
import { cpu } from '@fewstep/tensor/testing';

const erf = cpu.erf;

export interface BenchCase {
  name: string;
  family: string;
  /** FLOPs per run (0 for memory-bound ops, which report GB/s from `bytes`). */
  flops: number;
  bytes: number;
  /** Bytes moved at a dtype when not simply `bytes` (f32) halved for f16 (casts: both sides' sizes). */
  bytesFor?: ((dtype: DType) => number) | undefined;
  setup(d: Device, dtype: DType): Prepared;
}

export interface Prepared {
  run(): Tensor;
  /** Max |gpu − ref| over sampled outputs (ref computed on the CPU from the same inputs). */
  check(out: Tensor): Promise<number>;
  dispose(): void;
}

// Deterministic inputs, rounded to what the GPU stores (f16 or f32).
function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * 2 * scale;
  }
  return a;
}

function upload(d: Device, data: Float32Array, shape: number[], dtype: DType): [Tensor, Float32Array] {
  const t = Tensor.from(d, data, shape, dtype);
  return [t, data];
}

async function hostValues(d: Device, t: Tensor): Promise<Float32Array> {
  void d;
  return (await t.read()) as Float32Array;
}

/** Samples `count` output indices spread over the output. */
function samples(n: number, count = 48): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(Math.min(n - 1, Math.floor(((i * 2654435761) % 4294967296) / 4294967296 * n)));
  out.push(0, n - 1);
  return out;
}

function maxErr(got: Float32Array, idx: number[], ref: (i: number) => number): number {
  let m = 0;
  for (const i of idx) m = Math.max(m, Math.abs(got[i]! - ref(i)));
  return m;
}

const BYTES = (dtype: DType) => (dtype === 'f16' ? 2 : 4);

function matmulCase(M: number, K_: number, N: number, what = 'matmul'): BenchCase {
  return {
    name: `matmul_${M}x${K_}x${N}`, family: what, flops: 2 * M * N * K_, bytes: 4 * (M * K_ + K_ * N + M * N),
    setup(d, dtype) {
      // Values as the GPU holds them (f16 rounding happens in Tensor.from; read back for the reference).
      const [a] = upload(d, rand(M * K_, 1), [M, K_], dtype);
      const [b] = upload(d, rand(K_ * N, 2, 0.1), [K_, N], dtype);
      return {
        run: () => K.matmul(a, b),
        async check(out) {
          const [av, bv, o] = [await hostValues(d, a), await hostValues(d, b), await hostValues(d, out)];
          return maxErr(o, samples(M * N), (i) => {
            const r = Math.floor(i / N), c = i % N;
            let s = 0;
            for (let k = 0; k < K_; k++) s += av[r * K_ + k]! * bv[k * N + c]!;
            return s;
          });
        },
        dispose: () => (a.dispose(), b.dispose()),
      };
    },
  };
}

function convCase(C: number, H: number, O = C, k = 3): BenchCase {
  const W = H;
  return {
    name: `conv${k}x${k}_${C}_${H}x${W}`, family: 'conv2d', flops: 2 * O * H * W * C * k * k, bytes: 4 * (C * H * W + O * C * k * k + O * H * W),
    setup(d, dtype) {
      const [x] = upload(d, rand(C * H * W, 3), [1, C, H, W], dtype);
      const [w] = upload(d, rand(O * C * k * k, 4, 0.05), [O, C, k, k], dtype);
      const [b] = upload(d, rand(O, 5), [O], dtype);
      const p = (k - 1) / 2;
      return {
        run: () => K.conv2d(x, w, { padding: p, bias: b }),
        async check(out) {
          const [xv, wv, bv, o] = [await hostValues(d, x), await hostValues(d, w), await hostValues(d, b), await hostValues(d, out)];
          return maxErr(o, samples(O * H * W), (i) => {
            const oc = Math.floor(i / (H * W)), y = Math.floor(i / W) % H, xx = i % W;
            let s = bv[oc]!;
            for (let c = 0; c < C; c++)
              for (let ky = 0; ky < k; ky++)
                for (let kx = 0; kx < k; kx++) {
                  const iy = y + ky - p, ix = xx + kx - p;
                  if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += xv[(c * H + iy) * W + ix]! * wv[((oc * C + c) * k + ky) * k + kx]!;
                }
            return s;
          });
        },
        dispose: () => (x.dispose(), w.dispose(), b.dispose()),
      };
    },
  };
}

function attnCase(name: string, heads: number, Lq: number, Lk: number, D: number): BenchCase {
  return {
    name, family: 'attention', flops: 4 * heads * Lq * Lk * D, bytes: 4 * heads * D * (2 * Lq + 2 * Lk),
    setup(d, dtype) {
      const HD = heads * D;
      const [q] = upload(d, rand(Lq * HD, 6), [1, Lq, HD], dtype);
      const [k] = upload(d, rand(Lk * HD, 7), [1, Lk, HD], dtype);
      const [v] = upload(d, rand(Lk * HD, 8), [1, Lk, HD], dtype);
      return {
        run: () => K.attention(q, k, v, heads),
        async check(out) {
          const [qv, kv, vv, o] = [await hostValues(d, q), await hostValues(d, k), await hostValues(d, v), await hostValues(d, out)];
          const scale = 1 / Math.sqrt(D);
          return maxErr(o, samples(Lq * HD, 24), (i) => {
            const l = Math.floor(i / HD), h = Math.floor((i % HD) / D), dd = i % D;
            const s = new Float64Array(Lk);
            let mx = -Infinity;
            for (let j = 0; j < Lk; j++) {
              let acc = 0;
              for (let e = 0; e < D; e++) acc += qv[l * HD + h * D + e]! * kv[j * HD + h * D + e]!;
              s[j] = acc * scale;
              mx = Math.max(mx, s[j]!);
            }
            let den = 0, num = 0;
            for (let j = 0; j < Lk; j++) {
              const p = Math.exp(s[j]! - mx);
              den += p;
              num += p * vv[j * HD + h * D + dd]!;
            }
            return num / den;
          });
        },
        dispose: () => (q.dispose(), k.dispose(), v.dispose()),
      };
    },
  };
}

function groupNormCase(C: number, H: number, G = 32, silu = true): BenchCase {
  const n = C * H * H;
  return {
    name: `groupnorm${G}${silu ? '_silu' : ''}_${C}x${H}x${H}`, family: 'norm', flops: 0, bytes: 2 * 4 * n,
    setup(d, dtype) {
      const [x] = upload(d, rand(n, 9), [1, C, H, H], dtype);
      const [g] = upload(d, rand(C, 10), [C], dtype);
      const [b] = upload(d, rand(C, 11), [C], dtype);
      return {
        run: () => K.groupNorm(x, G, g, b, 1e-5, { silu }),
        async check(out) {
          const [xv, gv, bv, o] = [await hostValues(d, x), await hostValues(d, g), await hostValues(d, b), await hostValues(d, out)];
          const per = (C / G) * H * H;
          const stats = new Map<number, [number, number]>();
          const stat = (grp: number) => {
            let s = stats.get(grp);
            if (!s) {
              let m = 0, v = 0;
              for (let i = 0; i < per; i++) m += xv[grp * per + i]!;
              m /= per;
              for (let i = 0; i < per; i++) v += (xv[grp * per + i]! - m) ** 2;
              stats.set(grp, (s = [m, v / per]));
            }
            return s;
          };
          return maxErr(o, samples(n, 32), (i) => {
            const c = Math.floor(i / (H * H)), [m, v] = stat(Math.floor(i / per));
            const y = ((xv[i]! - m) / Math.sqrt(v + 1e-5)) * gv[c]! + bv[c]!;
            return silu ? y / (1 + Math.exp(-y)) : y;
          });
        },
        dispose: () => (x.dispose(), g.dispose(), b.dispose()),
      };
    },
  };
}

/** Memory-bound single-input ops: reported in GB/s from bytes moved. */
function simpleCase(name: string, family: string, shape: number[], bytesPerRun: (dtype: DType) => number, run: (x: Tensor) => Tensor, ref?: (xv: Float32Array, i: number) => number): BenchCase {
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    name, family, flops: 0, bytes: bytesPerRun('f32'),
    setup(d, dtype) {
      const [x] = upload(d, rand(n, 12), shape, dtype);
      return {
        run: () => run(x),
        async check(out) {
          if (!ref) return NaN;
          const [xv, o] = [await hostValues(d, x), await hostValues(d, out)];
          return maxErr(o, samples(out.size), (i) => ref(xv, i));
        },
        dispose: () => x.dispose(),
      };
    },
  };
}

/** LayerNorm over the last dim with gamma and beta, as the transformers call it. */
function layerNormCase(rows: number, D: number): BenchCase {
  const n = rows * D;
  return {
    name: `layernorm_affine_${rows}x${D}`, family: 'norm', flops: 0, bytes: 2 * 4 * n,
    setup(d, dtype) {
      const [x] = upload(d, rand(n, 15, 2), [rows, D], dtype);
      const [g] = upload(d, rand(D, 16), [D], dtype);
      const [b] = upload(d, rand(D, 17), [D], dtype);
      return {
        run: () => K.layerNorm(x, g, b, 1e-5),
        async check(out) {
          const [xv, gv, bv, o] = [await hostValues(d, x), await hostValues(d, g), await hostValues(d, b), await hostValues(d, out)];
          return maxErr(o, samples(n), (i) => {
            const r = Math.floor(i / D);
            let m = 0, v = 0;
            for (let j = 0; j < D; j++) m += xv[r * D + j]!;
            m /= D;
            for (let j = 0; j < D; j++) v += (xv[r * D + j]! - m) ** 2;
            return ((xv[i]! - m) / Math.sqrt(v / D + 1e-5)) * gv[i % D]! + bv[i % D]!;
          });
        },
        dispose: () => (x.dispose(), g.dispose(), b.dispose()),
      };
    },
  };
}

/** a (op) b with b broadcast over a's trailing dims when bShape is shorter in effect (e.g. [1, C, 1, 1]). */
function binaryCase(name: string, op: 'add' | 'mul', aShape: number[], bShape: number[]): BenchCase {
  const na = aShape.reduce((p, q) => p * q, 1), nb = bShape.reduce((p, q) => p * q, 1);
  const inner = na / nb; // b = [.., C, 1, 1]: b index = floor(i / inner) (only that broadcast is used here)
  return {
    name, family: 'elementwise', flops: 0, bytes: 4 * (2 * na + nb),
    setup(d, dtype) {
      const [a] = upload(d, rand(na, 18), aShape, dtype);
      const [b] = upload(d, rand(nb, 19), bShape, dtype);
      return {
        run: () => (op === 'add' ? K.add(a, b) : K.mul(a, b)),
        async check(out) {
          const [av, bv, o] = [await hostValues(d, a), await hostValues(d, b), await hostValues(d, out)];
          return maxErr(o, samples(na), (i) => (op === 'add' ? av[i]! + bv[Math.floor(i / inner)]! : av[i]! * bv[Math.floor(i / inner)]!));
        },
        dispose: () => (a.dispose(), b.dispose()),
      };
    },
  };
}

/** f32 → f16 on the f32 row, f16 → f32 on the f16 row: 6 bytes an element either way. */
function castCase(shape: number[]): BenchCase {
  const n = shape.reduce((p, q) => p * q, 1);
  return {
    name: `cast_${shape.slice(1).join('x')}`, family: 'layout', flops: 0, bytes: 6 * n, bytesFor: () => 6 * n,
    setup(d, dtype) {
      const [x] = upload(d, rand(n, 20, 4), shape, dtype);
      return {
        run: () => K.cast(x, dtype === 'f16' ? 'f32' : 'f16'),
        async check(out) {
          const [xv, o] = [await hostValues(d, x), await hostValues(d, out)];
          return maxErr(o, samples(n), (i) => (dtype === 'f16' ? xv[i]! : roundToF16(new Float32Array([xv[i]!]))[0]!));
        },
        dispose: () => x.dispose(),
      };
    },
  };
}

export function kernelCases(): BenchCase[] {
  const silu = (v: number) => v / (1 + Math.exp(-v));
  return [
    simpleCase('noop_dispatch', 'dispatch', [1], () => 8, (x) => K.scale(x, 1), (xv, i) => xv[i]!),
    matmulCase(4096, 320, 2560),
    matmulCase(4096, 1280, 320),
    matmulCase(1024, 640, 640),
    convCase(320, 64),
    convCase(640, 32),
    convCase(64, 512),
    convCase(64, 256), // TAESD decoder, second-to-last stage
    convCase(1280, 16), // the UNet's innermost convs
    attnCase('attn_self_8x1024x80', 8, 1024, 1024, 80),
    attnCase('attn_cross_8x4096x77x40', 8, 4096, 77, 40),
    attnCase('attn_cross_8x256x77x160', 8, 256, 77, 160),
    groupNormCase(320, 64),
    groupNormCase(128, 512), // the SD VAE decoder's last stage: 1 M values per group (split path on GPUs)
    groupNormCase(640, 32),
    groupNormCase(1280, 16),
    groupNormCase(320, 64, 32, false), // a transformer block's norm before proj_in
    simpleCase('layernorm_4096x320', 'norm', [4096, 320], () => 2 * 4 * 4096 * 320, (x) => K.layerNorm(x, null, null, 1e-5), (xv, i) => {
      const r = Math.floor(i / 320);
      let m = 0, v = 0;
      for (let j = 0; j < 320; j++) m += xv[r * 320 + j]!;
      m /= 320;
      for (let j = 0; j < 320; j++) v += (xv[r * 320 + j]! - m) ** 2;
      return (xv[i]! - m) / Math.sqrt(v / 320 + 1e-5);
    }),
    layerNormCase(4096, 320),
    layerNormCase(1024, 640),
    layerNormCase(256, 1280),
    layerNormCase(77, 1024), // the text encoder
    simpleCase('softmax_8x4096x77', 'norm', [8 * 4096, 77], () => 2 * 4 * 8 * 4096 * 77, (x) => K.softmax(x), (xv, i) => {
      const r = Math.floor(i / 77);
      let mx = -Infinity, den = 0;
      for (let j = 0; j < 77; j++) mx = Math.max(mx, xv[r * 77 + j]!);
      for (let j = 0; j < 77; j++) den += Math.exp(xv[r * 77 + j]! - mx);
      return Math.exp(xv[i]! - mx) / den;
    }),
    simpleCase('silu_320x64x64', 'elementwise', [1, 320, 64, 64], () => 2 * 4 * 320 * 4096, (x) => K.silu(x), (xv, i) => silu(xv[i]!)),
    simpleCase('add_320x64x64', 'elementwise', [1, 320, 64, 64], () => 3 * 4 * 320 * 4096, (x) => K.add(x, x), (xv, i) => 2 * xv[i]!),
    simpleCase('silu_1280x16x16', 'elementwise', [1, 1280, 16, 16], () => 2 * 4 * 1280 * 256, (x) => K.silu(x), (xv, i) => silu(xv[i]!)),
    simpleCase('gelu_77x4096', 'elementwise', [77, 4096], () => 2 * 4 * 77 * 4096, (x) => K.gelu(x), (xv, i) => 0.5 * xv[i]! * (1 + erf(xv[i]! / Math.SQRT2))),
    simpleCase('relu_64x512x512', 'elementwise', [1, 64, 512, 512], () => 2 * 4 * 64 * 512 * 512, (x) => K.relu(x), (xv, i) => Math.max(0, xv[i]!)),
    binaryCase('add_64x512x512', 'add', [1, 64, 512, 512], [1, 64, 512, 512]),
    binaryCase('mul_320x64x64', 'mul', [1, 320, 64, 64], [1, 320, 64, 64]),
    binaryCase('add_bcast_320x64x64+320', 'add', [1, 320, 64, 64], [1, 320, 1, 1]), // a ResNet block's time embedding
    simpleCase('geglu_4096x2560', 'elementwise', [4096, 2560], () => 4 * 4096 * (2560 + 1280), (x) => K.geglu(x), (xv, i) => {
      const r = Math.floor(i / 1280), c = i % 1280, g = xv[r * 2560 + 1280 + c]!;
      return xv[r * 2560 + c]! * 0.5 * g * (1 + erf(g / Math.SQRT2));
    }),
    simpleCase('upsample2x_1280x16x16', 'layout', [1, 1280, 16, 16], () => 5 * 4 * 1280 * 256, (x) => K.upsampleNearest2x(x), (xv, i) => {
      const c = Math.floor(i / 1024), y = Math.floor(i / 32) % 32, xx = i % 32;
      return xv[c * 256 + (y >> 1) * 16 + (xx >> 1)]!;
    }),
    simpleCase('upsample2x_64x256x256', 'layout', [1, 64, 256, 256], () => 5 * 4 * 64 * 65536, (x) => K.upsampleNearest2x(x), (xv, i) => {
      const c = Math.floor(i / 262144), y = Math.floor(i / 512) % 512, xx = i % 512;
      return xv[c * 65536 + (y >> 1) * 256 + (xx >> 1)]!;
    }),
    simpleCase('concat_640+640_32x32', 'layout', [1, 640, 32, 32], () => 4 * 4 * 640 * 1024, (x) => K.concat([x, x], 1), (xv, i) => xv[i % (640 * 1024)]!),
    castCase([1, 320, 64, 64]),
    simpleCase('permute_320x64x64_to_nhwc', 'layout', [1, 320, 64, 64], () => 2 * 4 * 320 * 4096, (x) => K.permute(x, [0, 2, 3, 1]), (xv, i) => {
      const p = Math.floor(i / 320), c = i % 320;
      return xv[c * 4096 + p]!;
    }),
  ];
}

/** Cases whose kernels need an input of another dtype (ids, timesteps) are built separately. */
export function embeddingCases(): BenchCase[] {
  return [
    {
      name: 'embedding_77_of_49408x1024', family: 'embedding', flops: 0, bytes: 4 * 77 * 1024 * 3,
      setup(d, dtype) {
        const table = Tensor.from(d, rand(49408 * 1024, 13), [49408, 1024], dtype);
        const pos = Tensor.from(d, rand(77 * 1024, 14), [77, 1024], dtype);
        const idsArr = Int32Array.from({ length: 77 }, (_, i) => (i * 643 + 49406) % 49408);
        const ids = Tensor.from(d, idsArr, [1, 77], 'i32');
        return {
          run: () => K.embedding(ids, table, pos),
          async check(out) {
            const [tv, pv, o] = [await hostValues(d, table), await hostValues(d, pos), await hostValues(d, out)];
            return maxErr(o, samples(77 * 1024), (i) => tv[idsArr[Math.floor(i / 1024)]! * 1024 + (i % 1024)]! + pv[i]!);
          },
          dispose: () => (table.dispose(), pos.dispose(), ids.dispose()),
        };
      },
    },
    {
      name: 'timestep_embedding_2x320', family: 'embedding', flops: 0, bytes: 4 * 2 * 320,
      setup(d) {
        const t = Tensor.from(d, [999, 261], [2]);
        return {
          run: () => K.timestepEmbedding(t, 320, { flipSinToCos: true, downscaleFreqShift: 0 }),
          async check(out) {
            const o = await hostValues(d, out);
            return maxErr(o, samples(640), (i) => {
              const b = Math.floor(i / 320), j = i % 320, f = j % 160;
              const arg = [999, 261][b]! * Math.fround(Math.exp(Math.fround((-Math.log(10000) * f) / 160)));
              return j < 160 ? Math.cos(arg) : Math.sin(arg);
            });
          },
          dispose: () => t.dispose(),
        };
      },
    },
  ];
}

export const bytesOf = BYTES;
