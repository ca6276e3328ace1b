/**
 * Opening the GPU in a browser: the adapter (a core one, else a compatibility-mode one — e.g. lavapipe through
 * ANGLE's OpenGL ES backend), its report (name, features, the limits that matter for diffusion weights), and a
 * fewstep Device on it. Device.open requests the adapter's real limits (the defaults — 128 MiB per storage
 * binding, 256 MiB per buffer — are far below what most adapters allow) and `shader-f16` only where the adapter
 * has it.
 */
import { Device, DeviceError } from '@fewstep/tensor';

export type AdapterPreference = 'auto' | 'core' | 'compat';

export interface AdapterReport {
  /** One line: "<description or vendor/architecture> (compatibility mode)". */
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  compatibility: boolean;
  f16: boolean;
  subgroups: boolean;
  features: string[];
  limits: Record<string, number>;
}

/** The limits shown in the adapter panel (and checked against a model's largest tensors). */
export const REPORTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

export const NO_WEBGPU_HELP =
  'This browser has no WebGPU. Use a recent Chrome or Edge (113+), or Firefox / Safari with WebGPU enabled; ' +
  'on Linux Chrome may need chrome://flags/#enable-unsafe-webgpu and a Vulkan driver.';

export function describeAdapter(adapter: GPUAdapter, compatibility: boolean): AdapterReport {
  const info = adapter.info;
  const vendor = info?.vendor ?? '', architecture = info?.architecture ?? '', description = info?.description ?? '';
  const base = description || [architecture, vendor && `(${vendor})`].filter(Boolean).join(' ') || 'unnamed adapter';
  const limits: Record<string, number> = {};
  for (const k of REPORTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  return {
    name: compatibility ? `${base} (compatibility mode)` : base,
    vendor,
    architecture,
    description,
    compatibility,
    f16: adapter.features.has('shader-f16'),
    subgroups: adapter.features.has('subgroups'),
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

async function requestAdapter(gpu: GPU, pref: AdapterPreference): Promise<{ adapter: GPUAdapter; compatibility: boolean } | null> {
  if (pref !== 'compat') {
    const a = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
    if (a) return { adapter: a, compatibility: false };
  }
  if (pref !== 'core') {
    // Compatibility mode (OpenGL ES / D3D11 backends): fewer features and lower limits, same kernels.
    const a = await gpu.requestAdapter({ featureLevel: 'compatibility', powerPreference: 'high-performance' }).catch(() => null);
    if (a) return { adapter: a, compatibility: !a.features.has('core-features-and-limits') };
  }
  return null;
}

/** A GPU that hands out `adapter` (an adapter makes one device; Device.open asks for its own otherwise). */
function gpuWithAdapter(gpu: GPU, adapter: GPUAdapter): GPU {
  return {
    requestAdapter: async () => adapter,
    getPreferredCanvasFormat: () => gpu.getPreferredCanvasFormat(),
    get wgslLanguageFeatures() {
      return gpu.wgslLanguageFeatures;
    },
  } as unknown as GPU;
}

export interface OpenedDevice {
  device: Device;
  report: AdapterReport;
}

/**
 * Opens a Device: a core adapter, else a compatibility-mode one; f16 only when `f16` and the adapter has
 * `shader-f16`. If the device cannot be made with the adapter's full limits (some drivers refuse), tries once
 * more on a fresh adapter without the optional features.
 */
export async function openDevice(opts: { gpu?: GPU | undefined; preference?: AdapterPreference; f16?: boolean } = {}): Promise<OpenedDevice> {
  const gpu = opts.gpu ?? (typeof navigator !== 'undefined' ? navigator.gpu : undefined);
  if (!gpu) throw new DeviceError('no_adapter', NO_WEBGPU_HELP);
  const pref = opts.preference ?? 'auto';
  const first = await requestAdapter(gpu, pref);
  if (!first) {
    throw new DeviceError(
      'no_adapter',
      'WebGPU is present but no adapter was found (the GPU may be blocklisted or its driver too old). Try chrome://gpu to see why, update the graphics driver, or try another browser.',
    );
  }
  const report = describeAdapter(first.adapter, first.compatibility);
  try {
    const device = await Device.open({ gpu: gpuWithAdapter(gpu, first.adapter), f16: opts.f16 !== false, wait: 'spin' });
    return { device, report };
  } catch (e) {
    const again = await requestAdapter(gpu, pref);
    if (!again) throw e;
    const device = await Device.open({ gpu: gpuWithAdapter(gpu, again.adapter), f16: false, subgroups: false, wait: 'spin' }).catch(() => {
      throw e;
    });
    return { device, report: { ...describeAdapter(again.adapter, again.compatibility), f16: false } };
  }
}
