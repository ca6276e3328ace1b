/**
 * `--shard i/n`: the i-th (1-based, as jest's --shard) of n disjoint slices of a prompt list, by data row
 * (row mod n = i − 1), so a slice never depends on filters or on the other shards, and PartiPrompts' rows —
 * sorted by category — spread evenly. Any job runner can fan a run out: a Kubernetes indexed Job
 * (`--shard $((JOB_COMPLETION_INDEX + 1))/N`), a CI matrix, a Slurm array (`$SLURM_ARRAY_TASK_ID/N` with --array=1-N).
 */
import { UsageError } from '../args.js';

export interface Shard {
  index: number;
  count: number;
}

export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) throw new UsageError(`--shard must be i/n with 1 ≤ i ≤ n (e.g. 2/8), got "${s}"`);
  return { index, count };
}

export const inShard = (row: number, s: Shard): boolean => row % s.count === s.index - 1;

export const shardLabel = (s: Shard): string => `${s.index}/${s.count}`;
