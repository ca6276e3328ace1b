import { FileFormatError } from '../errors.js';

/**
 * Thrown for any unreadable, corrupt or refused PyTorch checkpoint; the message always names the file.
 * `code` is 'unsafe_pickle' for a pickle refused because it would build or call something, else 'file_format'.
 */
export class TorchCheckpointError extends FileFormatError {
  constructor(file: string, problem: string, code: 'file_format' | 'unsafe_pickle' = 'file_format') {
    super(file, problem, code);
  }
}
