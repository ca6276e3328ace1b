// CPU references for token/position embedding and diffusers' sinusoidal timestep embedding.

/**
 * ids [T] (flattened [B, L]) into table [V, D], plus positions[l] for l = t mod L when given.
 * Out-of-range ids contribute zeros (the GPU kernel's documented behaviour).
 */
export function cpuEmbedding(ids: ArrayLike<number>, L: number, table: ArrayLike<number>, V: number, D: number, positions?: ArrayLike<number>): Float32Array {
  const y = new Float32Array(ids.length * D);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    const l = t % L;
    for (let c = 0; c < D; c++) {
      const v = id >= 0 && id < V ? table[id * D + c]! : 0;
      y[t * D + c] = positions ? v + positions[l * D + c]! : v;
    }
  }
  return y;
}

export interface RefTimestepOptions {
  flipSinToCos: boolean;
  downscaleFreqShift: number;
  scale?: number | undefined;
  maxPeriod?: number | undefined;
}

/**
 * diffusers 0.25.1 `get_timestep_embedding` with torch's f32 rounding at every step (CPU semantics:
 * scalars are cast to f32 before mul/div); only sin/cos are taken in float64 of the f32 argument.
 */
export function cpuTimestepEmbedding(timesteps: ArrayLike<number>, dim: number, o: RefTimestepOptions): Float32Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const scale = o.scale ?? 1, maxPeriod = o.maxPeriod ?? 10000;
  const freq = new Float32Array(half);
  for (let i = 0; i < half; i++) freq[i] = f(Math.exp(f(f(f(-Math.log(maxPeriod)) * i) / f(half - o.downscaleFreqShift))));
  const B = timesteps.length;
  const y = new Float32Array(B * dim);
  for (let b = 0; b < B; b++) {
    const t = f(timesteps[b]!);
    for (let i = 0; i < half; i++) {
      const a = f(f(t * freq[i]!) * f(scale));
      const s = Math.sin(a), c = Math.cos(a);
      y[b * dim + i] = o.flipSinToCos ? c : s;
      y[b * dim + half + i] = o.flipSinToCos ? s : c;
    }
  }
  return y;
}
