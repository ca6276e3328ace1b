// PyTorch checkpoints (torch.save zip) without Python: the zip reader, the whitelist unpickler and
// TorchCheckpointFile against the torch_checkpoints golden case (every tensor bit-exact vs the safetensors
// copy and the case's sha256), refusal of evil.bin and of hand-built hostile pickles, corrupt files, and the
// .bin paths of the weight loader (findWeightFiles, SafetensorsSource). CPU only.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FewstepError,
  FileFormatError,
  MemoryFile,
  SafetensorsFile,
  TorchCheckpointError,
  TorchCheckpointFile,
  f16BitsToF32,
  openTensorFile,
  tensorFileFrom,
  type RandomAccessFile,
} from '@fewstep/tensor';
import { ZipArchive, crc32, unpickle } from '@fewstep/tensor/testing';
import { nodeFiles } from '@fewstep/tensor/node';
import { SafetensorsSource, detectTaesdPart, findWeightFiles, taesdDiffusersKey, taesdKeyMap } from '@fewstep/models';

const G = new URL('../fixtures/golden/torch_checkpoints/', import.meta.url).pathname;
const TAESD = new URL('../fixtures/golden/taesd/', import.meta.url).pathname;

interface KeyCase {
  key: string;
  diffusers_key?: string;
  dtype: string;
  shape: number[];
  stride?: number[];
  storage_offset?: number;
  is_contiguous?: boolean;
  sha256_le_bytes_contiguous: string;
  first_values_bits?: string[];
  storage_key: string;
}
const caseJson = JSON.parse(readFileSync(join(G, 'case.json'), 'utf8')) as {
  taesd: { keys: Record<string, KeyCase[]> };
  mixed_state_dict: { keys: KeyCase[] };
};
const ST_OF: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64' };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

// ------------------------------------------------------------------ hand-built pickles and zips

/** Protocol-2 pickle pieces, enough to hand-build state dicts and hostile payloads. */
const pk = {
  proto: [0x80, 2],
  str: (s: string) => {
    const b = new TextEncoder().encode(s);
    return [0x58, b.length & 255, (b.length >> 8) & 255, 0, 0, ...b];
  },
  int: (n: number) => (n < 256 ? [0x4b, n] : [0x4d, n & 255, n >> 8]),
  global: (m: string, n: string) => [0x63, ...new TextEncoder().encode(`${m}\n${n}\n`)],
  mark: [0x28],
  tuple: [0x74],
  emptyTuple: [0x29],
  emptyDict: [0x7d],
  reduce: [0x52],
  persid: [0x51],
  setitems: [0x75],
  false: [0x89],
  stop: [0x2e],
};
const bytesOf = (...parts: number[][]) => Uint8Array.from(parts.flat());

/** A tensor record: _rebuild_tensor_v2(persid(('storage', torch.<type>, key, 'cpu', numel)), offset, size, stride, False, OrderedDict()). */
function pkTensor(type: string, key: string, numel: number, offset: number, size: number[], stride: number[]): number[][] {
  const tup = (xs: number[]) => [...pk.mark, ...xs.flatMap(pk.int), ...pk.tuple];
  return [
    pk.global('torch._utils', '_rebuild_tensor_v2'),
    pk.mark,
    pk.mark, pk.str('storage'), pk.global('torch', type), pk.str(key), pk.str('cpu'), pk.int(numel), pk.tuple, pk.persid,
    pk.int(offset), tup(size), tup(stride), pk.false,
    pk.global('collections', 'OrderedDict'), pk.emptyTuple, pk.reduce,
    pk.tuple, pk.reduce,
  ];
}

