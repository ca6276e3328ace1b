import { Device, type DType, type KernelSettings } from '@fewstep/tensor';
import { kernelSettings as resolvedKernelSettings, type ResolvedKernelSettings } from '@fewstep/kernels';
import { defaultDawnOptions, nodeGPU } from '@fewstep/tensor/node';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { benchKernels, type KernelRow } from '../bench/kernels.js';
import { MODEL_COMPONENTS, benchModels, type ModelRow } from '../bench/models.js';
import { PIPELINE_CONFIGS, benchPipeline } from '../bench/pipeline.js';
import { formatStagePeaks } from '../bench/stage_peaks.js';
import { embeddingCases, kernelCases } from '../bench/kernel_cases.js';
import { caseNameFilter, defaultAnchorsDir, defaultOrtCache, ensureOrt, loadAnchorCases, mergePeer, runOrtPeer, type PeerEp, type PeerFields, type PeerResult } from '../bench/peer_ort.js';
import { speedupSvg } from '../bench/plot.js';
import { MODEL_FLAGS, modelOptions } from '../generation/flags.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export const bench: Command = {
  name: 'bench',
  summary: 'Benchmarks: `bench kernels` (every kernel at SDXS-512 shapes), `bench models` / `bench pipeline` (full size, random weights)',
  usage: 'fewstep bench kernels [--json] [--dtype f32|f16|both] [--filter <regex>] [--reps N] [--streaming chunked|flat]\n' +
    '       [--peer ort [--peer-ep webgpu|cpu] [--anchors <dir>] [--ort-cache <dir>] [--plot <file.svg>]]\n' +
    '       fewstep bench models [--json] [--dtype f32|f16] [--only text_encoder,unet,decoder,clip]\n' +
    '       fewstep bench pipeline [--json] [--dtype f32|f16] [--vae-dtype f32|f16] [--config sdxs-512-0.9|sdxs-512-dreamshaper|sd15] [--runs N] [--profile] [--low-memory] [--preload]\n' +
    '       fewstep bench serve --model <id|dir> [--clients 1,4] [--requests N] [--size 512x512] [--n 1] [--json]\n' +
    '       fewstep bench write-model <dir> --tokenizer <dir> [--config sdxs-512-0.9|sdxs-512-dreamshaper|sd15] [--dtype f32|f16]\n' +
    '       fewstep bench soak --model <id|dir> [--images 200] [--serve] [--every 10] [--size 512x512] [--json]',
  description:
    'Times each kernel at the shapes SDXS-512 uses (case names match shared/anchors/ort-ops), after a warm-up run, ' +
    'with GPU timestamp queries when the adapter has them (else wall clock around a full sync). Reports median ms, ' +
    'GFLOP/s (compute-bound) or GB/s (memory-bound: the bytes the op must read + write, minimal), adapter, dtype and the max |error| against a CPU reference on sampled outputs. ' +
    'Next to each memory-bound case the adapter\'s bandwidth at the same size is measured (a buffer copy and a trivial copy kernel moving ' +
    'as many bytes; bw_gbps is the faster) and the case\'s rate is printed as a percentage of it (bw_pct) and of the copy kernel (kernel_pct). ' +
    'Benchmarks never assert speed.\n\n`--peer ort` then times the same ops with ONNX Runtime (the anchors\' run.mjs, in a child process, back to back ' +
    'with ours on the same adapter; only the anchor cases are run) and adds peer_ms, peer_ep and speedup = peer_ms / median_ms to the f32 rows. ' +
    'onnxruntime-node 1.30.0 is benchmark-only: it is installed on demand (npm install --no-save --ignore-scripts) into --ort-cache ' +
    '(default $XDG_CACHE_HOME/fewstep/ort or ~/.cache/fewstep/ort), never a dependency. `--plot out.svg` draws ours vs the peer per op.\n\n`bench models` builds the full-size SD2 text encoder, the SDXS-512-0.9 UNet (64×64 latent) and the TAESD decoder ' +
    '(512×512 output) in their real configs with deterministic random weights (no download) and reports load time, the first ' +
    '(cold, pipelines compiled) and a warm forward, peak RSS and peak GPU memory, and whether the output is finite.\n\n' +
    '`bench pipeline` runs one whole 512×512 pass (text encoder → one UNet step, a CFG batch of 2 for sd15 → decoder) in a real ' +
    'config with random weights, cold (load + first run) and warm, and prints {adapter, dtype, stages: {text_encoder_s, unet_s, ' +
    'decode_s}, total_s, cold_total_s, peak_rss_mb, peak_gpu_mb, cold_peaks, warm_peaks, images_per_s}; `--runs N` times N warm runs and reports medians. ' +
    'cold_peaks / warm_peaks: peak RSS and peak GPU pool (MiB) per stage — load_text_encoder, load_unet, load_decoder, text_encoder, unet, decode ' +
    '(Linux: the kernel\'s high-water mark, reset per stage). `--low-memory` runs generate\'s --low-memory schedule: every stage streams its ' +
    'component\'s weights from disk as its kernels run and frees them (warm runs too), so stage times include the reads.\n\n' +
    '`bench serve` loads --model once behind `fewstep serve`\'s HTTP API on 127.0.0.1 and, for each --clients C, sends --requests ' +
    'requests from C concurrent clients: requests/s, images/s and p50/p95 latency (queueing included).\n\n' +
    '`bench write-model <dir>` writes a full-size diffusers folder of a real config with deterministic random weights (no download; ' +
    'the CLIP tokenizer files come from --tokenizer), so `generate`, `batch` and `serve` can be timed end to end at full size.\n\n' +
    '`bench soak` loads --model once and makes --images one-image generations (new prompt and seed each; --serve: through ' +
    '`fewstep serve`\'s HTTP API), sampling RSS, the JS heap after a GC and the GPU buffer pool every --every images, and says ' +
    'whether memory grows after warm-up (the rule is printed with the verdict; see bench/soak.ts).',
  flags: {
    json: { type: 'boolean', help: 'Print one JSON document on stdout' },
    dtype: { type: 'string', choices: ['f32', 'f16', 'both'], help: 'Compute dtype(s) (kernels: both by default; models: f32)' },
    filter: { type: 'string', help: 'Only cases whose name or family matches this regex' },
    reps: { type: 'int', default: 5, help: 'Timed repetitions per case' },
    only: { type: 'string', help: 'bench models: comma-separated components (text_encoder, unet, decoder, clip)' },
    config: { type: 'string', choices: Object.keys(PIPELINE_CONFIGS), default: 'sdxs-512-0.9', help: 'bench pipeline: which real config' },
    toggles: { type: 'string', help: 'Comma-separated Dawn device toggles to enable, e.g. disable_robustness (to measure their effect)' },
    preload: { type: 'boolean', help: 'bench pipeline: read every weight at load (the library\'s preload) instead of on first use' },
    'low-memory': { type: 'boolean', aliases: ['sequential'], help: "bench pipeline: generate's --low-memory schedule — each stage streams its component's weights from disk, then frees them" },
    profile: { type: 'boolean', help: 'bench pipeline: one extra run timing every dispatch on the GPU; adds per-stage GPU ms and the top kernels' },
    winograd: { type: 'string', choices: ['off', '2', '4'], help: 'bench: 3×3 stride-1 convs as Winograd F(4×4)/F(2×2) or the implicit GEMM (off); default: per adapter (F(4×4) on CPU adapters)' },
    streaming: { type: 'string', choices: ['chunked', 'flat'], help: 'bench: memory-bound kernels (elementwise, casts, norms): chunked (vec4 chunks per small workgroup; default on CPU adapters) or flat (one element per invocation; default on GPUs)' },
    'split-k': { type: 'string', help: 'bench: split-K tuning below,target,minK (GEMM workgroups below which K is split; workgroups aimed at; shortest K split)' },
    runs: { type: 'int', default: 1, help: 'bench pipeline: warm runs timed (medians reported, with images_per_s)' },
    model: { ...MODEL_FLAGS['model']!, default: undefined, help: 'bench serve: the model folder or hub id to serve' },
    'vae-dtype': { ...MODEL_FLAGS['vae-dtype']!, help: `bench pipeline, serve, soak: ${MODEL_FLAGS['vae-dtype']!.help}` },
    clients: { type: 'string', default: '1,4', help: 'bench serve: comma-separated concurrent client counts' },
    requests: { type: 'int', default: 8, help: 'bench serve: requests per client count' },
    size: { type: 'string', default: '512x512', help: 'bench serve: image size WIDTHxHEIGHT' },
    n: { type: 'int', default: 1, help: 'bench serve: images per request' },
    images: { type: 'int', default: 200, help: 'bench soak: generations of one image each' },
    serve: { type: 'boolean', help: 'bench soak: through fewstep serve\'s HTTP API on 127.0.0.1 instead of in-process' },
    every: { type: 'int', default: 10, help: 'bench soak: images between memory samples' },
    tokenizer: { type: 'string', help: 'bench write-model: a CLIP tokenizer folder (vocab.json, merges.txt, …) to copy into the model' },
    peer: { type: 'string', choices: ['ort'], help: 'bench kernels: also time the anchor cases with ONNX Runtime (onnxruntime-node, installed on demand)' },
    'peer-ep': { type: 'string', choices: ['webgpu', 'cpu'], default: 'webgpu', help: 'Execution provider for --peer ort' },
    anchors: { type: 'string', help: 'Folder holding the ORT anchors (cases.json, run.mjs); default <repo>/../shared/anchors/ort-ops' },
    'ort-cache': { type: 'string', help: 'Where onnxruntime-node is installed for --peer ort (default $XDG_CACHE_HOME/fewstep/ort or ~/.cache/fewstep/ort)' },
    plot: { type: 'string', help: 'With --peer: write an SVG of fewstep f32 vs the peer per op to this file' },
  },
  async run({ flags, positionals }, io) {
    kernelSettings(flags); // flag errors before anything else
    const what = positionals[0];
    if (what === 'models') return runModels(flags, io);
    if (what === 'pipeline') return runPipeline(flags, io);
    if (what === 'serve') return runServe(flags, io);
    if (what === 'write-model') return runWriteModel(flags, positionals.slice(1), io);
    if (what === 'soak') return (await import('../bench/soak.js')).runSoakCommand(flags, io);
    if (what !== 'kernels') throw new UsageError(`expected \`bench kernels\`, \`models\`, \`pipeline\`, \`serve\`, \`write-model\` or \`soak\`, got ${what ? `"${what}"` : 'nothing'}`);
    const reps = flags['reps'] as number;
    if (reps < 1) throw new UsageError(`--reps must be ≥ 1, got ${reps}`);
    let filter: RegExp | undefined;
    if (flags['filter'] !== undefined) {
      try {
        filter = new RegExp(flags['filter'] as string);
      } catch (e) {
        throw new UsageError(`--filter is not a valid regular expression: ${(e as Error).message}`);
      }
    }
    if (flags['peer'] === undefined) {
      for (const f of ['anchors', 'ort-cache', 'plot']) if (flags[f] !== undefined) throw new UsageError(`--${f} needs --peer ort`);
    }
    // --peer: only the anchor cases (checked, and ORT installed, before any GPU work).
    let peerSetup: { anchorsDir: string; ortDir: string; ep: PeerEp; names: string[]; all: boolean } | undefined;
    if (flags['peer'] === 'ort') {
      const anchorsDir = resolve((flags['anchors'] as string | undefined) ?? defaultAnchorsDir());
      const anchorNames = new Set(loadAnchorCases(anchorsDir).map((c) => c.name));
      const names = [...kernelCases(), ...embeddingCases()]
        .filter((c) => anchorNames.has(c.name) && (!filter || filter.test(c.name) || filter.test(c.family)))
        .map((c) => c.name);
      if (!names.length) throw new UsageError(`--peer ort: no anchor case (${[...anchorNames].join(', ')}) matches${filter ? ` --filter ${filter.source}` : ''}`);
      filter = caseNameFilter(names);
      const ortDir = await ensureOrt((flags['ort-cache'] as string | undefined) ?? defaultOrtCache(), { stderr: io.stderr });
      peerSetup = { anchorsDir, ortDir, ep: ((flags['peer-ep'] as string | undefined) ?? 'webgpu') as PeerEp, names, all: names.length === anchorNames.size };
    }
    let adapter: string, timing: string, date: string, kernels: ResolvedKernelSettings;
    let rows: (KernelRow & PeerFields)[];
    const device = await openDevice(flags);
    try {
      const dtypes: DType[] = flags['dtype'] === undefined || flags['dtype'] === 'both' ? (device.features.f16 ? ['f32', 'f16'] : ['f32']) : [flags['dtype'] as DType];
      if (dtypes.includes('f16') && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
      if (peerSetup && !dtypes.includes('f32')) throw new UsageError('--peer ort compares the f32 rows (the ORT graphs are float32): use --dtype f32 or both');
      adapter = device.adapter.name;
      kernels = resolvedKernelSettings(device);
      timing = device.features.timestamp ? 'gpu-timestamp' : 'wall';
      date = new Date().toISOString();
      // With a peer the table is printed once the peer numbers are in; progress goes to stderr meanwhile.
      const live = !flags['json'] && !peerSetup;
      if (live) io.stdout(`adapter: ${adapter}\n${tableHeader(false)}`);
      rows = await benchKernels(device, {
        dtypes, filter, reps,
        onRow: (r: KernelRow) => {
          if (live) io.stdout(tableLine(r, false));
          else io.stderr(`${r.case} ${r.dtype}: ${r.error ? 'error' : r.median_ms + ' ms'}\n`);
        },
      });
    } finally {
      device.destroy();
    }
    let peer: PeerResult | undefined;
    if (peerSetup) {
      const { anchorsDir, ortDir, ep, names, all } = peerSetup;
      io.stderr(`ONNX Runtime (${ep} EP): ${names.length} case(s), ${reps} reps each…\n`);
      const forward = (s: string) => io.stderr(s.endsWith('\n') ? s : s + '\n');
      const results = all
        ? [await runOrtPeer({ anchorsDir, ortDir, ep, reps, stderr: forward })]
        : await names.reduce<Promise<PeerResult[]>>(async (acc, name) => [...(await acc), await runOrtPeer({ anchorsDir, ortDir, ep, reps, filter: name, stderr: forward })], Promise.resolve([]));
      peer = { engine: results[0]!.engine, ep: results[0]!.ep, rows: results.flatMap((r) => r.rows).filter((r) => names.includes(r.case)) };
      for (const r of peer.rows) io.stderr(`${r.case} ORT ${r.ep}: ${r.median_ms} ms\n`);
      rows = mergePeer(rows, peer.rows);
      if (flags['plot'] !== undefined) {
        const file = resolve(flags['plot'] as string);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, speedupSvg(rows, { title: `fewstep vs ONNX Runtime (${peer.ep} EP), per op`, adapter, date: date.slice(0, 10) }));
        io.stderr(`wrote ${file}\n`);
      }
      if (!flags['json']) {
        io.stdout(`adapter: ${adapter}; peer: ${peer.engine} (${peer.ep} EP)\n${tableHeader(true)}`);
        for (const r of rows) io.stdout(tableLine(r, true));
      }
    }
    if (flags['json'])
      io.stdout(JSON.stringify({ adapter, date, timing, kernels, ...(peer ? { peer: { engine: peer.engine, ep: peer.ep } } : {}), rows }, null, 1) + '\n');
    return rows.some((r) => r.error) ? 1 : 0;
  },
};

