import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError, MemoryFile, SafetensorsError, SafetensorsFile, ShapeError, UnsupportedError, encodeSafetensors, f16BitsToF32, f32ToF16Bits, type RandomAccessFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { main } from '../../packages/cli/src/main';

function headerFile(header: unknown, dataBytes = 0, name = 'bad.safetensors'): MemoryFile {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  return new MemoryFile(name, out);
}

const open = (f: RandomAccessFile) => SafetensorsFile.fromFile(f);

describe('safetensors reader', () => {
  it('round-trips F32, F16, BF16, I64, I32 and converts to the requested dtype', async () => {
    const f16 = Uint16Array.from([1, -2.5, 65504, 0.0001].map(f32ToF16Bits));
    const bf16 = Uint16Array.from([0x3f80, 0xc020]); // 1.0, -2.5
    const bytes = encodeSafetensors(
      {
        a: { dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
        h: { dtype: 'F16', shape: [4], data: f16 },
        b: { dtype: 'BF16', shape: [2], data: bf16 },
        i: { dtype: 'I64', shape: [3], data: BigInt64Array.from([0n, 49407n, -5n]) },
        j: { dtype: 'I32', shape: [], data: Int32Array.from([7]) },
      },
      { format: 'pt' },
    );
    const f = await open(new MemoryFile('t.safetensors', bytes));
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.info('a').shape).toEqual([2, 2]);
    expect([...(await f.read('a'))]).toEqual([1, 2, 3, 4]);
    expect([...(await f.read('a', 'f16'))].map(f16BitsToF32)).toEqual([1, 2, 3, 4]);
    expect([...(await f.read('h'))]).toEqual([...f16].map(f16BitsToF32));
    expect(await f.read('h', 'f16')).toEqual(f16);
    expect([...(await f.read('b'))]).toEqual([1, -2.5]);
    expect([...(await f.read('i'))]).toEqual([0, 49407, -5]);
    expect(await f.read('i')).toBeInstanceOf(Int32Array);
    expect([...(await f.read('j'))]).toEqual([7]);
  });

  it('pads the header by its UTF-8 byte length (non-ASCII tensor names)', async () => {
    const bytes = encodeSafetensors({ 'bloc.é': { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) }, '块': { dtype: 'F32', shape: [1], data: Float32Array.from([3]) } });
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const f = await open(new MemoryFile('u.safetensors', bytes));
    expect([...(await f.read('bloc.é', 'f32'))]).toEqual([1, 2]);
    expect([...(await f.read('块', 'f32'))]).toEqual([3]);
  });

  it('reads one tensor at a time (never the whole file)', async () => {
    const big = new Float32Array(100_000);
    const bytes = encodeSafetensors({ small: { dtype: 'F32', shape: [3], data: Float32Array.from([1, 2, 3]) }, big: { dtype: 'F32', shape: [100_000], data: big } });
    const reads: number[] = [];
    const mem = new MemoryFile('t.safetensors', bytes);
    const spy: RandomAccessFile = { name: mem.name, size: mem.size, close: () => mem.close(), read: (o, l) => (reads.push(l), mem.read(o, l)) };
    const f = await open(spy);
    await f.read('small');
    expect(Math.max(...reads)).toBeLessThan(1000);
  });

  // Uploads read through one reused buffer (nodeFiles' readTransient): the same values as read(), in every dtype
  // path (a view for F16→f16 and F32→f32, converted otherwise), and the buffer is reused from read to read.
  it('readTransient: the same values as read, through one reused buffer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-st-'));
    const path = join(dir, 'w.safetensors');
    const h = Uint16Array.from([0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001]);
    writeFileSync(path, encodeSafetensors({
      a: { dtype: 'F32', shape: [5], data: Float32Array.from([1.5, -2, 3.25, 1e-3, 7]) },
      b: { dtype: 'F16', shape: [5], data: h },
      c: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([0.1, 0.2, 0.3, -0.4, 65504, 7e5]) },
      d: { dtype: 'I32', shape: [3], data: Int32Array.from([-1, 0, 2 ** 30]) },
    }));
    const f = await SafetensorsFile.fromFile(await nodeFiles.open(path));
    try {
      const buffers = new Set<ArrayBufferLike>();
      // The largest first: the buffer only grows (to the largest tensor read so far).
      for (const [name, target] of [['c', 'f32'], ['a', 'f32'], ['b', 'f16'], ['c', 'f16'], ['a', 'f16'], ['b', 'f32'], ['d', undefined]] as const) {
        const want = await f.read(name, target);
        const got = await f.readTransient!(name, target);
        expect(got.constructor).toBe(want.constructor);
        expect([...got], `${name} → ${target}`).toEqual([...want]);
        if ((name === 'a' && target === 'f32') || (name === 'b' && target === 'f16') || (name === 'c' && target === 'f32')) buffers.add(got.buffer);
      }
      expect(buffers.size).toBe(1); // the views all sit in the file's one read buffer
    } finally {
      await f.close();
    }
  });

  // Streamed weights read synchronously in bounded pieces: the pieces, put back at their element offsets, are
  // read()'s values in every float path (odd element counts, pieces that do not divide the tensor, BF16), each
  // piece holds at most maxBytes of stored bytes, and a file without synchronous reads is refused by name.
  it('readPiecesSync: read()\'s values in pieces of at most maxBytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-st-'));
    const path = join(dir, 'w.safetensors');
    const n = 37;
    const f32 = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 100);
    const f16 = Uint16Array.from({ length: n }, (_, i) => 0x3c00 + i * 7);
    const bf16 = Uint16Array.from({ length: n }, (_, i) => 0x3f80 + i * 3);
    writeFileSync(path, encodeSafetensors({
      a: { dtype: 'F32', shape: [n], data: f32 },
      b: { dtype: 'F16', shape: [n], data: f16 },
      c: { dtype: 'BF16', shape: [n], data: bf16 },
      e: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
    }));
    const f = await SafetensorsFile.fromFile(await nodeFiles.open(path));
    try {
      expect(f.syncReadable).toBe(true);
      for (const name of ['a', 'b', 'c', 'e']) {
        for (const target of ['f32', 'f16'] as const) {
          for (const maxBytes of [1, 24, 50, 1 << 20]) {
            const want = await f.read(name, target);
            const got = new (want.constructor as Float32ArrayConstructor)(want.length);
            const stored = f.info(name).dtype === 'F32' ? 4 : 2;
            let covered = 0;
            f.readPiecesSync(name, target, (piece, first) => {
              expect(piece.constructor).toBe(want.constructor);
              expect(piece.length * stored).toBeLessThanOrEqual(Math.max(maxBytes, 4 * stored));
              expect(first).toBe(covered);
              got.set(piece as Float32Array, first);
              covered += piece.length;
            }, maxBytes);
            expect(covered).toBe(want.length);
            expect([...got], `${name} → ${target} in pieces of ${maxBytes}`).toEqual([...want]);
          }
        }
      }
    } finally {
      await f.close();
    }
    const mem = await open(new MemoryFile('m.safetensors', readFileSync(path)));
    expect(mem.syncReadable).toBe(false);
    expect(() => mem.readPiecesSync('a', 'f32', () => {})).toThrow('m.safetensors: this file cannot be read synchronously (streamed weights need a local file)');
  });

  it('rejects I64 values that do not fit i32, naming the tensor', async () => {
    const f = await open(new MemoryFile('x.safetensors', encodeSafetensors({ ids: { dtype: 'I64', shape: [1], data: BigInt64Array.from([1n << 40n]) } })));
    await expect(f.read('ids')).rejects.toThrow('x.safetensors: tensor "ids": I64 value 1099511627776 does not fit in i32');
  });

  const bad: [string, () => MemoryFile, string][] = [
    ['shorter than 8 bytes', () => new MemoryFile('bad.safetensors', new Uint8Array(5)), 'bad.safetensors: not a safetensors file: 5 bytes, shorter than the 8-byte header length'],
    ['header past the end', () => { const m = headerFile({}); new DataView((m as unknown as { bytes: Uint8Array }).bytes.buffer).setUint32(0, 999, true); return m; }, 'bad.safetensors: header length 999 runs past the end of the file (10 bytes): truncated or not a safetensors file'],
    ['huge header length', () => { const m = new MemoryFile('bad.safetensors', new Uint8Array(16)); new DataView((m as unknown as { bytes: Uint8Array }).bytes.buffer).setUint32(4, 1, true); return m; }, 'bad.safetensors: header length 4294967296 is larger than the 100000000-byte limit (not a safetensors file?)'],
    ['invalid JSON', () => headerFile('{"a": '), 'bad.safetensors: header is not valid JSON'],
    ['not an object', () => headerFile([1, 2]), 'bad.safetensors: header is not a JSON object'],
    ['unknown dtype', () => headerFile({ w: { dtype: 'F7', shape: [1], data_offsets: [0, 4] } }, 4), 'bad.safetensors: tensor "w": unknown dtype "F7"'],
    ['bad shape', () => headerFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), 'bad.safetensors: tensor "w": shape [-1] is not a list of non-negative integers'],
    ['size mismatch', () => headerFile({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, 24), 'bad.safetensors: tensor "w": F32 [2,3] needs 24 bytes but data_offsets [0, 20] hold 20'],
    ['truncated data', () => headerFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), 'bad.safetensors: tensor "w": data_offsets [0, 16] run past the end of the data (8 bytes): file truncated?'],
    ['overlap', () => headerFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), 'bad.safetensors: tensors "a" and "b" overlap in the file'],
    ['bad metadata', () => headerFile({ __metadata__: { a: 1 } }), 'bad.safetensors: __metadata__.a is not a string'],
  ];
  for (const [what, make, msg] of bad) {
    it(`rejects a file with ${what}`, async () => {
      const p = open(make());
      await expect(p).rejects.toThrow(msg);
      // A SafetensorsError: a FileFormatError with code file_format naming the file.
      await expect(p).rejects.toBeInstanceOf(SafetensorsError);
      await expect(p).rejects.toBeInstanceOf(FileFormatError);
      await expect(p).rejects.toMatchObject({ name: 'SafetensorsError', code: 'file_format', file: 'bad.safetensors' });
    });
  }

  it('typed errors: an unconvertible value, a missing tensor, bad tensors to write', async () => {
    const f = await open(new MemoryFile('x.safetensors', encodeSafetensors({ ids: { dtype: 'I64', shape: [1], data: BigInt64Array.from([1n << 40n]) } })));
    await expect(f.read('ids')).rejects.toMatchObject({ code: 'unsupported' });
    await expect(f.read('ids')).rejects.toBeInstanceOf(UnsupportedError);
    expect(() => f.info('nope')).toThrow(SafetensorsError);
    const named = (() => { try { encodeSafetensors({ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }); } catch (e) { return e; } })();
    expect(named).toBeInstanceOf(InvalidArgumentError);
    expect(named).toMatchObject({ code: 'invalid_argument', field: 'name' });
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(ShapeError);
    // Reading past the end of an in-memory file: a FileFormatError naming it.
    await expect(new MemoryFile('m.bin', new Uint8Array(4)).read(2, 4)).rejects.toMatchObject({ code: 'file_format', file: 'm.bin' });
  });

  it('reads the golden io files', async () => {
    const f = await SafetensorsFile.open(nodeFiles, new URL('../fixtures/golden/taesd/io.safetensors', import.meta.url).pathname);
    expect(f.info('in.latent_16x16').shape).toEqual([1, 4, 16, 16]);
    expect((await f.read('in.latent_16x16')).length).toBe(1024);
    await f.close();
  });
});

