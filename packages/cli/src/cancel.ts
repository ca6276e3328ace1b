/**
 * Ctrl-C and SIGTERM as an AbortSignal: the first one aborts what is running (downloads, loading, the
 * generation — each stops at its next check and cleans up), a second one ends the process at once.
 * (No @fewstep import here: main loads this before any command, and `fewstep --help` must stay quick.)
 */

export interface ProcessSignals {
  signal: AbortSignal;
  /** Removes the handlers (the process' default behaviour returns). */
  release(): void;
}

export function bindProcessSignals(): ProcessSignals {
  const controller = new AbortController();
  const names = ['SIGINT', 'SIGTERM'] as const;
  const release = () => {
    for (const n of names) process.off(n, onSignal);
  };
  function onSignal(): void {
    release();
    controller.abort();
  }
  for (const n of names) process.on(n, onSignal);
  return { signal: controller.signal, release };
}

/** True when `e` ends the command as a cancellation: the signal fired, or the error is an abort. */
export async function isCancellation(e: unknown, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return true;
  const { isAbortError } = await import('@fewstep/tensor');
  return isAbortError(e);
}
