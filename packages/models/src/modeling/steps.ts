/**
 * A forward written once and run two ways. Written as a generator that yields between its segments (a UNet's
 * resnets and attentions, a text encoder's layers): `drain` runs it straight through (the synchronous
 * `forward`), `drainAsync` awaits `pause` at every yield — low memory's streamed weights pace their uploads
 * against the GPU there (ParameterCache.pace). Scopes that span yields are opened by hand (Device.openScope) and
 * closed in `finally`, which also runs when a pause fails (the generator is returned).
 */
export type Steps<T> = Generator<void, T, void>;

/** Runs `steps` to the end without pausing. */
export function drain<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * Runs `steps`, awaiting `pause()` at every yield (without one, straight through); a failed pause ends the
 * generator (its `finally` blocks run).
 */
export async function drainAsync<T>(steps: Steps<T>, pause?: (() => Promise<void>) | undefined): Promise<T> {
  if (!pause) return drain(steps);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    try {
      await pause();
    } catch (e) {
      steps.return(undefined as T);
      throw e;
    }
  }
}
