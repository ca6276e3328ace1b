// Hostile PyTorch checkpoints from the hardening probe, each generated here (nothing large is committed):
// pickles that expand through memo references, go quadratic, overflow the stack or carry huge integers, and
// stride-0 / overlapping views that describe gigabytes over a few bytes of storage. Each must end in one typed
// error naming the file (and the tensor), fast and in little memory — the original reader took minutes,
// exhausted the heap or threw a RangeError. Limits: TENSOR_FILE_LIMITS (packages/tensor/src/tensor_file_limits.ts).
import { describe, expect, it } from 'vitest';
import { FewstepError, MemoryFile, ResourceLimitError, TENSOR_FILE_LIMITS, TorchCheckpointError, TorchCheckpointFile, openTensorFile, tensorFileFrom } from '@fewstep/tensor';
import { PyList, unpickle } from '@fewstep/tensor/testing';
import { nodeFiles } from '@fewstep/tensor/node';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../packages/cli/src/main';
import {
  Pickle, bigAppends, checkpoint, hugeLong, lateFilledDictBomb, lateFilledOrderedDict, makeZip, memoDictBomb, orderedDictAmplification, selfNestedDict, strideZeroCheckpoint,
} from './hostile-files';

const ctx = { file: 'h.bin', entry: 'archive/data.pkl' };

/** Runs `fn` and returns its error (or result), how long it took and how much the heap grew meanwhile. */
async function measure<T>(fn: () => Promise<T> | T): Promise<{ error: unknown; value: T | undefined; ms: number; heapMiB: number }> {
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  let error: unknown;
  let value: T | undefined;
  try {
    value = await fn();
  } catch (e) {
    error = e;
  }
  return { error, value, ms: performance.now() - t0, heapMiB: (process.memoryUsage().heapUsed - heap0) / 2 ** 20 };
}

// Generous for a shared 2-core machine; the original behaviour took 58–166 s or ran out of heap.
const SECONDS = 20;
const HEAP_MIB = 512;

