/** Thrown for any unreadable, corrupt or refused PyTorch checkpoint; the message always names the file. */
export class TorchCheckpointError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'TorchCheckpointError';
  }
}
