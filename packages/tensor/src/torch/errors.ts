import { FileFormatError } from '../errors.js';
import { oneLine } from '../tensor_file_limits.js';

/**
 * Thrown for any unreadable, corrupt or refused PyTorch checkpoint; the message always names the file.
 * `code` is 'unsafe_pickle' for a pickle refused because it would build or call something, else 'file_format'.
 * The problem is kept to one line (names and text from the file may hold anything: line breaks are escaped).
 */
export class TorchCheckpointError extends FileFormatError {
  constructor(file: string, problem: string, code: 'file_format' | 'unsafe_pickle' = 'file_format') {
    super(file, oneLine(problem), code);
  }
}
