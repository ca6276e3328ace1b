// Prints one plain closing line, "Tests: N passed, N failed, N skipped", that CI systems read.
import type { Reporter } from 'vitest/reporters';

interface TaskLike {
  type: string;
  mode?: string;
  result?: { state?: string };
  tasks?: TaskLike[];
}

export default class SummaryReporter implements Reporter {
  onFinished(files: TaskLike[] = []): void {
    let passed = 0, failed = 0, skipped = 0;
    const walk = (t: TaskLike) => {
      if (t.tasks) t.tasks.forEach(walk);
      if (t.type !== 'test') return;
      const s = t.result?.state;
      if (s === 'pass') passed++;
      else if (s === 'fail') failed++;
      else skipped++;
    };
    files.forEach(walk);
    // Files that failed to load count as failures too.
    failed += files.filter((f) => f.result?.state === 'fail' && !(f.tasks ?? []).length).length;
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
