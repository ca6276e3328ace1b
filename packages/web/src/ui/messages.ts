/**
 * Errors as messages a person can act on: a title, the error's own one-line message, and what to try. Matches
 * on fewstep's error codes (FewstepError.code), never on message text, except to tell an out-of-memory GPU
 * error from other GPU errors (WebGPU reports both as errors with a message).
 */
import { FewstepError, isAbortError } from '@fewstep/tensor';

export interface UserMessage {
  level: 'error' | 'warning' | 'info';
  title: string;
  detail: string;
  hints: string[];
}

const RECOVER = 'Press Generate again: the page opens a new GPU device and reloads the model from this browser\'s cache (no reload needed).';

export function describeError(e: unknown): UserMessage {
  const detail = e instanceof Error ? e.message : String(e);
  if (isAbortError(e)) return { level: 'info', title: 'Cancelled', detail: 'The operation was cancelled.', hints: [] };
  const code = e instanceof FewstepError ? e.code : null;
  if ((e as { server?: unknown }).server === true) {
    if (code === 'auth_required') return { level: 'error', title: 'The server wants its API key', detail, hints: ['Enter the key `fewstep serve` was started with (--api-key / FEWSTEP_API_KEY) under "Run on".'] };
    if (code === 'resource_limit') return { level: 'error', title: 'The server is busy', detail, hints: ['Try again in a few seconds, or generate in this browser.'] };
    if (code === 'hub_connection') return { level: 'error', title: 'Cannot reach the server', detail, hints: ['Is `fewstep serve` still running?', 'Or choose "this browser" under "Run on".'] };
    return { level: 'error', title: 'The server failed', detail, hints: ['Its log (stderr) has the details; try again, or generate in this browser.'] };
  }
  switch (code) {
    case 'no_adapter':
      return { level: 'error', title: 'No WebGPU here', detail, hints: ['Use a recent Chrome or Edge; on Linux enable WebGPU (chrome://flags/#enable-unsafe-webgpu) and check chrome://gpu.', 'Or generate on a machine with a GPU using the fewstep CLI.'] };
    case 'feature_missing':
      return { level: 'error', title: 'f16 is not available on this adapter', detail, hints: ['Choose dtype f32 (or auto).'] };
    case 'device_lost':
      return { level: 'error', title: 'The GPU device was lost', detail, hints: [RECOVER, 'If it keeps happening: a smaller size, f16 (half the memory), or fewer GPU-heavy tabs.'] };
    case 'gpu_error':
      if (/out of memory|\boom\b|allocation/i.test(detail)) {
        return {
          level: 'error',
          title: 'The GPU ran out of memory',
          detail,
          hints: ['Try a smaller width and height, or dtype f16 where the adapter has shader-f16.', 'Close other tabs that use the GPU.', RECOVER],
        };
      }
      return { level: 'error', title: 'WebGPU error', detail, hints: [RECOVER, 'If it repeats with the same settings, please report it with the adapter details below.'] };
    case 'resource_limit':
      return {
        level: 'error',
        title: 'Too large for this adapter or browser',
        detail,
        hints: ['Try a smaller size, or f16 (half the bytes per buffer).', 'The adapter\'s limits are listed under "Adapter".', 'If the browser\'s storage is full, use "Clear weight cache".'],
      };
    case 'repo_not_found':
      return { level: 'error', title: 'Model not found', detail, hints: ['Check the repo id (org/name), e.g. IDKiro/sdxs-512-0.9.', 'Check the endpoint under "Hub source".', 'Private and gated repos need a token, which this page does not send.'] };
    case 'revision_not_found':
      return { level: 'error', title: 'Revision not found', detail, hints: ['Use a branch, tag or commit that exists (default: main).'] };
    case 'entry_not_found':
      return { level: 'error', title: 'A file of the model is missing', detail, hints: ['The repo may not be a diffusers pipeline, or lacks weights for this dtype.'] };
    case 'auth_required':
      return { level: 'error', title: 'The hub refused access', detail, hints: ['Gated or private repos are not supported by the page; download them with `fewstep download` and pick the folder instead.'] };
    case 'offline_missing':
      return { level: 'error', title: 'Offline, and the model is not cached', detail, hints: ['Connect to the network once: the files are then kept in this browser for offline use.', 'Or pick a local model folder.'] };
    case 'hub_connection':
    case 'hub_http':
      return {
        level: 'error',
        title: 'Cannot download from the hub',
        detail,
        hints: ['Check the network and the endpoint.', 'A hub mirror must send CORS headers (Access-Control-Allow-Origin) for the page to use it.', 'Files already downloaded are kept; retrying resumes with the missing ones.'],
      };
    case 'integrity':
      return { level: 'error', title: 'A download was incomplete', detail, hints: ['Retry: the broken file was not kept.'] };
    case 'not_a_model':
    case 'invalid_config':
    case 'weights_mismatch':
    case 'file_format':
    case 'unsafe_pickle':
      return {
        level: 'error',
        title: 'This model cannot be loaded',
        detail,
        hints: ['The page runs diffusers Stable Diffusion 1.x/2.x pipelines (SDXS, DreamShaper, SD 1.5, …) with safetensors or PyTorch weights.'],
      };
    case 'invalid_argument':
    case 'shape_mismatch':
      return { level: 'error', title: 'A setting does not fit this model', detail, hints: [] };
    case 'unsupported':
      return { level: 'error', title: 'Not supported', detail, hints: [] };
    case 'aborted':
      return { level: 'info', title: 'Cancelled', detail, hints: [] };
    default:
      return { level: 'error', title: 'Something went wrong', detail, hints: ['The browser console has the details; the page keeps working — try again or change a setting.'] };
  }
}
