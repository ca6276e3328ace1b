// Hostile and awkward safetensors files from the hardening probe, generated here: deeply nested header values
// (every crash of the safetensors fuzz was JSON.stringify of one in an error message), 200k-tensor files
// (`inspect` spread their name lengths into Math.max), headers whose length starts with byte 0x80 (taken for a
// legacy pickle by format detection), and tensors too large to hold in memory.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFile, ResourceLimitError, SafetensorsError, SafetensorsFile, TENSOR_FILE_LIMITS, encodeSafetensors, openTensorFile, tensorFileFrom, type RandomAccessFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { main } from '../../packages/cli/src/main';
import { Pickle, checkpoint, deepHeaderSafetensors, manyTensorsSafetensors, safetensorsBytes, safetensorsStartingWith0x80 } from './hostile-files';

const open = (name: string, b: Uint8Array) => SafetensorsFile.fromFile(new MemoryFile(name, b));

describe('safetensors: no recursion or spread sized by the input', () => {
  it.each([
    ['a dtype nested 100 000 deep', deepHeaderSafetensors(100_000, 'dtype')],
    ['a shape nested 100 000 deep', deepHeaderSafetensors(100_000, 'shape')],
    ['data_offsets nested 10 000 000 deep (20 MB)', deepHeaderSafetensors(10_000_000, 'data_offsets')],
  ])('%s: refused before parsing, naming the file (was "Maximum call stack size exceeded")', async (_name, bytes) => {
    const t0 = performance.now();
    const e = await open('deep.safetensors', bytes).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as Error).message).toMatch(/^deep\.safetensors: header nests deeper than 64 levels at byte \d+: not a safetensors header$/);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('nested or huge values within the depth limit are described in a few words, never serialised', async () => {
    const nested = `{"w":{"dtype":${'['.repeat(60)}${']'.repeat(60)},"shape":[],"data_offsets":[0,0]}}`;
    await expect(open('n.safetensors', safetensorsBytes(nested))).rejects.toThrow('n.safetensors: tensor "w": unknown dtype an array of 1 item(s) holding an array');
    const wide = { w: { dtype: 'F32', shape: new Array(1_000_000).fill('x'), data_offsets: [0, 0] } };
    const e = await open('w.safetensors', safetensorsBytes(wide)).then(() => undefined, (x: unknown) => x);
    expect((e as Error).message).toBe('w.safetensors: tensor "w": shape an array of 1000000 items is not a list of non-negative integers');
    const long = { ['k'.repeat(100_000)]: { dtype: 'X'.repeat(100_000), shape: [], data_offsets: [0, 0] } };
    const l = await open('l.safetensors', safetensorsBytes(long)).then(() => undefined, (x: unknown) => x);
    expect((l as Error).message.length).toBeLessThan(400);
    expect((l as Error).message).toContain(`tensor "${'k'.repeat(200)}…": unknown dtype "${'X'.repeat(40)}…"`);
    // Small values keep their exact JSON in messages.
    await expect(open('s.safetensors', safetensorsBytes({ w: { dtype: 'F32', shape: [1, 'a'], data_offsets: [0, 4] } }, new Uint8Array(4)))).rejects.toThrow('s.safetensors: tensor "w": shape [1,"a"] is not a list');
    // Inherited names are not dtypes.
    await expect(open('p.safetensors', safetensorsBytes({ w: { dtype: 'constructor', shape: [], data_offsets: [0, 0] } }))).rejects.toThrow('p.safetensors: tensor "w": unknown dtype "constructor"');
  });

  it('invalid JSON whose parser message quotes a line break stays one line (found by the long fuzz run)', async () => {
    const e = await open('j.safetensors', safetensorsBytes('{"a":\n x}')).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as Error).message).toMatch(/^j\.safetensors: header is not valid JSON \(/);
    expect((e as Error).message).not.toMatch(/[\n\r]/);
  });

  it('a tensor named "__proto__" is written and read like any other (found by the long fuzz run: it became the header\'s prototype)', async () => {
    const tensors = Object.create(null) as Parameters<typeof encodeSafetensors>[0];
    tensors['__proto__'] = { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) };
    tensors['w'] = { dtype: 'F32', shape: [1], data: Float32Array.of(3) };
    const f = await open('proto.safetensors', encodeSafetensors(tensors));
    expect([...f.tensors.keys()]).toEqual(['__proto__', 'w']);
    expect([...(await f.read('__proto__'))]).toEqual([1, 2]);
    expect([...(await f.read('w'))]).toEqual([3]);
    // And from a checkpoint through `fewstep convert`.
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-proto-'));
    const p = new Pickle().emptyDict().str('__proto__').tensor({ key: '0', numel: 1, size: [1], stride: [1] }).setitem().stop();
    writeFileSync(join(dir, 'p.bin'), checkpoint(p.bytes(), { '0': new Uint8Array(Float32Array.of(7).buffer) }));
    const io = { stdout: () => undefined, stderr: () => undefined, isTTY: false };
    expect(await main(['convert', join(dir, 'p.bin'), join(dir, 'p.safetensors')], io)).toBe(0);
    const g = await SafetensorsFile.open(nodeFiles, join(dir, 'p.safetensors'));
    expect([...(await g.read('__proto__'))]).toEqual([7]);
    await g.close();
  });

  it('a valid 200 000-tensor file: `fewstep inspect` lists it (was "Maximum call stack size exceeded")', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-hostile-'));
    const p = join(dir, 'many.safetensors');
    writeFileSync(p, manyTensorsSafetensors(200_000));
    const out: string[] = [], err: string[] = [];
    expect(await main(['inspect', p], { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false })).toBe(0);
    expect(err).toEqual([]);
    expect(out.join('')).toContain('200000 tensors, 0 parameters');
  });

  it('more tensors than TENSOR_FILE_LIMITS.entries, or a higher rank than .rank: one error naming the file', async () => {
    const e = await open('e.safetensors', manyTensorsSafetensors(TENSOR_FILE_LIMITS.entries + 1)).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ResourceLimitError);
    expect((e as Error).message).toBe(`e.safetensors: more than ${TENSOR_FILE_LIMITS.entries} tensors (TENSOR_FILE_LIMITS.entries)`);
    const rank = safetensorsBytes({ w: { dtype: 'F32', shape: new Array(65).fill(1), data_offsets: [0, 4] } }, new Uint8Array(4));
    await expect(open('r.safetensors', rank)).rejects.toThrow('r.safetensors: tensor "w": rank 65 is higher than 64 (TENSOR_FILE_LIMITS.rank)');
  });

  it('a tensor larger than TENSOR_FILE_LIMITS.tensorBytes: a ResourceLimitError naming it, before any allocation', async () => {
    // A 5 GiB file that is never read past its header.
    const huge = 5 * 2 ** 30;
    const head = safetensorsBytes({ big: { dtype: 'U8', shape: [huge], data_offsets: [0, huge] }, small: { dtype: 'U8', shape: [2], data_offsets: [huge, huge + 2] } });
    const size = head.length + huge + 2;
    const file: RandomAccessFile = {
      name: 'huge.safetensors',
      size,
      read: async (o, l) => {
        if (l > 1 << 20) throw new Error(`test: read of ${l} bytes`);
        return o + l <= head.length ? head.subarray(o, o + l) : new Uint8Array(l);
      },
      close: async () => undefined,
    };
    const f = await SafetensorsFile.fromFile(file);
    await expect(f.readBytes('big')).rejects.toThrow(`huge.safetensors: tensor "big": ${huge} bytes in memory is more than one tensor may take (TENSOR_FILE_LIMITS.tensorBytes = ${2 ** 32})`);
    await expect(f.read('big')).rejects.toBeInstanceOf(ResourceLimitError);
    expect([...(await f.read('small'))]).toEqual([0, 0]);
  });
});