function tableHeader(peer: boolean): string {
  return `${'case'.padEnd(30)} ${'dtype'.padEnd(5)} ${'median ms'.padStart(10)} ${'rate'.padStart(14)} ${'bw GB/s'.padStart(8)} ${'% bw'.padStart(6)} ${'% kern'.padStart(6)} ${'max err'.padStart(9)}${peer ? ` ${'peer ms'.padStart(10)} ${'speedup'.padStart(8)}` : ''}\n`;
}

function tableLine(r: KernelRow & PeerFields, peer: boolean): string {
  if (r.error) return `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} error: ${r.error}\n`;
  const base = `${r.case.padEnd(30)} ${r.dtype.padEnd(5)} ${r.median_ms.toFixed(2).padStart(10)} ${(r.gflops !== null ? `${r.gflops} GFLOP/s` : `${r.gbps} GB/s`).padStart(14)} ${(r.bw_gbps === null ? '-' : String(r.bw_gbps)).padStart(8)} ${(r.bw_pct === null ? '-' : `${r.bw_pct}%`).padStart(6)} ${(r.kernel_pct === null ? '-' : `${r.kernel_pct}%`).padStart(6)} ${(r.max_err === null ? 'n/a' : r.max_err.toExponential(1)).padStart(9)}`;
  if (!peer) return base + '\n';
  const p = r.peer_ms === undefined ? '-' : r.peer_ms.toFixed(2);
  const s = r.speedup === undefined ? '-' : `${r.speedup}×`;
  return `${base} ${p.padStart(10)} ${s.padStart(8)}\n`;
}

