// `fewstep inspect` on PyTorch checkpoints and `fewstep convert` (.bin/.pth → safetensors): output tables
// and JSON, bit-exact conversion, --taesd-keys, --dtype, no partial or overwritten output, evil.bin refused.
import { describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, f16BitsToF32, roundToF16 } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';
import { main } from '../../packages/cli/src/main';

const G = new URL('../fixtures/golden/torch_checkpoints/', import.meta.url).pathname;
const TAESD_ST = new URL('../fixtures/golden/taesd/model.safetensors', import.meta.url).pathname;

const capture = () => {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), isTTY: false } };
};
const evilError = (cmd: string, file: string) =>
  `fewstep ${cmd}: ${file}: unsafe pickle refused: global "os system" (os.system) at byte 176 of evil/data.pkl is not allowed in a tensor checkpoint ` +
  '(only collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage are); nothing was executed\n';

describe('fewstep inspect on PyTorch checkpoints', () => {
  it('lists tensors with dtype, shape and storage sharing / views; JSON carries strides and offsets', async () => {
    const p = join(G, 'diffusion_pytorch_model.bin');
    const c = capture();
    expect(await main(['inspect', p], c.io)).toBe(0);
    const text = c.out.join('');
    expect(text).toContain('name                                dtype  shape         storage\n');
    expect(text).toContain('conv_in.weight                      F32    [8, 4, 3, 3]  0\n');
    expect(text).toContain('norm.weight                         BF16   [8]           4\n');
    expect(text).toContain('norm.num_batches_tracked            I64    []            8\n');
    expect(text).toContain('proj.weight                         F32    [6, 10]       6 (shared ×3)\n');
    expect(text).toContain('proj_t.weight                       F32    [10, 6]       6 (shared ×3, view (stride [1, 10]))\n');
    expect(text).toContain('proj.column                         F32    [6]           6 (shared ×3, view (offset 3, stride [10]))\n');
    expect(text).toContain('12 tensors, 661 parameters');
    expect(text).toContain('PyTorch checkpoint (archive folder "diffusion_pytorch_model"): 10 storages, 3 tensors share a storage, 2 strided/offset views\n');
    expect(c.err).toEqual([]);

    const j = capture();
    expect(await main(['inspect', p, '--json'], j.io)).toBe(0);
    const json = JSON.parse(j.out.join(''));
    expect(json).toMatchObject({ file: p, format: 'pytorch', parameters: 661, archive_folder: 'diffusion_pytorch_model' });
    expect(json.tensors.find((t: { name: string }) => t.name === 'proj.column')).toEqual({
      name: 'proj.column', dtype: 'F32', shape: [6], storage: '6', storage_offset: 3, stride: [10], contiguous: false, shared: true,
    });
    expect(json.tensors.find((t: { name: string }) => t.name === 'logit_scale')).toMatchObject({ shape: [], stride: [], shared: false, contiguous: true });
  });

  it('works on .pth (TAESD) and safetensors keeps its format field', async () => {
    const c = capture();
    expect(await main(['inspect', join(G, 'taesd_decoder.pth')], c.io)).toBe(0);
    expect(c.out.join('')).toContain('67 tensors, 1,222,531 parameters');
    const s = capture();
    expect(await main(['inspect', join(G, 'diffusion_pytorch_model.safetensors'), '--json'], s.io)).toBe(0);
    expect(JSON.parse(s.out.join('')).format).toBe('safetensors');
  });

  it('evil.bin: one line naming the file and os system, exit 1', async () => {
    const p = join(G, 'evil.bin');
    const c = capture();
    expect(await main(['inspect', p], c.io)).toBe(1);
    expect(c.err).toEqual([evilError('inspect', p)]);
    expect(c.out).toEqual([]);
  });

  it('a truncated .bin: one line naming the file, exit 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-inspect-bin-'));
    const p = join(dir, 'trunc.bin');
    const good = readFileSync(join(G, 'diffusion_pytorch_model.bin'));
    writeFileSync(p, good.subarray(0, 3000));
    const c = capture();
    expect(await main(['inspect', p], c.io)).toBe(1);
    expect(c.err).toEqual([`fewstep inspect: ${p}: no zip end-of-central-directory record: the file is truncated or is not a zip archive\n`]);
  });
});

