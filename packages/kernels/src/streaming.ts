/**
 * Which kind of memory-bound kernel runs (see StreamingSettings): on CPU adapters (llvmpipe) a
 * workgroup's invocations are the SIMD lanes of one core, a load whose address differs per lane is a
 * scalar loop over the lanes, and every workgroup costs a fixed setup. So the 'chunked' kernels use
 * workgroups of one subgroup's lanes, vec4 loads and stores (4× the data per lane per loop), and
 * CHUNK vec4s per workgroup. Measured on lavapipe (a plain vec4 copy, 32 MiB): one vec4 per invocation
 * in workgroups of 256 moved ~1.1 GB/s, 8 lanes walking 512 vec4s ~5–10 GB/s, next to a ~20 GB/s memcpy.
 */
import type { Device } from '@fewstep/tensor';
import { kernelSettings } from './settings.js';
import { fixedSubgroupSize, isCpuAdapter } from './matmul/matmul.js';

/** vec4s one chunked workgroup walks. */
export const CHUNK = 512;

function chunked(device: Device): boolean {
  const v = kernelSettings(device).streaming.variant;
  return v === 'chunked' || (v === null && isCpuAdapter(device));
}

/** Lanes per workgroup of the chunked elementwise kernels (no subgroup ops), or null for the flat kernels. */
export function chunkedLanes(device: Device): number | null {
  return chunked(device) ? (fixedSubgroupSize(device) ?? 8) : null;
}

/**
 * The subgroup size for chunked kernels that reduce with subgroup ops (their workgroup is exactly one
 * subgroup, so the adapter's size must be fixed), or null for the flat kernels.
 */
export function chunkedSubgroup(device: Device): number | null {
  return chunked(device) ? fixedSubgroupSize(device) : null;
}