interface ZipIn {
  name: string;
  data: Uint8Array;
  method?: number;
}
/** A minimal zip writer (no compression is performed; `method` only labels the entry). zip64 adds the zip64 end records. */
function makeZip(entries: ZipIn[], zip64 = false): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const h = new Uint8Array(30 + name.length);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, 0x04034b50, true);
    dv.setUint16(4, 20, true);
    dv.setUint16(8, e.method ?? 0, true);
    dv.setUint32(14, crc32(e.data), true);
    dv.setUint32(18, e.data.length, true);
    dv.setUint32(22, e.data.length, true);
    dv.setUint16(26, name.length, true);
    h.set(name, 30);
    const c = new Uint8Array(46 + name.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, e.method ?? 0, true);
    cv.setUint32(16, crc32(e.data), true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, pos, true);
    c.set(name, 46);
    central.push(c);
    parts.push(h, e.data);
    pos += h.length + e.data.length;
  }
  const cdOffset = pos;
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  parts.push(...central);
  pos += cdSize;
  if (zip64) {
    const r = new Uint8Array(56);
    const rv = new DataView(r.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setUint32(4, 44, true);
    rv.setUint32(24, entries.length, true);
    rv.setUint32(32, entries.length, true);
    rv.setUint32(40, cdSize, true);
    rv.setUint32(48, cdOffset, true);
    const l = new Uint8Array(20);
    const lv = new DataView(l.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setUint32(8, pos, true);
    lv.setUint32(16, 1, true);
    parts.push(r, l);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, zip64 ? 0xffff : entries.length, true);
  ev.setUint16(10, zip64 ? 0xffff : entries.length, true);
  ev.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, zip64 ? 0xffffffff : cdOffset, true);
  parts.push(end);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

/** A one-tensor checkpoint: {'w': FloatStorage '0' of 4 floats viewed as [2, 2]} in folder `folder`. */
function tinyCheckpoint(opts: { folder?: string; values?: number[]; bigEndian?: boolean; pickle?: Uint8Array; zip64?: boolean; pklMethod?: number } = {}): Uint8Array {
  const folder = opts.folder ?? 'archive';
  const values = opts.values ?? [1, 2, 3, 4];
  const data = new Uint8Array(values.length * 4);
  values.forEach((v, i) => new DataView(data.buffer).setFloat32(i * 4, v, !opts.bigEndian));
  const pickle = opts.pickle ?? bytesOf(pk.proto, pk.emptyDict, pk.mark, pk.str('w'), ...pkTensor('FloatStorage', '0', values.length, 0, [2, 2], [2, 1]), pk.setitems, pk.stop);
  const entries: ZipIn[] = [{ name: `${folder}/data.pkl`, data: pickle, method: opts.pklMethod }];
  if (opts.bigEndian) entries.push({ name: `${folder}/byteorder`, data: new TextEncoder().encode('big') });
  entries.push({ name: `${folder}/data/0`, data }, { name: `${folder}/version`, data: new TextEncoder().encode('3\n') });
  return makeZip(entries, opts.zip64);
}

const fromBytes = (name: string, b: Uint8Array) => TorchCheckpointFile.fromFile(new MemoryFile(name, b));

// ---------------------------------------------------------------------------------------------- tests

describe('TorchCheckpointFile: golden checkpoints', () => {
  it('diffusion_pytorch_model.bin equals the safetensors copy tensor by tensor (f32/f16/bf16/int64, views, 0-dim)', async () => {
    const t = await TorchCheckpointFile.open(nodeFiles, join(G, 'diffusion_pytorch_model.bin'));
    const s = await SafetensorsFile.open(nodeFiles, join(G, 'diffusion_pytorch_model.safetensors'));
    try {
      expect(t.format).toBe('pytorch');
      expect(t.folder).toBe('diffusion_pytorch_model');
      expect([...t.tensors.keys()]).toEqual(caseJson.mixed_state_dict.keys.map((k) => k.key));
      expect([...t.tensors.keys()].sort()).toEqual([...s.tensors.keys()].sort());
      for (const k of caseJson.mixed_state_dict.keys) {
        const info = t.info(k.key);
        expect(info.dtype, k.key).toBe(ST_OF[k.dtype]);
        expect(info.dtype, k.key).toBe(s.info(k.key).dtype);
        expect(info.shape, k.key).toEqual(k.shape);
        expect(info.stride, k.key).toEqual(k.stride);
        expect(info.storageOffset, k.key).toBe(k.storage_offset);
        expect(info.contiguous, k.key).toBe(k.is_contiguous);
        expect(info.storage.key, k.key).toBe(k.storage_key);
        const bytes = await t.readBytes(k.key);
        expect(sha(bytes), k.key).toBe(k.sha256_le_bytes_contiguous);
        expect(Buffer.from(bytes).equals(Buffer.from(await s.readBytes(k.key))), k.key).toBe(true);
        if (info.dtype !== 'I64') expect(await t.read(k.key, 'f32'), k.key).toEqual(await s.read(k.key, 'f32'));
        if (k.first_values_bits && (info.dtype === 'F16' || info.dtype === 'BF16')) {
          const bits = new Uint16Array(bytes.slice().buffer);
          expect([...bits.subarray(0, k.first_values_bits.length)].map((b) => `0x${b.toString(16).padStart(4, '0')}`), k.key).toEqual(k.first_values_bits);
        }
      }
      // Shared storage: three tensors view record data/6; the column is stride [10] from element 3.
      expect(['proj.weight', 'proj_t.weight', 'proj.column'].map((k) => t.info(k).storageUsers)).toEqual([3, 3, 3]);
      expect(t.info('conv_in.weight').storageUsers).toBe(1);
      const w = (await t.read('proj.weight', 'f32')) as Float32Array;
      const col = (await t.read('proj.column', 'f32')) as Float32Array;
      expect([...col]).toEqual([0, 1, 2, 3, 4, 5].map((r) => w[r * 10 + 3]));
      // int64 and 0-dim: 12345678901 survives as raw bytes, does not fit i32.
      expect(new BigInt64Array((await t.readBytes('norm.num_batches_tracked')).slice().buffer)[0]).toBe(12345678901n);
      await expect(t.read('norm.num_batches_tracked')).rejects.toThrow('tensor "norm.num_batches_tracked": I64 value 12345678901 does not fit in i32');
      expect([...(await t.read('text_model.embeddings.position_ids'))]).toEqual(Array.from({ length: 77 }, (_, i) => i));
      expect(t.info('logit_scale').shape).toEqual([]);
      expect([...(await t.read('logit_scale'))]).toEqual([new Float32Array([2.6591999530792236])[0]]);
      // f16 target keeps half bits exactly; bf16 → f32 is exact.
      expect(await t.read('time_embedding.linear_1.weight', 'f16')).toEqual(await s.read('time_embedding.linear_1.weight', 'f16'));
      expect(f16BitsToF32((await t.read('time_embedding.linear_1.weight', 'f16'))[0]!)).toBe(65504);
      expect((await t.read('norm.bias'))[1]).toBe(9.183549615799121e-41);
      expect(() => t.info('nope')).toThrow(`${join(G, 'diffusion_pytorch_model.bin')}: no tensor named "nope"`);
    } finally {
      await t.close();
      await s.close();
    }
  });

  it('reads only the byte range of the one storage a tensor needs', async () => {
    const mem = new MemoryFile('d.bin', readFileSync(join(G, 'diffusion_pytorch_model.bin')));
    const reads: [number, number][] = [];
    const spy: RandomAccessFile = { name: mem.name, size: mem.size, close: () => mem.close(), read: (o, l) => (reads.push([o, l]), mem.read(o, l)) };
    const t = await TorchCheckpointFile.fromFile(spy);
    reads.length = 0;
    await t.read('proj.column');
    // Local header (30 bytes, once per record) + the span element 3 … 53 of data/6 (51 floats).
    expect(reads.map((r) => r[1])).toEqual([30, 51 * 4]);
    reads.length = 0;
    await t.read('proj.weight');
    expect(reads.map((r) => r[1])).toEqual([60 * 4]); // the record's data offset is cached
  });

  it('taesd_encoder.pth / taesd_decoder.pth: original keys, shapes and values; diffusers names in one place', async () => {
    const taesd = await SafetensorsFile.open(nodeFiles, join(TAESD, 'model.safetensors'));
    try {
      for (const [file, part] of [['taesd_encoder.pth', 'encoder'], ['taesd_decoder.pth', 'decoder']] as const) {
        const t = await TorchCheckpointFile.open(nodeFiles, join(G, file));
        try {
          const keys = caseJson.taesd.keys[file]!;
          expect(t.folder).toBe(file.replace('.pth', ''));
          expect([...t.tensors.keys()]).toEqual(keys.map((k) => k.key));
          expect(detectTaesdPart(t.tensors.keys())).toBe(part);
          const map = taesdKeyMap(t.tensors.keys());
          expect([...map.keys()]).toEqual(keys.map((k) => k.diffusers_key));
          for (const k of keys) {
            expect(t.info(k.key).shape, k.key).toEqual(k.shape);
            expect(taesdDiffusersKey(part, k.key)).toBe(k.diffusers_key);
            const bytes = await t.readBytes(k.key);
            expect(sha(bytes), k.key).toBe(k.sha256_le_bytes_contiguous);
            // The same weights as the diffusers-format TAESD of the taesd case, bit for bit.
            expect(Buffer.from(bytes).equals(Buffer.from(await taesd.readBytes(k.diffusers_key!))), k.key).toBe(true);
          }
        } finally {
          await t.close();
        }
      }
    } finally {
      await taesd.close();
    }
    expect(taesdDiffusersKey('decoder', '1.weight')).toBe('decoder.layers.0.weight');
    expect(taesdDiffusersKey('decoder', 'decoder.19.bias')).toBe('decoder.layers.18.bias');
    expect(() => taesdDiffusersKey('decoder', '0.weight')).toThrow('layer 0 of the original TAESD decoder is the parameter-free Clamp');
    expect(detectTaesdPart(['encoder.0.weight', 'decoder.1.weight'])).toBe('both');
    expect(detectTaesdPart(['conv_in.weight'])).toBeUndefined();
    expect(() => taesdKeyMap(['conv_in.weight', 'x'], undefined, 'f.pth')).toThrow('f.pth: keys "conv_in.weight", "x" are not original TAESD keys');
  });

  it('a PEFT adapter_model.bin (plain dict) holds the same tensors as adapter_model.safetensors', async () => {
    const peft = new URL('../fixtures/golden/lora_peft/', import.meta.url).pathname;
    const b = await openTensorFile(nodeFiles, join(peft, 'adapter_model.bin'));
    const s = await openTensorFile(nodeFiles, join(peft, 'adapter_model.safetensors'));
    try {
      expect(b.format).toBe('pytorch');
      expect(s.format).toBe('safetensors');
      expect([...b.tensors.keys()].sort()).toEqual([...s.tensors.keys()].sort());
      expect(b.tensors.size).toBe(220);
      for (const k of b.tensors.keys()) expect(Buffer.from(await b.readBytes(k)).equals(Buffer.from(await s.readBytes(k))), k).toBe(true);
    } finally {
      await b.close();
      await s.close();
    }
  });
});

describe('unsafe pickles are refused, nothing is executed', () => {
  const evil = join(G, 'evil.bin');
  const evilMessage = (file: string) =>
    `${file}: unsafe pickle refused: global "os system" (os.system) at byte 176 of evil/data.pkl is not allowed in a tensor checkpoint ` +
    '(only collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage are); nothing was executed';

  it('evil.bin: one error naming the file and os system, raised at the GLOBAL opcode', async () => {
    await expect(TorchCheckpointFile.open(nodeFiles, evil)).rejects.toThrow(evilMessage(evil));
    await expect(openTensorFile(nodeFiles, evil)).rejects.toThrow(evilMessage(evil));
    // Byte 176 is the GLOBAL opcode itself: the REDUCE that would call it (byte 221) is never reached.
    const file = await nodeFiles.open(evil);
    try {
      const zip = await ZipArchive.read(file);
      const pkl = await zip.readAll(zip.entries.get('evil/data.pkl')!);
      expect(pkl[176]).toBe(0x63);
      expect(new TextDecoder().decode(pkl.subarray(177, 187))).toBe('os\nsystem\n');
      expect(pkl[221]).toBe(0x52);
      // Everything after the GLOBAL cut away: the same refusal, so nothing after it was needed to decide.
      expect(() => unpickle(pkl.subarray(0, 187), { file: 'evil.bin', entry: 'evil/data.pkl' })).toThrow(evilMessage('evil.bin'));
    } finally {
      await file.close();
    }
  });

  const ctx = { file: 'h.bin', entry: 'archive/data.pkl' };
  const refusal = (what: string, at: number) => `h.bin: unsafe pickle refused: ${what} at byte ${at} of archive/data.pkl is not allowed in a tensor checkpoint`;
  it.each([
    ['builtins eval', bytesOf(pk.proto, pk.global('builtins', 'eval'), pk.str('1'), [0x85], pk.reduce, pk.stop), refusal('global "builtins eval" (builtins.eval)', 2)],
    ['__builtin__ eval', bytesOf(pk.proto, pk.global('__builtin__', 'eval'), pk.stop), refusal('global "__builtin__ eval" (__builtin__.eval)', 2)],
    ['subprocess via STACK_GLOBAL', bytesOf(pk.proto, pk.str('subprocess'), pk.str('call'), [0x93], pk.stop), refusal('global "subprocess call" (subprocess.call)', 26)],
    ['torch.load itself', bytesOf(pk.proto, pk.global('torch', 'load'), pk.stop), refusal('global "torch load" (torch.load)', 2)],
    ['INST', bytesOf(pk.proto, pk.mark, [0x69], [...new TextEncoder().encode('os\nsystem\n')], pk.stop), refusal('opcode INST (builds arbitrary objects)', 3)],
    ['OBJ', bytesOf(pk.proto, pk.mark, pk.global('collections', 'OrderedDict'), [0x6f], pk.stop), refusal('opcode OBJ (builds arbitrary objects)', 28)],
    ['NEWOBJ', bytesOf(pk.proto, pk.global('collections', 'OrderedDict'), pk.emptyTuple, [0x81], pk.stop), refusal('opcode NEWOBJ (builds arbitrary objects)', 28)],
    ['EXT1', bytesOf(pk.proto, [0x82, 1], pk.stop), refusal('opcode EXT1 (builds arbitrary objects)', 2)],
    ['calling a storage class', bytesOf(pk.proto, pk.global('torch', 'FloatStorage'), pk.emptyTuple, pk.reduce, pk.stop), refusal('calling torch.FloatStorage', 23)],
    ['BUILD on a storage-type global', bytesOf(pk.proto, pk.global('torch', 'FloatStorage'), pk.emptyDict, [0x62], pk.stop), refusal('BUILD on a global torch.FloatStorage', 23)],
    ['a non-storage persistent id', bytesOf(pk.proto, pk.str('module'), pk.persid, pk.stop), refusal('persistent id string (only (\'storage\', …) records)', 13)],
  ])('%s', (_name, bytes, message) => {
    expect(() => unpickle(bytes, ctx)).toThrow(message);
  });

  it('a refused pickle is a TorchCheckpointError, a FileFormatError with code unsafe_pickle and the file', async () => {
    const e = await TorchCheckpointFile.open(nodeFiles, evil).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(TorchCheckpointError);
    expect(e).toBeInstanceOf(FileFormatError);
    expect(e).toBeInstanceOf(FewstepError);
    expect(e).toMatchObject({ name: 'TorchCheckpointError', code: 'unsafe_pickle', file: evil });
    let direct: unknown;
    try {
      unpickle(bytesOf(pk.proto, pk.global('builtins', 'eval'), pk.stop), ctx);
    } catch (x) {
      direct = x;
    }
    expect(direct).toMatchObject({ code: 'unsafe_pickle', file: 'h.bin' });
  });

  it('a forbidden opcode inside a real checkpoint zip is one error naming the file', async () => {
    const pickle = bytesOf(pk.proto, pk.emptyDict, pk.mark, pk.str('w'), pk.global('collections', 'OrderedDict'), pk.emptyTuple, [0x81], pk.setitems, pk.stop);
    await expect(fromBytes('m.pt', tinyCheckpoint({ pickle }))).rejects.toThrow(
      'm.pt: unsafe pickle refused: opcode NEWOBJ (builds arbitrary objects) at byte 36 of archive/data.pkl is not allowed',
    );
  });

  it('the allowed subset builds data: a hand-built state dict reads back', async () => {
    const f = await fromBytes('ok.pt', tinyCheckpoint({ folder: 'any_name_at_all' }));
    expect(f.folder).toBe('any_name_at_all');
    expect([...f.tensors.keys()]).toEqual(['w']);
    expect([...(await f.read('w'))]).toEqual([1, 2, 3, 4]);
  });
});

describe('TorchCheckpointFile: formats and corrupt files', () => {
  const good = readFileSync(join(G, 'diffusion_pytorch_model.bin'));

  it('big-endian byteorder record, zip64 end records, an archive folder of any name', async () => {
    const be = await fromBytes('be.pt', tinyCheckpoint({ bigEndian: true, values: [1.5, -2, 3.25, 1e-30] }));
    expect(be.bigEndian).toBe(true);
    expect([...(await be.read('w'))]).toEqual([...Float32Array.from([1.5, -2, 3.25, 1e-30])]);
    const z = await fromBytes('z64.pt', tinyCheckpoint({ zip64: true, folder: 'z' }));
    expect([...(await z.read('w'))]).toEqual([1, 2, 3, 4]);
  });

  it.each([
    ['truncated (last 100 bytes missing)', () => good.subarray(0, good.length - 100), 'no zip end-of-central-directory record: the file is truncated or is not a zip archive'],
    ['truncated to half', () => good.subarray(0, good.length >> 1), 'no zip end-of-central-directory record: the file is truncated or is not a zip archive'],
    ['empty', () => new Uint8Array(0), '0 bytes: too short for a zip archive (truncated?)'],
    ['not a zip', () => new TextEncoder().encode('hello, this is not a checkpoint at all'), 'not a PyTorch checkpoint: not a zip archive'],
    ['legacy pickle format', () => bytesOf(pk.proto, [0x8a, 0x0a], new Array(40).fill(0)), 'legacy PyTorch format (a bare pickle, torch < 1.6 or _use_new_zipfile_serialization=False) is not supported'],
    ['a compressed (deflate) data.pkl', () => tinyCheckpoint({ pklMethod: 8 }), 'entry "archive/data.pkl" is compressed (deflate); torch.save writes every record uncompressed (stored)'],
    ['a zip without data.pkl', () => makeZip([{ name: 'x/other.txt', data: new Uint8Array(3) }]), 'no <folder>/data.pkl record: a zip archive, but not a PyTorch checkpoint'],
    ['a corrupted pickle byte (CRC)', () => { const b = Uint8Array.from(good); b[128 + 40] ^= 0xff; return b; }, 'entry "diffusion_pytorch_model/data.pkl": CRC-32 mismatch: the file is corrupt'],
    ['a storage record too short', () => tinyCheckpoint({ values: [1, 2, 3] }), 'tensor "w": size [2,2], stride [2,1] at offset 0 reaches element 3 of a 3-element storage'],
  ])('%s: clear error naming the file', async (_name, make, message) => {
    const p = fromBytes('bad.bin', make());
    await expect(p).rejects.toThrow(`bad.bin: ${message}`);
    // Corrupt (not refused): a TorchCheckpointError with code file_format, naming the file.
    await expect(p).rejects.toBeInstanceOf(TorchCheckpointError);
    await expect(p).rejects.toMatchObject({ code: 'file_format', file: 'bad.bin' });
  });

  it('openTensorFile picks the format by extension, else by the first bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-torchfile-'));
    writeFileSync(join(dir, 'weights.data'), tinyCheckpoint());
    symlinkSync(join(G, 'diffusion_pytorch_model.safetensors'), join(dir, 'st.data'));
    const a = await openTensorFile(nodeFiles, join(dir, 'weights.data'));
    const b = await openTensorFile(nodeFiles, join(dir, 'st.data'));
    expect([a.format, b.format]).toEqual(['pytorch', 'safetensors']);
    await a.close();
    await b.close();
    // A .safetensors name is read as safetensors even when it is really a zip (no silent format switch).
    await expect(tensorFileFrom(new MemoryFile('x.safetensors', tinyCheckpoint()), 'safetensors')).rejects.toThrow('x.safetensors: header length');
  });
});

