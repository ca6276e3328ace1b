/**
 * Text from a file or the network, made safe to print on a terminal: every control character is shown
 * escaped instead of acting on the terminal — C0 (`\x00`–`\x1f`, so ESC sequences such as `ESC[2J`, and `\r`
 * that would overwrite a line), DEL, C1 (`\x80`–`\x9f`, where 0x9b is a one-character CSI), the Unicode line
 * and paragraph separators and the bidi embedding / override / isolate controls (which reorder what follows).
 * `\xHH` below U+0100, `\uHHHH` above. A line break meant as one (`keepNewlines`) stays a line break.
 *
 * The CLI prints tensor names, pickle global names, hub file names and error messages through this one
 * function (packages/cli/src/terminal.ts re-exports it); the download progress printer uses it for file names.
 * It has no dependencies, so `import … from '@fewstep/weights-tools/terminal'` loads nothing else.
 */

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// eslint-disable-next-line no-control-regex
const CONTROL_BUT_LF = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const escapeChar = (c: string): string => {
  const n = c.charCodeAt(0);
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
};

/** `s` with its control characters shown escaped (see above); `keepNewlines` leaves `\n` as it is. */
export function terminalSafe(s: string, opts: { keepNewlines?: boolean | undefined } = {}): string {
  return s.replace(opts.keepNewlines ? CONTROL_BUT_LF : CONTROL, escapeChar);
}

/**
 * JSON for a terminal: JSON.stringify already escapes C0, but not DEL, C1, the separators or bidi controls;
 * those are written as `\uXXXX` escapes (still the same JSON value).
 */
export function terminalSafeJson(value: unknown, space?: number): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(value, null, space).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