describe('fewstep convert', () => {
  it('.bin → safetensors: every tensor bit-exact, dtypes kept, views made contiguous', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const out = join(dir, 'out.safetensors');
    const c = capture();
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), out], c.io)).toBe(0);
    expect(c.out).toEqual([`${out}: 12 tensors, 661 parameters, 0.00 MiB\n`]);
    const got = await SafetensorsFile.open(nodeFiles, out);
    const ref = await SafetensorsFile.open(nodeFiles, join(G, 'diffusion_pytorch_model.safetensors'));
    try {
      expect([...got.tensors.keys()].sort()).toEqual([...ref.tensors.keys()].sort());
      expect(got.metadata).toEqual({ format: 'pt' });
      for (const k of ref.tensors.keys()) {
        expect(got.info(k).dtype, k).toBe(ref.info(k).dtype);
        expect(got.info(k).shape, k).toEqual(ref.info(k).shape);
        expect(Buffer.from(await got.readBytes(k)).equals(Buffer.from(await ref.readBytes(k))), k).toBe(true);
      }
    } finally {
      await got.close();
      await ref.close();
    }
    expect(readdirSync(dir)).toEqual(['out.safetensors']);
  });

  it('--dtype f16 converts only floating-point tensors; --dtype f32 widens f16/bf16 exactly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const h = join(dir, 'h.safetensors'), f = join(dir, 'f.safetensors');
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), h, '--dtype', 'f16'], capture().io)).toBe(0);
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), f, '--dtype=f32'], capture().io)).toBe(0);
    const hf = await SafetensorsFile.open(nodeFiles, h);
    const ff = await SafetensorsFile.open(nodeFiles, f);
    const ref = await SafetensorsFile.open(nodeFiles, join(G, 'diffusion_pytorch_model.safetensors'));
    try {
      for (const k of ref.tensors.keys()) {
        const int = ref.info(k).dtype === 'I64';
        expect(hf.info(k).dtype, k).toBe(int ? 'I64' : 'F16');
        expect(ff.info(k).dtype, k).toBe(int ? 'I64' : 'F32');
        if (int) continue;
        const r = (await ref.read(k, 'f32')) as Float32Array;
        expect(await ff.read(k, 'f32'), k).toEqual(r);
        expect(Float32Array.from(await hf.read(k, 'f16'), f16BitsToF32), k).toEqual(roundToF16(r));
      }
    } finally {
      await Promise.all([hf.close(), ff.close(), ref.close()]);
    }
  });

  it('--taesd-keys: taesd_encoder.pth / taesd_decoder.pth become diffusers AutoencoderTiny tensors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const taesd = await SafetensorsFile.open(nodeFiles, TAESD_ST);
    try {
      for (const part of ['encoder', 'decoder']) {
        const out = join(dir, `${part}.safetensors`);
        const c = capture();
        expect(await main(['convert', join(G, `taesd_${part}.pth`), out, '--taesd-keys'], c.io)).toBe(0);
        expect(c.out.join('')).toContain(', TAESD keys renamed to diffusers');
        const got = await SafetensorsFile.open(nodeFiles, out);
        try {
          const want = [...taesd.tensors.keys()].filter((k) => k.startsWith(`${part}.`)).sort();
          expect([...got.tensors.keys()].sort()).toEqual(want);
          for (const k of want) expect(Buffer.from(await got.readBytes(k)).equals(Buffer.from(await taesd.readBytes(k))), k).toBe(true);
        } finally {
          await got.close();
        }
      }
    } finally {
      await taesd.close();
    }
    const bad = capture();
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), join(dir, 'x.safetensors'), '--taesd-keys'], bad.io)).toBe(1);
    expect(bad.err.join('')).toContain(`${join(G, 'diffusion_pytorch_model.bin')}: keys "conv_in.weight", "conv_in.bias", "time_embedding.linear_1.weight", … are not original TAESD keys`);
    expect(existsSync(join(dir, 'x.safetensors'))).toBe(false);
  });

  it('refuses to overwrite without --force; --force replaces the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const out = join(dir, 'o.safetensors');
    writeFileSync(out, 'precious');
    const c = capture();
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), out], c.io)).toBe(2); // a usage error: the output flag's file exists
    expect(c.err).toEqual([`fewstep convert: ${out} already exists (pass --force to overwrite)\n`]);
    expect(readFileSync(out, 'utf8')).toBe('precious');
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), out, '--force'], capture().io)).toBe(0);
    expect((await SafetensorsFile.open(nodeFiles, out)).tensors.size).toBe(12);
    expect(readdirSync(dir)).toEqual(['o.safetensors']);
  });

  it('evil.bin and a truncated file: one line, exit 1, no output and no temp file; even with --force the old file stays', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const evil = join(G, 'evil.bin');
    const c = capture();
    expect(await main(['convert', evil, join(dir, 'evil.safetensors')], c.io)).toBe(1);
    expect(c.err).toEqual([evilError('convert', evil)]);
    expect(readdirSync(dir)).toEqual([]);
    const trunc = join(dir, 'trunc.bin');
    writeFileSync(trunc, readFileSync(join(G, 'diffusion_pytorch_model.bin')).subarray(0, 5000));
    writeFileSync(join(dir, 'keep.safetensors'), 'old');
    const t = capture();
    expect(await main(['convert', trunc, join(dir, 'keep.safetensors'), '--force'], t.io)).toBe(1);
    expect(t.err).toEqual([`fewstep convert: ${trunc}: no zip end-of-central-directory record: the file is truncated or is not a zip archive\n`]);
    expect(readdirSync(dir).sort()).toEqual(['keep.safetensors', 'trunc.bin']);
    expect(readFileSync(join(dir, 'keep.safetensors'), 'utf8')).toBe('old');
  });

  it('a storage that fails mid-write leaves no partial output', async () => {
    // Storage record data/9 (logit_scale, the last tensor written) cut short inside an otherwise valid archive:
    // the header and the first tensors are written to the temp file, then the read fails.
    const dir = mkdtempSync(join(tmpdir(), 'fewstep-convert-'));
    const src = join(dir, 'broken.bin');
    copyFileSync(join(G, 'diffusion_pytorch_model.bin'), src);
    const b = readFileSync(src);
    // data/9's local header (the first copy of its name; the central directory's comes later): a huge name
    // length puts its data past the end of the file, which only the read of that record can notice.
    const at = b.indexOf(Buffer.from('diffusion_pytorch_model/data/9')) - 30;
    expect(b.readUInt32LE(at)).toBe(0x04034b50);
    b.writeUInt16LE(0xffff, at + 26);
    writeFileSync(src, b);
    const out = join(dir, 'o.safetensors');
    const c = capture();
    expect(await main(['convert', src, out], c.io)).toBe(1);
    expect(c.err.join('')).toMatch(/^fewstep convert: .*broken\.bin: entry "diffusion_pytorch_model\/data\/\d+" \(\d+ bytes at \d+\) runs past the end of the file: truncated\n$/);
    expect(readdirSync(dir)).toEqual(['broken.bin']);
  });

  it('usage errors: exit 2', async () => {
    const a = capture();
    expect(await main(['convert', join(G, 'evil.bin')], a.io)).toBe(2);
    expect(a.err.join('')).toBe('fewstep convert: expected an input file and an output .safetensors file, got 1 argument(s)\n');
    const b = capture();
    expect(await main(['convert', join(G, 'diffusion_pytorch_model.bin'), '/tmp/x.bin'], b.io)).toBe(2);
    expect(b.err.join('')).toBe('fewstep convert: output /tmp/x.bin must end in .safetensors\n');
    const d = capture();
    expect(await main(['convert', 'a.bin', 'b.safetensors', '--dtype', 'f8'], d.io)).toBe(2);
    expect(d.err.join('')).toBe('fewstep convert: --dtype must be one of f16, f32, got "f8"\n');
  });
});
