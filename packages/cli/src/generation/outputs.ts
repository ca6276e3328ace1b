/**
 * Output files of generate and batch: where they go (checked before anything is loaded), their names, their
 * format (PNG by default; JPEG and WebP through sharp) and the generation parameters they carry:
 * - PNG: @fewstep/models' pngTextChunks — A1111's "parameters" tEXt/iTXt chunk and the same as JSON in "fewstep";
 * - JPEG / WebP: the same parameters text as EXIF UserComment (what A1111 writes into its JPEGs; libvips stores
 *   it as ASCII, so non-ASCII characters are transliterated there) and, exactly, in XMP: dc:description holds
 *   the parameters text, fewstep:parameters the JSON.
 */
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { encodePng, parametersText, pngTextChunks, type GenerationInfo, type RGBImage } from '@fewstep/models';
import { UsageError } from '../args.js';
import { VERSION } from '../version.js';
import { checkWritable, partialPath, removeStaleTemps } from '../write_atomic.js';
import type { ModelOptions } from './flags.js';
import { loadSharp } from './image_inputs.js';

export type OutputFormat = 'png' | 'jpeg' | 'webp';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['png', 'jpeg', 'webp'];

/** The extension each format's files get. */
export const FORMAT_EXTENSION: Readonly<Record<OutputFormat, string>> = { png: '.png', jpeg: '.jpg', webp: '.webp' };

/** Quality of JPEG and WebP outputs (sharp's 1–100 scale). */
export const LOSSY_QUALITY = 92;

/** The format a file name asks for by its extension, or null. */
export function formatOfPath(path: string): OutputFormat | null {
  const ext = extname(path).toLowerCase();
  return ext === '.png' ? 'png' : ext === '.jpg' || ext === '.jpeg' ? 'jpeg' : ext === '.webp' ? 'webp' : null;
}

/** File-name-safe, lower-case slug of a prompt (at most `max` characters). */
export function slugify(prompt: string, max = 48): string {
  const s = prompt
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return s.slice(0, max).replace(/-+$/, '') || 'image';
}

/** `0000-a-photo-of-a-cat.png`: names that sort in batch order. */
export function imageFileName(index: number, prompt: string, format: OutputFormat = 'png'): string {
  return `${String(index).padStart(4, '0')}-${slugify(prompt)}${FORMAT_EXTENSION[format]}`;
}

/**
 * Checks that `dir` is (or can be created as) a writable folder, by trying: a file is created and removed in it,
 * or — when it does not exist yet — a folder in its nearest existing parent (access() says yes to root on a
 * read-only mount or /sys, where the real write would fail after the images were made). Leaves nothing behind;
 * removes the temp files that killed runs left in the folder (write_atomic.ts).
 */
export async function checkOutDir(dir: string, flag = '--out-dir'): Promise<void> {
  let d = resolve(dir);
  for (;;) {
    const st = await stat(d).catch(() => undefined);
    if (st) {
      if (!st.isDirectory()) throw new UsageError(`${flag} ${dir}: ${d === resolve(dir) ? 'is not a folder' : `${d} is not a folder`}`);
      if (d === resolve(dir)) await removeStaleTemps(d);
      const code = await probeFolder(d, d !== resolve(dir));
      if (code) throw new UsageError(`${flag} ${dir}: ${d === resolve(dir) ? `folder is not writable (${code})` : `cannot create it (${d} is not writable: ${code})`}`);
      return;
    }
    const up = dirname(d);
    if (up === d) throw new UsageError(`${flag} ${dir}: cannot create it`);
    d = up;
  }
}

/** Creates and removes a file (or a folder) named like a temp file of this process in `dir`; the error code, or undefined. */
async function probeFolder(dir: string, asFolder: boolean): Promise<string | undefined> {
  const probe = partialPath(join(dir, '.fewstep-probe'));
  try {
    if (asFolder) await mkdir(probe);
    else await (await open(probe, 'w')).close();
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  } finally {
    await rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Checks an --out file (its extension names the format, its folder exists and takes a file); returns the format. */
export async function checkOutFile(path: string): Promise<OutputFormat> {
  const format = formatOfPath(path);
  if (!format) throw new UsageError(`--out must name a .png, .jpg, .jpeg or .webp file (or - for a PNG on stdout), got "${path}"`);
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) throw new UsageError(`--out ${path} is a folder; use --out-dir for a folder`);
  await checkWritable(path, `--out ${path}`);
  return format;
}

/** XML text content: escaped, and without the control characters XML 1.0 cannot hold. */
const xmlText = (s: string) =>
  s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The XMP packet of a JPEG/WebP output: dc:description = the A1111 parameters text, fewstep:parameters = the JSON. */
export function xmpPacket(parameters: string, json: string): string {
  return (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n' +
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n' +
    '  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:fewstep="urn:fewstep:xmp:1.0">\n' +
    `   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">${xmlText(parameters)}</rdf:li></rdf:Alt></dc:description>\n` +
    `   <fewstep:parameters>${xmlText(json)}</fewstep:parameters>\n` +
    '  </rdf:Description>\n' +
    ' </rdf:RDF>\n' +
    '</x:xmpmeta>\n' +
    '<?xpacket end="w"?>'
  );
}

/** An image file's bytes in `format` with the generation parameters embedded. */
export async function encodeImage(img: RGBImage, format: OutputFormat, info: GenerationInfo): Promise<Uint8Array> {
  if (format === 'png') return encodePng(img, pngTextChunks(info));
  const sharp = await loadSharp();
  const parameters = parametersText(info);
  const s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .withExif({ IFD2: { UserComment: parameters } })
    .withXmp(xmpPacket(parameters, JSON.stringify(info)));
  const out = format === 'jpeg' ? await s.jpeg({ quality: LOSSY_QUALITY }).toBuffer() : await s.webp({ quality: LOSSY_QUALITY }).toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** The parameters every image of generate and batch records: the run's settings, the model flags, the version. */
export function generationInfo(
  model: ModelOptions,
  loaded: { sampler: string; vaeDtype: string },
  negativePrompt: string | undefined,
  run: { prompt: string; steps: number; guidance: number; seed: number | null; width: number; height: number; batchIndex: number; batchSize: number },
): GenerationInfo {
  return {
    ...run,
    negativePrompt: negativePrompt ?? '',
    sampler: loaded.sampler,
    model: model.model,
    revision: model.revision,
    dtype: model.dtype,
    vae: model.vae,
    vaeDtype: loaded.vaeDtype,
    loras: model.loras.length ? model.loras : undefined,
    version: VERSION,
  };
}