describe('hostile pickles: bounded by values produced and work, not only depth', () => {
  it.each([
    ['a 1.5 KB "billion laughs" of memoized dicts (20 wide, 10 deep: 10^13 entries)', () => memoDictBomb(20, 10), 'more than 4194304 values (TENSOR_FILE_LIMITS.pickleNodes'],
    ['a ~800 B fan-out to 6^8 = 1.68 M tensors', () => memoDictBomb(6, 8), 'more than 4194304 values (TENSOR_FILE_LIMITS.pickleNodes'],
    ['dicts memoized empty and filled later (the memo counter sees nothing)', () => lateFilledDictBomb(20, 10), 'the state dict has more than 262144 entries (TENSOR_FILE_LIMITS.entries'],
  ])('%s: one ResourceLimitError naming the file', async (_name, make, message) => {
    const bytes = make();
    expect(bytes.length).toBeLessThan(2000);
    const r = await measure(() => TorchCheckpointFile.fromFile(new MemoryFile('bomb.bin', bytes)));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect(r.error).toMatchObject({ code: 'resource_limit' });
    expect((r.error as Error).message).toMatch(/^bomb\.bin: /);
    expect((r.error as Error).message).toContain(message);
    expect(r.ms).toBeLessThan(SECONDS * 1000);
    expect(r.heapMiB).toBeLessThan(HEAP_MIB);
  });

  it('a dict that holds itself is refused, not walked forever', async () => {
    const r = await measure(() => TorchCheckpointFile.fromFile(new MemoryFile('self.bin', selfNestedDict(20))));
    expect(r.error).toBeInstanceOf(TorchCheckpointError);
    expect((r.error as Error).message).toBe('self.bin: the state dict holds itself under "k0": not a state dict');
    expect(r.ms).toBeLessThan(SECONDS * 1000);
  });

  it('OrderedDict(the same memoized list) again and again: refused by the memo counter, fast (was 166 s)', async () => {
    const bytes = orderedDictAmplification(15_000, 15_000);
    expect(bytes.length).toBeLessThan(400_000);
    const r = await measure(() => unpickle(bytes, ctx));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect((r.error as Error).message).toMatch(/^h\.bin: archive\/data\.pkl: more than 4194304 values \(TENSOR_FILE_LIMITS\.pickleNodes; memo references count in full\) \(BINGET at byte \d+\)/);
    expect(r.ms).toBeLessThan(SECONDS * 1000);
  });

  it('OrderedDict calls that took the list while it was empty: refused by the work bound (was quadratic)', async () => {
    const bytes = lateFilledOrderedDict(20_000, 20_000); // 400 M copies from 260 KB: minutes for the original reader
    // A tighter work limit than TENSOR_FILE_LIMITS.pickleWork (8 Mi units: seconds on this machine) keeps the test quick.
    const r = await measure(() => unpickle(bytes, { ...ctx, limits: { pickleWork: 1_000_000 } }));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect((r.error as Error).message).toContain('more than 1000000 units of work (TENSOR_FILE_LIMITS.pickleWork) (REDUCE at byte');
    expect(r.ms).toBeLessThan(SECONDS * 1000);
    expect(r.heapMiB).toBeLessThan(HEAP_MIB);
  });

  it('APPENDS of 300 000 items builds the list (no spread: was "Maximum call stack size exceeded")', () => {
    const v = unpickle(bigAppends(300_000), ctx);
    expect(v).toBeInstanceOf(PyList);
    expect((v as PyList).items.length).toBe(300_000);
  });

  it('integers: a 1 MB LONG4 is refused at once (was quadratic); long text ints too; 1 KB ones still read', () => {
    expect(() => unpickle(hugeLong(1_000_000), ctx)).toThrow('h.bin: archive/data.pkl: a 1000000-byte integer is longer than 1024 bytes (TENSOR_FILE_LIMITS.pickleIntLength) (LONG4 at byte 6)');
    const text = new Pickle().push(0x4c).append(new TextEncoder().encode(`${'9'.repeat(5000)}L\n`)).stop().bytes();
    expect(() => unpickle(text, ctx)).toThrow('a 5000-character integer is longer than 1024 characters');
    expect(unpickle(hugeLong(1024), ctx)).toBeDefined();
    // LONG1/LONG4 stay exact two's complement: -2 in 2 bytes, 2^64 in 9.
    expect(unpickle(new Pickle().push(0x8a, 2, 0xfe, 0xff).stop().bytes(), ctx)).toBe(-2);
    expect(unpickle(new Pickle().push(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1).stop().bytes(), ctx)).toBe(2n ** 64n);
  });

  it('memo slots, MARKs and DUPs count as values; a memo fetch or DUP counts the whole value (tight limits)', () => {
    const tight = { ...ctx, limits: { pickleNodes: 1000 } };
    const memoize = new Pickle().none();
    for (let i = 0; i < 1000; i++) memoize.push(0x94); // MEMOIZE
    expect(() => unpickle(memoize.stop().bytes(), tight)).toThrow(/^h\.bin: archive\/data\.pkl: more than 1000 values .*\(MEMOIZE at byte 1002\)/);
    const marks = new Pickle();
    for (let i = 0; i < 1001; i++) marks.mark();
    expect(() => unpickle(marks.stop().bytes(), tight)).toThrow('(MARK at byte 1002)');
    // A 300-item list fetched 3 times is 4 × 301 values, though only 301 were built.
    const list = new Pickle().emptyList().mark();
    for (let i = 0; i < 300; i++) list.none();
    list.appends().put(0).get(0).get(0).get(0).stop();
    expect(() => unpickle(list.bytes(), tight)).toThrow(/more than 1000 values .*\(BINGET at byte \d+\)/);
    expect(() => unpickle(new Pickle().emptyList().mark().none().none().appends().dup().dup().stop().bytes(), tight)).not.toThrow();
  });

  it('a data.pkl over TENSOR_FILE_LIMITS.pickleBytes is refused before it is read; a huge byteorder record too', async () => {
    const big = makeZip([{ name: 'archive/data.pkl', data: new Uint8Array(TENSOR_FILE_LIMITS.pickleBytes + 1), crc: 0 }]);
    await expect(TorchCheckpointFile.fromFile(new MemoryFile('big.bin', big))).rejects.toThrow(
      `big.bin: archive/data.pkl is ${TENSOR_FILE_LIMITS.pickleBytes + 1} bytes, more than a state dict pickle may have (TENSOR_FILE_LIMITS.pickleBytes = ${TENSOR_FILE_LIMITS.pickleBytes})`,
    );
    const order = makeZip([{ name: 'a/data.pkl', data: new Pickle().emptyDict().stop().bytes() }, { name: 'a/byteorder', data: new Uint8Array(1 << 20) }]);
    await expect(TorchCheckpointFile.fromFile(new MemoryFile('bo.bin', order))).rejects.toThrow('bo.bin: a/byteorder is 1048576 bytes, expected "little" or "big"');
  });
  it('a zip directory of more records than TENSOR_FILE_LIMITS.entries + 64 is refused before it is read', async () => {
    // "PK", then zeros where a directory of 300 000 entries would be, then zip64 end record + locator + end record.
    const count = 300_000;
    const cd = count * 46;
    const file = new Uint8Array(cd + 56 + 20 + 22);
    const dv = new DataView(file.buffer);
    file.set([0x50, 0x4b], 0);
    dv.setUint32(cd, 0x06064b50, true); // zip64 end of central directory
    dv.setUint32(cd + 32, count, true);
    dv.setUint32(cd + 40, cd, true); // directory size; its offset (cd + 48) is 0
    dv.setUint32(cd + 56, 0x07064b50, true); // zip64 locator → the record at `cd`
    dv.setUint32(cd + 64, cd, true);
    dv.setUint32(cd + 76, 0x06054b50, true); // end of central directory, fields in the zip64 record
    dv.setUint16(cd + 76 + 8, 0xffff, true);
    dv.setUint16(cd + 76 + 10, 0xffff, true);
    dv.setUint32(cd + 76 + 12, 0xffffffff, true);
    dv.setUint32(cd + 76 + 16, 0xffffffff, true);
    const e = await TorchCheckpointFile.fromFile(new MemoryFile('dir.bin', file)).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ResourceLimitError);
    expect((e as Error).message).toBe(`dir.bin: the zip archive has ${count} entries, more than ${TENSOR_FILE_LIMITS.entries + 64} (TENSOR_FILE_LIMITS.entries + 64)`);
  });
});

