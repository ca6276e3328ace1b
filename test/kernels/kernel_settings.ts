// Kernel settings are per Device; the kernel tests share one device and switch settings around a block.
import type { Device, KernelSettings } from '@fewstep/tensor';
import type {} from '@fewstep/kernels'; // KernelSettings' fields

/** Runs `fn` with `patch` merged into the device's kernel settings (group by group), then restores them. */
export async function withKernels<T>(d: Device, patch: KernelSettings, fn: () => Promise<T> | T): Promise<T> {
  const prev = d.kernels;
  const next: Record<string, unknown> = { ...prev };
  for (const [group, v] of Object.entries(patch)) next[group] = { ...(prev as Record<string, object | undefined>)[group], ...(v as object) };
  d.kernels = next as KernelSettings;
  try {
    return await fn();
  } finally {
    d.kernels = prev;
  }
}
