/**
 * Progress events of hub downloads, and a small stderr renderer for CLIs: a redrawn bar when the
 * stream is a terminal, one line per downloaded file otherwise, nothing when quiet.
 */
export interface ProgressEvent {
  /** Repo path of the file. */
  file: string;
  /** Bytes on disk so far (resumed bytes included). */
  loaded: number;
  /** Expected size in bytes (-1 when the server did not say). */
  total: number;
  /** 'cached': already in the cache, nothing fetched; 'downloading': bytes arriving; 'done': the file is in place. */
  status: 'cached' | 'downloading' | 'done';
  /** 0-based index of the file among `count` files of a snapshot download. */
  index?: number | undefined;
  count?: number | undefined;
}

export type ProgressCallback = (e: ProgressEvent) => void;

export function formatBytes(n: number): string {
  if (n < 0) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export interface ProgressPrinter {
  onProgress: ProgressCallback;
  /** Clears the bar (call once at the end, also on errors). */
  finish(): void;
}

/**
 * `isTTY`: redraw one status line (`\r`), throttled to ~10/s, and print a line per finished file;
 * otherwise print one line per downloaded file (cached files stay silent). `quiet`: print nothing.
 */
export function createProgressPrinter(write: (s: string) => void, opts: { isTTY: boolean; quiet?: boolean | undefined; width?: number | undefined; now?: (() => number) | undefined}): ProgressPrinter {
  if (opts.quiet) return { onProgress: () => {}, finish: () => {} };
  const now = opts.now ?? (() => Date.now());
  if (!opts.isTTY) {
    return {
      onProgress(e) {
        if (e.status === 'done') write(`downloaded ${e.file} (${formatBytes(e.loaded)})\n`);
      },
      finish() {},
    };
  }
  const active = new Map<string, { loaded: number; total: number; start: number; startBytes: number }>();
  let done = 0;
  let count = 0;
  let lastDraw = 0;
  let drawn = false;
  const width = opts.width ?? 24;
  const clear = () => {
    if (drawn) write('\r\x1b[K');
    drawn = false;
  };
  const draw = () => {
    lastDraw = now();
    // Show the biggest file in flight; the others are summarised by the file counter.
    let cur: [string, { loaded: number; total: number; start: number; startBytes: number }] | undefined;
    for (const a of active) if (!cur || a[1].total > cur[1].total) cur = a;
    if (!cur) return clear();
    const [file, s] = cur;
    const frac = s.total > 0 ? Math.min(1, s.loaded / s.total) : 0;
    const fill = Math.round(frac * width);
    const secs = (now() - s.start) / 1000;
    const rate = secs > 0.5 ? ` ${formatBytes(Math.round((s.loaded - s.startBytes) / secs))}/s` : '';
    const counter = count ? `[${done + 1}/${count}] ` : '';
    write(
      `\r\x1b[K${counter}${file} ${'█'.repeat(fill)}${'░'.repeat(width - fill)} ${formatBytes(s.loaded)}/${formatBytes(s.total)} ${s.total > 0 ? Math.floor(frac * 100) : 0}%${rate}`,
    );
    drawn = true;
  };
  return {
    onProgress(e) {
      if (e.count !== undefined) count = e.count;
      if (e.status === 'downloading') {
        if (!active.has(e.file)) active.set(e.file, { loaded: e.loaded, total: e.total, start: now(), startBytes: e.loaded });
        const s = active.get(e.file)!;
        s.loaded = e.loaded;
        s.total = e.total;
        if (now() - lastDraw >= 100) draw();
        return;
      }
      done++;
      active.delete(e.file);
      if (e.status === 'done') {
        clear();
        write(`downloaded ${e.file} (${formatBytes(e.loaded)})\n`);
      }
      draw();
    },
    finish: clear,
  };
}
