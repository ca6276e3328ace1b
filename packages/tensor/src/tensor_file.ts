/**
 * One face for both weight formats: safetensors and PyTorch (`torch.save` zip) checkpoints. Callers
 * that only list, inspect or read tensors use `openTensorFile` and never care which one they got.
 */
import type { FileSource, RandomAccessFile } from './io.js';
import type { StDType } from './safetensors/format.js';
import { SafetensorsFile, type TargetDType, type TensorData } from './safetensors/read.js';
import { TorchCheckpointFile } from './torch/checkpoint.js';
import { TENSOR_FILE_LIMITS } from './tensor_file_limits.js';

export { TENSOR_FILE_LIMITS, type TensorFileLimits } from './tensor_file_limits.js';

export interface TensorFileInfo {
  name: string;
  dtype: StDType;
  shape: number[];
}

export type TensorFileFormat = 'safetensors' | 'pytorch';

export interface TensorFile {
  readonly format: TensorFileFormat;
  readonly name: string;
  readonly tensors: ReadonlyMap<string, TensorFileInfo>;
  readonly metadata: Record<string, string>;
  has(name: string): boolean;
  info(name: string): TensorFileInfo;
  /** Contiguous little-endian bytes in the stored dtype. */
  readBytes(name: string): Promise<Uint8Array>;
  /** One tensor converted to `target` (default: f32 for floats, i32 for integers). */
  read(name: string, target?: TargetDType): Promise<TensorData>;
  /** Optional: as `read`, possibly a view of a reused buffer, valid until the next read (safetensors; for uploads). */
  readTransient?(name: string, target?: TargetDType): Promise<TensorData>;
  /** Optional: synchronous reads in pieces (safetensors on a local file; see SafetensorsFile.readPiecesSync). */
  readPiecesSync?(name: string, target: TargetDType, sink: (piece: TensorData, firstElement: number) => void, maxBytes?: number): void;
  /** Whether `readPiecesSync` works for this file (it needs RandomAccessFile.readTransientSync). */
  readonly syncReadable?: boolean;
  close(): Promise<void>;
}

/** PyTorch checkpoint extensions (torch.save zip archives). */
export const TORCH_EXTENSIONS = /\.(bin|pt|pth|ckpt)$/i;

/** The format a file name says, or undefined when the extension is not a known one. */
export function tensorFileFormat(path: string): TensorFileFormat | undefined {
  if (/\.safetensors$/i.test(path)) return 'safetensors';
  if (TORCH_EXTENSIONS.test(path)) return 'pytorch';
  return undefined;
}

/**
 * Opens a safetensors file or a PyTorch checkpoint: by extension, else by content (see `tensorFileFrom`).
 * Reading is bounded by TENSOR_FILE_LIMITS: a hostile file gets one error, never unbounded memory or time.
 */
export async function openTensorFile(io: FileSource, path: string): Promise<TensorFile> {
  const file = await io.open(path);
  try {
    return await tensorFileFrom(file, tensorFileFormat(path));
  } catch (e) {
    await file.close();
    throw e;
  }
}

/**
 * Reads `file` as `format`, or, without one, by its content: a safetensors header first (its 8-byte length
 * can start with any byte, 0x80 or "PK" included, so it is tried whenever that length fits the file), then a
 * zip signature ("PK": torch.save's format), then a pickle's PROTO byte 0x80 (the legacy format, refused by
 * name). Anything else gets the safetensors reader's error.
 */
export async function tensorFileFrom(file: RandomAccessFile, format?: TensorFileFormat): Promise<TensorFile> {
  if (format) return format === 'pytorch' ? TorchCheckpointFile.fromFile(file) : SafetensorsFile.fromFile(file);
  const head = await file.read(0, Math.min(file.size, 9));
  const torchLike = (head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80;
  if (!torchLike || safetensorsLengthFits(head, file.size)) {
    try {
      return await SafetensorsFile.fromFile(file);
    } catch (e) {
      if (!torchLike) throw e;
    }
  }
  return TorchCheckpointFile.fromFile(file);
}

/** Whether the first bytes can start a safetensors file of `size` bytes: a header length that fits, then '{'. */
function safetensorsLengthFits(head: Uint8Array, size: number): boolean {
  if (head.length < 9 || head[8] !== 0x7b) return false;
  const dv = new DataView(head.buffer, head.byteOffset, 8);
  const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  return n >= 2 && n <= TENSOR_FILE_LIMITS.safetensorsHeaderBytes && 8 + n <= size;
}