// Dawn rounds GPU timestamps down to a 65.536 µs grain by default (seen on lavapipe and an H200),
// which hides every sub-0.1 ms kernel; benchmarks want the exact values. Dawn's Node bindings take
// this as an instance flag (a device's dawnTogglesDescriptor does not reach it).
const EXACT_TIMESTAMPS = 'disable-dawn-features=timestamp_quantization';

async function runModels(flags: Record<string, unknown>, io: Parameters<Command['run']>[1]): Promise<number> {
  const only = flags['only'] === undefined ? undefined : String(flags['only']).split(',').map((x) => x.trim());
  for (const o of only ?? []) if (!(MODEL_COMPONENTS as readonly string[]).includes(o)) throw new UsageError(`--only: unknown component "${o}" (${MODEL_COMPONENTS.join(', ')})`);
  const device = await openDevice(flags);
  try {
    if (flags['dtype'] === 'both') throw new UsageError('--dtype both is for bench kernels; bench models takes f32 or f16');
    const dtype: DType = flags['dtype'] === 'f16' ? 'f16' : 'f32';
    if (dtype === 'f16' && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
    if (!flags['json']) io.stdout(`adapter: ${device.adapter.name}, dtype ${dtype}\n`);
    const rows = await benchModels(device, {
      dtype, only,
      onRow: (r: ModelRow) => {
        const line = r.error ? `${r.component}: error: ${r.error}` : `${r.component}: load ${r.load_s}s, cold ${r.cold_s}s, warm ${r.warm_s}s, peak RSS ${r.peak_rss_mb} MB, peak GPU ${r.peak_gpu_mb} MB, output [${r.output_shape}] ${r.output_finite ? 'finite' : 'NOT FINITE'}${r.stages ? ` (${r.stages.map((s) => `${s.stage}: cold ${s.cold_s}s, warm ${s.warm_s}s`).join('; ')})` : ''}`;
        (flags['json'] ? io.stderr : io.stdout)(line + '\n');
      },
    });
    if (flags['json']) io.stdout(JSON.stringify({ adapter: device.adapter.name, dtype, date: new Date().toISOString(), rows }, null, 1) + '\n');
    return rows.some((r) => r.error || !r.output_finite) ? 1 : 0;
  } finally {
    device.destroy();
  }
}

async function runPipeline(flags: Record<string, unknown>, io: Parameters<Command['run']>[1]): Promise<number> {
  if (flags['dtype'] === 'both') throw new UsageError('--dtype both is for bench kernels; bench pipeline takes f32 or f16');
  const device = await openDevice(flags);
  try {
    const dtype: DType = flags['dtype'] === 'f16' ? 'f16' : 'f32';
    if (dtype === 'f16' && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --dtype f32`);
    const vaeDtype = flags['vae-dtype'] as 'f32' | 'f16' | undefined;
    if (vaeDtype === 'f16' && !device.features.f16) throw new Error(`this adapter (${device.adapter.name}) has no shader-f16; use --vae-dtype f32`);
    if ((flags['runs'] as number) < 1) throw new UsageError(`--runs must be ≥ 1, got ${flags['runs']}`);
    if (flags['low-memory'] && flags['profile']) throw new UsageError('--profile times the resident schedule; it cannot be combined with --low-memory');
    const r = await benchPipeline(device, flags['config'] as string, dtype, {
      log: (s) => io.stderr(s + '\n'), runs: flags['runs'] as number, profile: !!flags['profile'], lowMemory: !!flags['low-memory'], preload: !!flags['preload'], vaeDtype,
    });
    if (flags['json']) io.stdout(JSON.stringify({ ...r, date: new Date().toISOString() }, null, 1) + '\n');
    else {
      io.stdout(`${r.config} ${r.dtype} (decoder ${r.vae_dtype}) on ${r.adapter}${r.schedule === 'low-memory' ? ' (low memory)' : ''}: warm ${r.total_s} s (text encoder ${r.stages.text_encoder_s}, unet ${r.stages.unet_s}, decode ${r.stages.decode_s}), cold ${r.cold_total_s} s, peak RSS ${r.peak_rss_mb} MB, peak GPU ${r.peak_gpu_mb} MB\n`);
      io.stdout(`peak RSS/GPU MB per stage, cold: ${formatStagePeaks(r.cold_peaks)}\n`);
      if (Object.keys(r.warm_peaks).length) io.stdout(`peak RSS/GPU MB per stage, warm: ${formatStagePeaks(r.warm_peaks)}\n`);
    }
    return r.output_finite ? 0 : 1;
  } finally {
    device.destroy();
  }
}

/** The benchmark device: exact GPU timestamps, `--toggles`, kernel settings from `--split-k`. */
async function runServe(flags: Record<string, unknown>, io: Parameters<Command['run']>[1]): Promise<number> {
  if (flags['model'] === undefined) throw new UsageError('bench serve needs --model <dir|id> (e.g. a folder from `fewstep bench write-model`)');
  const clients = String(flags['clients']).split(',').map((c) => Number(c.trim()));
  if (!clients.length || clients.some((c) => !Number.isInteger(c) || c < 1 || c > 64)) throw new UsageError(`--clients must be comma-separated integers from 1 to 64, got "${flags['clients']}"`);
  const requests = flags['requests'] as number, n = flags['n'] as number, size = flags['size'] as string;
  if (requests < 1) throw new UsageError(`--requests must be ≥ 1, got ${requests}`);
  if (!/^\d+x\d+$/.test(size)) throw new UsageError(`--size must be WIDTHxHEIGHT, got "${size}"`);
  const { benchServe } = await import('../bench/serve.js');
  const options = modelOptions({ ...flags, dtype: flags['dtype'] ?? 'f32', lora: [] });
  const json = Boolean(flags['json']);
  const res = await benchServe(options, { clients, requests, size, n }, io, (r) => {
    if (!json) io.stdout(`${String(r.clients).padStart(3)} clients  ${r.requests_per_s.toFixed(3)} req/s  ${r.images_per_s.toFixed(3)} images/s  p50 ${r.p50_ms} ms  p95 ${r.p95_ms} ms  (${r.ok} ok, ${r.failed} failed)\n`);
  });
  if (json) io.stdout(JSON.stringify(res, null, 2) + '\n');
  else io.stdout(`${res.model} on ${res.adapter}, ${res.size}, warm-up ${res.warmup_s} s\n`);
  return 0;
}

async function runWriteModel(flags: Record<string, unknown>, rest: string[], io: Parameters<Command['run']>[1]): Promise<number> {
  const dir = rest[0];
  if (!dir) throw new UsageError('bench write-model needs the output folder: fewstep bench write-model <dir> --tokenizer <dir>');
  if (flags['tokenizer'] === undefined) throw new UsageError('bench write-model needs --tokenizer <dir> (vocab.json and merges.txt of a CLIP tokenizer)');
  const dtype = (flags['dtype'] ?? 'f32') as DType;
  if (dtype !== 'f32' && dtype !== 'f16') throw new UsageError(`--dtype must be f32 or f16 for write-model, got ${dtype}`);
  const { writeRandomModelFolder } = await import('../bench/model_folder.js');
  await writeRandomModelFolder(dir, flags['config'] as string, dtype, flags['tokenizer'] as string, (s) => io.stderr(`${s}\n`));
  io.stdout(`${dir}\n`);
  return 0;
}

async function openDevice(flags: Record<string, unknown>): Promise<Device> {
  return Device.open({ gpu: await nodeGPU([...defaultDawnOptions(), EXACT_TIMESTAMPS]), toggles: toggles(flags), kernels: kernelSettings(flags) });
}

/** `--split-k below,target,minK` → the device's `kernels.gemm.splitKTuning`. */
function kernelSettings(flags: Record<string, unknown>): KernelSettings {
  const k: KernelSettings = {};
  const w = flags['winograd'];
  if (w !== undefined) k.conv = { winograd: w === 'off' ? 'off' : (Number(w) as 2 | 4) };
  if (flags['streaming'] !== undefined) k.streaming = { variant: flags['streaming'] as 'chunked' | 'flat' };
  if (flags['split-k'] === undefined) return k;
  const v = String(flags['split-k']).split(',').map(Number);
  if (v.length !== 3 || v.some((x) => !Number.isInteger(x) || x < 1)) throw new UsageError(`--split-k takes three positive integers below,target,minK, got "${flags['split-k']}"`);
  return { ...k, gemm: { splitKTuning: { below: v[0]!, target: v[1]!, minK: v[2]! } } };
}

/** `--toggles a,b` → Dawn device toggles (Dawn ignores names it does not know, so they are echoed on stderr by the caller's log). */
function toggles(flags: Record<string, unknown>): string[] | undefined {
  if (flags['toggles'] === undefined) return undefined;
  const t = String(flags['toggles']).split(',').map((x) => x.trim()).filter(Boolean);
  for (const x of t) if (!/^[a-z0-9_]+$/.test(x)) throw new UsageError(`--toggles: "${x}" is not a Dawn toggle name (lower_snake_case)`);
  return t;
}