describe('format detection by content: safetensors header first, then zip, then pickle', () => {
  it('a valid safetensors file whose header length starts with byte 0x80 is read as safetensors (was "legacy PyTorch format")', async () => {
    const bytes = safetensorsStartingWith0x80();
    expect(bytes[0]).toBe(0x80);
    const f = await tensorFileFrom(new MemoryFile('weights', bytes));
    expect(f.format).toBe('safetensors');
    expect([...(await f.read('w'))]).toEqual([1, 2, 3]);
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-detect-'));
    writeFileSync(join(dir, 'weights'), bytes);
    expect((await openTensorFile(nodeFiles, join(dir, 'weights'))).format).toBe('safetensors');
  });

  it('header lengths starting with "PK" are safetensors too; zips and pickles still go to the PyTorch reader', async () => {
    // A header of 0x4b50 = 19280 bytes starts with the bytes "PK".
    const pad = 19280 - JSON.stringify({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, __metadata__: { p: '' } }).length;
    const pk = safetensorsBytes({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, __metadata__: { p: ' '.repeat(pad) } }, Uint8Array.of(7));
    expect([pk[0], pk[1]]).toEqual([0x50, 0x4b]);
    expect((await tensorFileFrom(new MemoryFile('pk', pk))).format).toBe('safetensors');
    const zip = checkpoint(new Pickle().emptyDict().stop().bytes());
    expect((await tensorFileFrom(new MemoryFile('zip', zip))).format).toBe('pytorch');
    await expect(tensorFileFrom(new MemoryFile('legacy', new Pickle().emptyDict().stop().bytes()))).rejects.toThrow('legacy: legacy PyTorch format');
    await expect(tensorFileFrom(new MemoryFile('text', new TextEncoder().encode('hello world, not weights')))).rejects.toThrow('text: header length');
    // A real safetensors file opens either way.
    const st = encodeSafetensors({ a: { dtype: 'F32', shape: [1], data: Float32Array.of(5) } });
    expect((await tensorFileFrom(new MemoryFile('st', st))).format).toBe('safetensors');
  });
});
