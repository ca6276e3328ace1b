/**
 * A read-only zip central-directory reader, just enough for torch.save archives: entries are located
 * through the central directory (zip64 included) and read by byte range, so a multi-GB checkpoint is
 * never loaded whole. Only STORED entries can be read: torch writes every record uncompressed, and a
 * compressed one means the file was re-zipped by something else.
 */
import type { RandomAccessFile } from '../io.js';
import { ResourceLimitError } from '../errors.js';
import { TENSOR_FILE_LIMITS } from '../tensor_file_limits.js';
import { TorchCheckpointError } from './errors.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate, … */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CDH_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;

const METHODS: Record<number, string> = { 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

function u64(dv: DataView, at: number): number {
  const v = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
  return v;
}

export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RandomAccessFile,
    readonly entries: ReadonlyMap<string, ZipEntry>,
  ) {}

  static async read(file: RandomAccessFile): Promise<ZipArchive> {
    const fail = (p: string): never => {
      throw new TorchCheckpointError(file.name, p);
    };
    if (file.size < 22) fail(`${file.size} bytes: too short for a zip archive (truncated?)`);
    // The end-of-central-directory record sits in the last 22 + (comment ≤ 65535) bytes.
    const tailLen = Math.min(file.size, 22 + 0xffff);
    const tailStart = file.size - tailLen;
    const tail = await file.read(tailStart, tailLen);
    const tdv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tdv.getUint32(i, true) === EOCD_SIG && i + 22 + tdv.getUint16(i + 20, true) === tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) fail('no zip end-of-central-directory record: the file is truncated or is not a zip archive');
    let count = tdv.getUint16(eocd + 10, true);
    let cdSize = tdv.getUint32(eocd + 12, true);
    let cdOffset = tdv.getUint32(eocd + 16, true);
    if (tdv.getUint16(eocd + 4, true) !== 0 || tdv.getUint16(eocd + 6, true) !== 0) fail('multi-disk zip archives are not supported');
    const eocdAbs = tailStart + eocd;
    let cdEnd = eocdAbs;
    // zip64: a locator right before the EOCD points at the zip64 EOCD record holding 64-bit counts and offsets.
    if (eocdAbs >= 20) {
      const loc = eocd >= 20 ? tail.subarray(eocd - 20, eocd) : await file.read(eocdAbs - 20, 20);
      const ldv = new DataView(loc.buffer, loc.byteOffset, 20);
      if (ldv.getUint32(0, true) === ZIP64_LOCATOR_SIG) {
        const at = u64(ldv, 8);
        if (at + 56 > eocdAbs - 20) fail('zip64 end-of-central-directory locator points past the end: truncated or corrupt');
        const rec = await file.read(at, 56);
        const rdv = new DataView(rec.buffer, rec.byteOffset, 56);
        if (rdv.getUint32(0, true) !== ZIP64_EOCD_SIG) fail('zip64 end-of-central-directory record not found where its locator points: corrupt archive');
        count = u64(rdv, 32);
        cdSize = u64(rdv, 40);
        cdOffset = u64(rdv, 48);
        cdEnd = at;
      }
    }
    if (cdOffset + cdSize > cdEnd) fail(`central directory (${cdSize} bytes at ${cdOffset}) runs past its end record: truncated or corrupt archive`);
    if (count > cdSize / 46) fail(`central directory claims ${count} entries in ${cdSize} bytes: corrupt archive`);
    // torch.save writes one record per storage and a few more; each entry costs memory, so their number is bounded too.
    const maxRecords = TENSOR_FILE_LIMITS.entries + 64;
    if (count > maxRecords) throw new ResourceLimitError(`${file.name}: the zip archive has ${count} entries, more than ${maxRecords} (TENSOR_FILE_LIMITS.entries + 64)`);
    const cd = await file.read(cdOffset, cdSize);
    const dv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const dec = new TextDecoder('utf-8');
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== CDH_SIG) fail(`central directory entry ${i} is malformed: corrupt archive`);
      const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true), commentLen = dv.getUint16(p + 32, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) fail(`central directory entry ${i} runs past the directory: corrupt archive`);
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      let compressedSize = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      // zip64 extended information (id 1): 8-byte values for exactly the fields that are 0xFFFFFFFF, in this order.
      for (let e = p + 46 + nameLen, end = e + extraLen; e + 4 <= end; ) {
        const id = dv.getUint16(e, true), len = dv.getUint16(e + 2, true);
        if (id === 1) {
          let q = e + 4;
          const take = () => {
            if (q + 8 > e + 4 + len) fail(`entry "${name}": zip64 extra field too short: corrupt archive`);
            const v = u64(dv, q);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
        }
        e += 4 + len;
      }
      const entry: ZipEntry = {
        name,
        method: dv.getUint16(p + 10, true),
        flags: dv.getUint16(p + 8, true),
        crc32: dv.getUint32(p + 16, true),
        compressedSize,
        size,
        localHeaderOffset,
      };
      // Every entry's data lies before the central directory; a shorter file means truncation.
      if (localHeaderOffset + 30 + compressedSize > cdOffset) fail(`entry "${name}" (${compressedSize} bytes at ${localHeaderOffset}) runs into the central directory: truncated or corrupt archive`);
      if (entries.has(name)) fail(`entry "${name}" appears twice in the archive`);
      entries.set(name, entry);
      p += 46 + nameLen + extraLen + commentLen;
    }
    return new ZipArchive(file, entries);
  }

  /** Absolute offset of an entry's data (its local header has its own name/extra lengths). */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const known = this.dataOffsets.get(entry.name);
    if (known !== undefined) return known;
    const fail = (p: string): never => {
      throw new TorchCheckpointError(this.file.name, `entry "${entry.name}" ${p}`);
    };
    if (entry.flags & 1) fail('is encrypted');
    if (entry.method !== 0) fail(`is compressed (${METHODS[entry.method] ?? `method ${entry.method}`}); torch.save writes every record uncompressed (stored), so this archive was re-zipped: re-save it with torch.save or re-zip with \`zip -0\``);
    if (entry.compressedSize !== entry.size) fail(`is stored but its compressed size ${entry.compressedSize} differs from its size ${entry.size}: corrupt archive`);
    const h = await this.file.read(entry.localHeaderOffset, 30);
    const dv = new DataView(h.buffer, h.byteOffset, 30);
    if (dv.getUint32(0, true) !== LFH_SIG) fail(`has no local file header at ${entry.localHeaderOffset}: corrupt archive`);
    const off = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    if (off + entry.size > this.file.size) fail(`(${entry.size} bytes at ${off}) runs past the end of the file: truncated`);
    this.dataOffsets.set(entry.name, off);
    return off;
  }

  /** Reads `length` bytes at `offset` inside a stored entry. */
  async readRange(entry: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
    const base = await this.dataOffset(entry);
    if (offset < 0 || offset + length > entry.size) {
      throw new TorchCheckpointError(this.file.name, `entry "${entry.name}": read of ${length} bytes at ${offset} is past its end (${entry.size} bytes)`);
    }
    return this.file.read(base + offset, length);
  }

  /** Reads a whole stored entry and checks its CRC-32 (for small records such as data.pkl). */
  async readAll(entry: ZipEntry): Promise<Uint8Array> {
    const bytes = await this.readRange(entry, 0, entry.size);
    if (crc32(bytes) !== entry.crc32) throw new TorchCheckpointError(this.file.name, `entry "${entry.name}": CRC-32 mismatch: the file is corrupt`);
    return bytes;
  }
}

let table: Uint32Array | undefined;
export function crc32(bytes: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
