/**
 * Progress on stderr for generate and batch, from the pipeline's one event stream (downloads, component
 * loads, stage start/end):
 * - stderr not a terminal: one line per finished load / stage ("denoise step 1/1 612 ms"); downloads as
 *   weights-tools' printer writes them (one line per downloaded file);
 * - a terminal: one status line showing the stage that is RUNNING and how long it has run, redrawn a few
 *   times a second (a UNet step may take seconds); downloads as weights-tools' per-file bar;
 * - quiet: nothing.
 * `note` prints a line above the status line; `prefix` leads the status line (batch: "[3/20, ETA 41 s] ").
 * Lines and the status line may quote files (names, config values): their control characters are shown escaped.
 */
import type { ProgressEvent } from '@fewstep/models';
import { createProgressPrinter, type DownloadProgressEvent } from '@fewstep/weights-tools';
import type { CliIO } from '../command.js';
import { terminalSafe } from '../terminal.js';

const STAGE_LABEL: Record<string, string> = {
  tokenize: 'tokenize',
  text_encoder: 'text encoder',
  encode_image: 'encode image',
  denoise: 'denoise',
  decode: 'decode',
};

/** 1.2 ms, 45 ms, 12.3 s: the stage-time format. */
export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`);

/** 0.4 s, 12 s, 3m 05s, 1h 02m: elapsed and remaining times. */
export function fmtDuration(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60), rs = Math.round(s - m * 60);
  if (m < 60) return `${m}m ${String(rs).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** What an event is about: "load unet", "denoise step 2/4", "decode". */
export function describeEvent(e: ProgressEvent): string {
  if (e.type === 'load') return `load ${e.component}`;
  if (e.type !== 'stage') return e.file;
  const label = STAGE_LABEL[e.stage] ?? e.stage;
  if (e.stage === 'denoise' && e.step !== undefined) return `${label} step ${e.step + 1}/${e.steps ?? '?'}`;
  return e.cached ? `${label} (cached)` : label;
}

export interface ProgressUI {
  /** Download, load and stage events (pass it as the pipeline's and the downloads' onProgress). */
  onProgress(e: ProgressEvent): void;
  /** Prints a line (above the status line on a terminal). */
  note(s: string): void;
  /** Starts the status line's text (batch: the image counter and ETA). */
  prefix: string;
  /**
   * Work of the command's own (e.g. "CLIP score"): on a terminal the status line shows `label` and how long it
   * has run until the returned function is called; elsewhere nothing (the command prints its own lines).
   */
  task(label: string): () => void;
  /** Clears the status line and stops its timer; call on every way out. */
  finish(): void;
}

export interface ProgressOptions {
  quiet: boolean;
  /** Without a terminal: print a line per finished stage (batch prints one line per image instead). */
  stageLines?: boolean | undefined;
  /** Redraws per second of the status line (default 5). */
  redrawPerSecond?: number | undefined;
  now?: (() => number) | undefined;
}

export function createProgressUI(io: CliIO, opts: ProgressOptions): ProgressUI {
  const now = opts.now ?? (() => performance.now());
  const downloads = createProgressPrinter(io.stderr, { isTTY: io.isTTY, quiet: opts.quiet });
  const noTask = () => () => {};
  if (opts.quiet) return { onProgress: () => {}, note: () => {}, prefix: '', task: noTask, finish: () => {} };
  let downloading = false;
  const endDownloads = () => {
    if (downloading) downloads.finish();
    downloading = false;
  };
  if (!io.isTTY) {
    const stageLines = opts.stageLines ?? true;
    const ui: ProgressUI = {
      prefix: '',
      onProgress(e) {
        if (e.type === 'download') return downloads.onProgress(e as DownloadProgressEvent);
        if (e.status === 'end' && (stageLines || e.type === 'load')) io.stderr(`${terminalSafe(`${ui.prefix}${describeEvent(e)}`)} ${fmtMs(e.ms)}\n`);
      },
      note: (s) => io.stderr(`${terminalSafe(s)}\n`),
      task: noTask,
      finish: () => {},
    };
    return ui;
  }
  let running: { label: string; start: number } | null = null;
  let drawn = false;
  /** What the status line shows now ('' when cleared): an unchanged line is not written again. */
  let shown = '';
  let timer: ReturnType<typeof setInterval> | null = null;
  // A terminal that reports no size (0 columns, e.g. under `script`) gets 80.
  const width = () => Math.max(20, (io.columns || 80) - 1);
  const clear = () => {
    if (drawn) io.stderr('\r\x1b[K');
    drawn = false;
    shown = '';
  };
  const draw = () => {
    if (!running || downloading) return;
    const full = terminalSafe(`${ui.prefix}${running.label} ${fmtDuration((now() - running.start) / 1000)}`);
    const text = full.length > width() ? full.slice(0, width() - 1) + '…' : full;
    if (drawn && text === shown) return;
    io.stderr(`\r\x1b[K${text}`);
    drawn = true;
    shown = text;
  };
  const stopTimer = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  const start = (label: string) => {
    running = { label, start: now() };
    draw();
    if (!timer) {
      timer = setInterval(draw, 1000 / (opts.redrawPerSecond ?? 5));
      // The timer must never keep the process alive on its own.
      timer.unref?.();
    }
  };
  const ui: ProgressUI = {
    prefix: '',
    task(label) {
      endDownloads();
      start(label);
      const mine = running;
      return () => {
        if (running === mine) running = null;
      };
    },
    onProgress(e) {
      if (e.type === 'download') {
        if (!downloading) clear();
        downloading = true;
        return downloads.onProgress(e as DownloadProgressEvent);
      }
      endDownloads();
      if (e.status === 'start') start(describeEvent(e));
      else running = null;
    },
    note(s) {
      endDownloads();
      clear();
      io.stderr(`${terminalSafe(s)}\n`);
      draw();
    },
    finish() {
      stopTimer();
      endDownloads();
      running = null;
      clear();
    },
  };
  return ui;
}

/** "tokenize 1.2 ms, text_encoder 40 ms, denoise 600 ms (2 steps), decode 90 ms" from the pipeline's timings. */
export function formatTimings(t: Record<string, number>): string {
  const steps = Object.keys(t).filter((k) => /^denoise\.\d+$/.test(k)).length;
  return Object.entries(t)
    .filter(([k]) => !/^denoise\.\d+$/.test(k) && k !== 'total')
    .map(([k, v]) => `${k} ${fmtMs(v)}${k === 'denoise' ? ` (${steps} step${steps === 1 ? '' : 's'})` : ''}`)
    .join(', ');
}

/** Remaining seconds from the images done so far (their mean time × the images left); null before the first. */
export function eta(secondsPerImage: readonly number[], left: number): number | null {
  if (secondsPerImage.length === 0) return null;
  // The last few images predict the next ones best (the first carries shader compilation).
  const recent = secondsPerImage.length > 1 ? secondsPerImage.slice(1).slice(-20) : secondsPerImage;
  return (recent.reduce((a, b) => a + b, 0) / recent.length) * left;
}