describe('weight loading from .bin component folders', () => {
  it('findWeightFiles: .bin when there is nothing else, safetensors preferred when both exist; SafetensorsSource reads .bin', async () => {
    const only = mkdtempSync(join(tmpdir(), 'fewstep-bin-'));
    symlinkSync(join(G, 'diffusion_pytorch_model.bin'), join(only, 'diffusion_pytorch_model.bin'));
    writeFileSync(join(only, 'config.json'), '{}');
    expect(await findWeightFiles(nodeFiles, only)).toEqual([join(only, 'diffusion_pytorch_model.bin')]);
    const both = mkdtempSync(join(tmpdir(), 'fewstep-bin-'));
    for (const n of ['diffusion_pytorch_model.bin', 'diffusion_pytorch_model.safetensors']) symlinkSync(join(G, n), join(both, n));
    expect(await findWeightFiles(nodeFiles, both)).toEqual([join(both, 'diffusion_pytorch_model.safetensors')]);
    const shards = mkdtempSync(join(tmpdir(), 'fewstep-bin-'));
    for (const n of ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json']) writeFileSync(join(shards, n), '');
    expect(await findWeightFiles(nodeFiles, shards)).toEqual([join(shards, 'pytorch_model-00001-of-00002.bin'), join(shards, 'pytorch_model-00002-of-00002.bin')]);
    const odd = mkdtempSync(join(tmpdir(), 'fewstep-bin-'));
    writeFileSync(join(odd, 'weights.pth'), '');
    await expect(findWeightFiles(nodeFiles, odd)).rejects.toThrow(`${odd} has no weights (*.safetensors, diffusion_pytorch_model.bin or pytorch_model.bin); found weights.pth`);

    const src = await SafetensorsSource.open(nodeFiles, await findWeightFiles(nodeFiles, only));
    const ref = await SafetensorsFile.open(nodeFiles, join(G, 'diffusion_pytorch_model.safetensors'));
    try {
      expect(src.keys().sort()).toEqual([...ref.tensors.keys()].sort());
      expect(src.shape('proj_t.weight')).toEqual([10, 6]);
      expect(await src.read('proj_t.weight', 'f32')).toEqual(await ref.read('proj_t.weight', 'f32'));
      expect(await src.read('norm.weight', 'f16')).toEqual(await ref.read('norm.weight', 'f16'));
    } finally {
      await src.close();
      await ref.close();
    }
  });
});
