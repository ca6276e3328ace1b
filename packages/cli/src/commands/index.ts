// The command table: names and one-line summaries, and a loader per command. `fewstep --help` prints this
// table without importing any command (each one pulls in its own dependencies: models, kernels, sharp, ...).
import type { Command, CommandEntry } from '../command.js';

const entry = (name: string, summary: string, load: () => Promise<Command>): CommandEntry => ({ name, summary, load });

export const commands: readonly CommandEntry[] = [
  entry('generate', 'Generate images from prompts (SDXS-512-0.9 by default, or any diffusers SD 1.x/2.x folder or repo)', async () => (await import('./generate.js')).generate),
  entry('batch', 'Generate one image per prompt of a prompt list (PartiPrompts TSV, CSV, parquet, JSONL, TXT or a hub dataset), resumable, sharded, CLIP-scored, with a report', async () => (await import('./batch.js')).batch),
  entry('score', 'CLIP score of images against prompts, or of a batch run folder (--run, resumable)', async () => (await import('./score.js')).score),
  entry('report', 'Summary of a batch run, two runs side by side (per category and challenge), or shard folders merged (--merge)', async () => (await import('./report.js')).report),
  entry('inspect', 'List the tensors of a safetensors file or PyTorch checkpoint (dtype, shape, parameter count)', async () => (await import('./inspect.js')).inspect),
  entry('convert', 'Convert a PyTorch checkpoint (.bin/.pth/.pt) to safetensors without running any pickle code', async () => (await import('./convert.js')).convert),
  entry('tokenize', 'Show the CLIP token ids of prompts (as the text encoder sees them)', async () => (await import('./tokenize.js')).tokenize),
  entry('bench', 'Benchmarks: `bench kernels` (every kernel at SDXS-512 shapes), `bench models` / `bench pipeline` (full size, random weights)', async () => (await import('./bench.js')).bench),
  entry('run', 'Run one model component (UNet, ControlNet, text encoder, VAE) on tensors from a safetensors file', async () => (await import('./run.js')).run),
  entry('serve', 'Serve a model over an OpenAI-compatible HTTP API (POST /v1/images/generations) and the web page', async () => (await import('./serve.js')).serve),
  entry('download', 'Download a Hugging Face repo into the HF cache and print its snapshot folder', async () => (await import('./download.js')).download),
];
