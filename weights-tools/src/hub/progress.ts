/**
 * Download progress as `DownloadProgressEvent`s (the event shape of @fewstep/models' progress stream),
 * and a small stderr renderer for CLIs: a redrawn bar when the stream is a terminal, one line per
 * downloaded file otherwise, nothing when quiet.
 *
 * Per file: 'initiate' (the file is part of the download; a snapshot announces all its files before
 * the first transfer), 'progress' while bytes arrive (`loaded` counts resumed bytes too), 'done' once
 * it is in the snapshot folder — with `cached: true` when it was already in the cache (no transfer).
 * File names come from the hub: the printer shows their control characters escaped (terminalSafe).
 */
import type { DownloadProgressEvent } from '@fewstep/models';
import { terminalSafe } from '../terminal.js';

export type { DownloadProgressEvent };
export type DownloadProgressCallback = (e: DownloadProgressEvent) => void;

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
  onProgress: DownloadProgressCallback;
  /** Clears the bar (call once at the end, also on errors). */
  finish(): void;
}

interface Active {
  loaded: number;
  total: number | null;
  start: number;
  startBytes: number;
}

/**
 * `isTTY`: redraw one status line (`\r`), throttled to ~10/s, with a `[k/n]` counter over the files
 * announced so far, and print a line per downloaded file; otherwise print one line per downloaded file
 * (cached files stay silent). `quiet`: print nothing.
 */
export function createProgressPrinter(write: (s: string) => void, opts: { isTTY: boolean; quiet?: boolean | undefined; width?: number | undefined; now?: (() => number) | undefined }): ProgressPrinter {
  if (opts.quiet) return { onProgress: () => {}, finish: () => {} };
  const now = opts.now ?? (() => Date.now());
  const downloaded = (e: DownloadProgressEvent) => `downloaded ${terminalSafe(e.file)} (${formatBytes(e.loaded)})\n`;
  if (!opts.isTTY) {
    return {
      onProgress(e) {
        if (e.status === 'done' && !e.cached) write(downloaded(e));
      },
      finish() {},
    };
  }
  // Keyed by repo and file: a model and its LoRA may both have a config.json.
  const key = (e: DownloadProgressEvent) => `${e.repo}\0${e.file}`;
  const active = new Map<string, Active & { file: string }>();
  const announced = new Set<string>();
  let done = 0;
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
    let cur: (Active & { file: string }) | undefined;
    for (const a of active.values()) if (!cur || (a.total ?? -1) > (cur.total ?? -1)) cur = a;
    if (!cur) return clear();
    const total = cur.total ?? -1;
    const frac = total > 0 ? Math.min(1, cur.loaded / total) : 0;
    const fill = Math.round(frac * width);
    const secs = (now() - cur.start) / 1000;
    const rate = secs > 0.5 ? ` ${formatBytes(Math.round((cur.loaded - cur.startBytes) / secs))}/s` : '';
    const counter = announced.size > 1 ? `[${Math.min(done + 1, announced.size)}/${announced.size}] ` : '';
    write(
      `\r\x1b[K${counter}${terminalSafe(cur.file)} ${'█'.repeat(fill)}${'░'.repeat(width - fill)} ${formatBytes(cur.loaded)}/${formatBytes(total)} ${total > 0 ? Math.floor(frac * 100) : 0}%${rate}`,
    );
    drawn = true;
  };
  return {
    onProgress(e) {
      const k = key(e);
      if (e.status === 'initiate') {
        announced.add(k);
        return;
      }
      announced.add(k);
      if (e.status === 'progress') {
        let s = active.get(k);
        if (!s) active.set(k, (s = { file: e.file, loaded: e.loaded, total: e.total, start: now(), startBytes: e.loaded }));
        s.loaded = e.loaded;
        s.total = e.total;
        if (now() - lastDraw >= 100) draw();
        return;
      }
      done++;
      active.delete(k);
      if (!e.cached) {
        clear();
        write(downloaded(e));
      }
      draw();
    },
    finish: clear,
  };
}
