/**
 * What the CLI prints that came from a file or the network (tensor and pickle global names, metadata, hub file
 * names, error messages) goes through terminalSafe: control characters are shown escaped (`\x1b`), never sent
 * to the terminal. The function itself lives in @fewstep/weights-tools/terminal (dependency-free), so the hub's
 * progress printer and the CLI share one definition; this module is the CLI's name for it.
 */
export { terminalSafe, terminalSafeJson } from '@fewstep/weights-tools/terminal';
