import { FileFormatError } from '../errors.js';
import { oneLine } from '../tensor_file_limits.js';

/** safetensors on-disk dtypes (https://github.com/huggingface/safetensors, "format" section). */
export type StDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U16' | 'U32' | 'U64';

export const ST_DTYPE_BYTES: Record<StDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
};

export interface TensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}


/** Thrown for any malformed safetensors file (code 'file_format'); the message always names the file and is one line. */
export class SafetensorsError extends FileFormatError {
  constructor(file: string, problem: string) {
    super(file, oneLine(problem));
  }
}
