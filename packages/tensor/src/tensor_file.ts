/**
 * One face for both weight formats: safetensors and PyTorch (`torch.save` zip) checkpoints. Callers
 * that only list, inspect or read tensors use `openTensorFile` and never care which one they got.
 */
import type { FileSource, RandomAccessFile } from './io.js';
import type { StDType } from './safetensors/format.js';
import { SafetensorsFile, type TargetDType, type TensorData } from './safetensors/read.js';
import { TorchCheckpointFile } from './torch/checkpoint.js';

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

/** Opens a safetensors file or a PyTorch checkpoint: by extension, else by its first bytes (zip or pickle → PyTorch). */
export async function openTensorFile(io: FileSource, path: string): Promise<TensorFile> {
  const file = await io.open(path);
  try {
    return await tensorFileFrom(file, tensorFileFormat(path));
  } catch (e) {
    await file.close();
    throw e;
  }
}

export async function tensorFileFrom(file: RandomAccessFile, format?: TensorFileFormat): Promise<TensorFile> {
  let f = format;
  if (!f) {
    const head = file.size >= 2 ? await file.read(0, 2) : new Uint8Array(0);
    f = (head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80 ? 'pytorch' : 'safetensors';
  }
  return f === 'pytorch' ? TorchCheckpointFile.fromFile(file) : SafetensorsFile.fromFile(file);
}