describe('fewstep inspect', () => {
  const capture = () => {
    const out: string[] = [], err: string[] = [];
    return { out, err, io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), isTTY: false } };
  };
  const dir = mkdtempSync(join(tmpdir(), 'fewstep-inspect-'));

  it('lists tensors, dtypes, shapes and the parameter total', async () => {
    const p = join(dir, 'ok.safetensors');
    writeFileSync(p, encodeSafetensors({ 'conv.weight': { dtype: 'F16', shape: [4, 3, 3, 3], data: new Uint16Array(108) }, 'conv.bias': { dtype: 'F32', shape: [4], data: new Float32Array(4) } }));
    const c = capture();
    expect(await main(['inspect', p], c.io)).toBe(0);
    const text = c.out.join('');
    expect(text).toContain('conv.bias    F32    [4]');
    expect(text).toContain('conv.weight  F16    [4, 3, 3, 3]');
    expect(text).toContain('2 tensors, 112 parameters');
    const j = capture();
    expect(await main(['inspect', p, '--json'], j.io)).toBe(0);
    expect(JSON.parse(j.out.join('')).parameters).toBe(112);
  });

  it('reports a corrupt file as one line naming it, exit 1', async () => {
    const p = join(dir, 'trunc.safetensors');
    const good = encodeSafetensors({ w: { dtype: 'F32', shape: [1000], data: new Float32Array(1000) } });
    writeFileSync(p, good.subarray(0, good.length - 100));
    const c = capture();
    expect(await main(['inspect', p], c.io)).toBe(1);
    expect(c.err).toEqual([`fewstep inspect: ${p}: tensor "w": data_offsets [0, 4000] run past the end of the data (3900 bytes): file truncated?\n`]);
    expect(c.out).toEqual([]);
  });

  it('reports a missing file and bad flags clearly', async () => {
    const c = capture();
    expect(await main(['inspect', join(dir, 'nope.safetensors')], c.io)).toBe(1);
    expect(c.err.join('')).toBe(`fewstep inspect: ${join(dir, 'nope.safetensors')}: cannot open (ENOENT)\n`);
    const d = capture();
    expect(await main(['inspect', '--bogus', 'x'], d.io)).toBe(2);
    expect(d.err.join('')).toBe('fewstep inspect: unknown flag --bogus (see `fewstep inspect --help`)\n');
  });
});
