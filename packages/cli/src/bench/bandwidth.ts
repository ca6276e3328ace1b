/**
 * This adapter's memory bandwidth, measured on the same device as the kernels and at the same sizes:
 * device-side copies of a buffer of bytes/2 into another (read + write = bytes), two ways —
 *   copy:   copyBufferToBuffer (a memcpy on lavapipe, where device memory is host memory; a copy-engine
 *           blit elsewhere). It cannot be timestamped inside a compute pass, so k copies go in one
 *           submit and the wall clock to the end of a sync is divided by k.
 *   kernel: a trivial WGSL vec4 copy, timed like the kernels (one dispatch per timed pass, GPU
 *           timestamps when available), in two forms — one vec4 per invocation in workgroups of 256
 *           (what suits GPUs) and 8 invocations walking 512 vec4s (what suits CPU adapters, see
 *           @fewstep/kernels' streaming kernels) — the faster one reported.
 * The reference is the faster of copy and kernel (the best this adapter moves that many bytes): memory-
 * bound kernels report achieved GB/s (bytes they must read + write, minimal) as a fraction of it, and of
 * the kernel copy (what a WGSL kernel can move here at best, dispatch cost included).
 */
import { Tensor, type Device } from '@fewstep/tensor';

export interface BandwidthSample {
  /** Bytes moved per copy (read + write). */
  bytes: number;
  copy_gbps: number;
  kernel_gbps: number;
  /** max(copy_gbps, kernel_gbps): what ratios are taken against. */
  gbps: number;
}

const COPY_HEAD = /* wgsl */ `
struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;
`;
/** [code, vec4s per workgroup] */
const COPY_KERNELS: Record<'flat' | 'chunked', [string, number]> = {
  flat: [`${COPY_HEAD}
@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  dst[i] = src[i];
}
`, 256],
  chunked: [`${COPY_HEAD}
@compute @workgroup_size(8)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * 512u;
  let end = min(base + 512u, p.n);
  for (var k = base; k < end; k += 8u) {
    let i = k + lid;
    if (i < end) { dst[i] = src[i]; }
  }
}
`, 512],
};

/** Copies per timed run: enough to move ≥ 64 MiB, at most 64. */
const copiesFor = (half: number) => Math.max(1, Math.min(64, Math.ceil((64 << 20) / half)));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Measures the bandwidth at `bytes` moved per copy (median of `reps` timed runs each way). */
export async function measureBandwidth(device: Device, bytes: number, reps = 5): Promise<BandwidthSample> {
  const half = Math.max(4096, Math.ceil(bytes / 2 / 16) * 16);
  const n4 = half / 16;
  const src = Tensor.empty(device, [half / 4], 'f32');
  const dst = Tensor.empty(device, [half / 4], 'f32');
  try {
    const k = copiesFor(half);
    const copyAll = () => {
      for (let i = 0; i < k; i++) device.copy(src.buffer, 0, dst.buffer, 0, half);
    };
    const params = new Uint32Array([n4, 0, 0, 0]).buffer;
    const kernels = (['flat', 'chunked'] as const).map((kind) => {
      const [code, per] = COPY_KERNELS[kind];
      const pipe = device.pipeline(`bench/bandwidth:copy-${kind}`, () => ({ code, entryPoint: 'copy', storage: ['read', 'rw'] }));
      const wg = Math.ceil(n4 / per);
      const grid: [number, number, number] = wg <= 65535 ? [wg, 1, 1] : [Math.ceil(wg / Math.ceil(wg / 65535)), Math.ceil(wg / 65535), 1];
      return () => device.dispatch(pipe, params, [src.binding(), dst.binding()], grid, `bandwidth copy (${kind})`);
    });
    // Warm-up: touches both buffers, compiles the kernels.
    copyAll();
    for (const kernel of kernels) kernel();
    await device.sync();
    const copyMs: number[] = [], kernelMs: number[][] = kernels.map(() => []);
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      copyAll();
      await device.sync();
      copyMs.push((performance.now() - t0) / k);
      for (const [j, kernel] of kernels.entries()) {
        const t1 = performance.now();
        const gpu = await device.timeDispatches(kernel);
        kernelMs[j]!.push(gpu ?? performance.now() - t1);
      }
    }
    const rate = (ms: number) => +((2 * half) / (ms / 1000) / 1e9).toPrecision(4);
    const copy_gbps = rate(median(copyMs)), kernel_gbps = Math.max(...kernelMs.map((ms) => rate(median(ms))));
    return { bytes: 2 * half, copy_gbps, kernel_gbps, gbps: Math.max(copy_gbps, kernel_gbps) };
  } finally {
    src.dispose();
    dst.dispose();
  }
}