describe('hostile views: elements repeat only along broadcast dims, and materializing is bounded', () => {
  it('a 4 Gi-element stride-0 view of a 1-element storage: one ResourceLimitError naming the tensor (was "Invalid typed array length")', async () => {
    const bytes = strideZeroCheckpoint([65536, 65536], 'decoder.bias');
    expect(bytes.length).toBeLessThan(600);
    const r = await measure(() => TorchCheckpointFile.fromFile(new MemoryFile('zero.bin', bytes)));
    expect(r.error).toBeInstanceOf(ResourceLimitError);
    expect((r.error as Error).message).toMatch(/^zero\.bin: tensor "decoder\.bias": F32 \[65536, 65536\] \(17179869184 bytes, broadcast from 4\) takes the checkpoint's tensors past \d+ bytes/);
    expect(r.ms).toBeLessThan(1000);
  });

  it('the 1 GiB variant is refused too, and `convert` writes nothing (was a 1 GiB file in 13 s)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-hostile-'));
    writeFileSync(join(dir, 'zero.bin'), strideZeroCheckpoint([16384, 16384]));
    const err: string[] = [];
    const io = { stdout: () => undefined, stderr: (s: string) => void err.push(s), isTTY: false };
    const t0 = performance.now();
    expect(await main(['convert', join(dir, 'zero.bin'), join(dir, 'out.safetensors')], io)).toBe(1);
    expect(performance.now() - t0).toBeLessThan(SECONDS * 1000); // the first call also loads the CLI's command modules
    expect(err.join('')).toMatch(/^fewstep convert: .*zero\.bin: tensor "w": F32 \[16384, 16384\] \(1073741824 bytes, broadcast from 4\) takes the checkpoint's tensors past/);
    expect(readdirSync(dir)).toEqual(['zero.bin']); // no output, no temp file
    // inspect refuses it the same way, in one line.
    err.length = 0;
    expect(await main(['inspect', join(dir, 'zero.bin')], io)).toBe(1);
    expect(err).toHaveLength(1);
  });

  it('a real broadcast within the limits reads back as its repeated values (position_ids-style [1, n] and a [3, 4] expand)', async () => {
    const p = new Pickle().emptyDict().mark();
    p.str('position_ids').tensor({ type: 'LongStorage', key: '0', numel: 5, size: [1, 5], stride: [0, 1] });
    p.str('expanded').tensor({ key: '1', numel: 4, size: [3, 4], stride: [0, 1] });
    p.str('scalar_bcast').tensor({ key: '1', numel: 4, offset: 2, size: [2, 3], stride: [0, 0] });
    p.setitems().stop();
    const longs = new Uint8Array(BigInt64Array.from([0n, 1n, 2n, 3n, 4n]).buffer);
    const f = await TorchCheckpointFile.fromFile(new MemoryFile('b.bin', checkpoint(p.bytes(), { '0': longs, '1': new Uint8Array(Float32Array.of(1, 2, 3, 4).buffer) })));
    expect([...(await f.read('position_ids'))]).toEqual([0, 1, 2, 3, 4]);
    expect([...(await f.read('expanded'))]).toEqual([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
    expect([...(await f.read('scalar_bcast'))]).toEqual([3, 3, 3, 3, 3, 3]);
    expect(f.info('expanded').contiguous).toBe(false);
  });

  it('an overlapping view (more elements than its storage holds, no stride 0) is a FileFormatError naming the tensor', async () => {
    const p = new Pickle().emptyDict().str('w').tensor({ key: '0', numel: 2047, size: [1024, 1024], stride: [1, 1] }).setitem().stop();
    await expect(TorchCheckpointFile.fromFile(new MemoryFile('o.bin', checkpoint(p.bytes(), { '0': new Uint8Array(2047 * 4) })))).rejects.toThrow(
      'o.bin: tensor "w": size [1024,1024], stride [1,1] at offset 0 has 1048576 elements outside broadcast (stride-0) dims but its storage holds 2047 from that offset: an overlapping view',
    );
  });

  it('many tensors sharing one storage count against the expansion budget; a few (tied weights) are fine', async () => {
    const share = (users: number) => {
      const p = new Pickle().emptyDict().mark();
      for (let i = 0; i < users; i++) p.str(`t${i}`).tensor({ key: '0', numel: 1 << 18, size: [512, 512], stride: [512, 1] });
      return checkpoint(p.setitems().stop().bytes(), { '0': new Uint8Array(1 << 20) });
    };
    const tied = await TorchCheckpointFile.fromFile(new MemoryFile('tied.bin', share(3)));
    expect((await tied.readBytes('t2')).length).toBe(1 << 20);
    const many = share(200); // 1 MiB of storage viewed 200 times: 200 MiB to write
    await expect(TorchCheckpointFile.fromFile(new MemoryFile('many.bin', many))).rejects.toThrow(/^many\.bin: tensor "t\d+": F32 \[512, 512\] \(1048576 bytes\) takes the checkpoint's tensors past/);
  });

  it('ranks above TENSOR_FILE_LIMITS.rank and negative storage sizes are corrupt', () => {
    const rank = new Pickle().emptyDict().str('w').tensor({ key: '0', numel: 1, size: new Array(65).fill(1), stride: new Array(65).fill(1) }).setitem().stop();
    expect(() => unpickle(rank.bytes(), ctx)).toThrow('size has 65 dimensions, more than 64 (TENSOR_FILE_LIMITS.rank)');
    const neg = new Pickle().mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').push(0x4a).u32(0xffffffff).tuple().persid().stop();
    expect(() => unpickle(neg.bytes(), ctx)).toThrow('storage "0" has a negative size -1');
  });
});

describe('messages stay one line whatever the file names hold (found by the long fuzz run)', () => {
  it('a record name with a line break is escaped in the error', async () => {
    const p = new Pickle().emptyDict().str('w').tensor({ key: '0', numel: 1, size: [1], stride: [1] }).setitem().stop();
    const zip = makeZip([{ name: 'x\ny/data.pkl', data: p.bytes() }]);
    const e = await TorchCheckpointFile.fromFile(new MemoryFile('nl.bin', zip)).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(TorchCheckpointError);
    expect((e as Error).message).toBe('nl.bin: tensor "w": its storage record x\\u000ay/data/0 is missing (truncated or corrupt checkpoint)');
  });

  it('STACK_GLOBAL names with line breaks, in a refusal', () => {
    const p = new Pickle().str('os\nx').str('system\r').push(0x93).stop();
    expect(() => unpickle(p.bytes(), ctx)).toThrow('global "os\\u000ax system\\u000d" (os\\u000ax.system\\u000d)');
  });
});

describe('every hostile checkpoint is one FewstepError naming the file, through every entry point', () => {
  const files: [string, Uint8Array][] = [
    ['memo-bomb', memoDictBomb(20, 10)],
    ['fan-out', memoDictBomb(6, 8)],
    ['late-filled', lateFilledDictBomb(20, 10)],
    ['self-nested', selfNestedDict(20)],
    ['stride-zero', strideZeroCheckpoint([65536, 65536])],
  ];
  it.each(files)('%s: TorchCheckpointFile, tensorFileFrom (by content), openTensorFile (by extension)', async (name, bytes) => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-hostile-'));
    writeFileSync(join(dir, `${name}.pth`), bytes);
    for (const open of [
      () => TorchCheckpointFile.fromFile(new MemoryFile(name, bytes)),
      () => tensorFileFrom(new MemoryFile(name, bytes)),
      () => openTensorFile(nodeFiles, join(dir, `${name}.pth`)),
    ]) {
      const e = await open().then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(FewstepError);
      expect((e as Error).message).toContain(name);
      expect((e as Error).message).not.toContain('\n');
    }
  });
});
