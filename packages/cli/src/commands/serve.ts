// fewstep serve: one resident model behind an OpenAI-compatible HTTP API (and the web page), until Ctrl-C /
// SIGTERM — which lets the running generation finish (or cancels it after a grace period) and exits 0.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from '../args.js';
import type { Command } from '../command.js';
import { checkLoras } from '../lora_source.js';
import { checkControlNetSource } from '../generation/controlnet_source.js';
import { MODEL_FLAGS, QUIET_FLAG, modelOptions, requestError } from '../generation/flags.js';
import { loadModel, planModel } from '../generation/model.js';
import { createProgressUI } from '../generation/progress.js';
import { startServer } from '../serve/server.js';
import { imageService } from '../serve/image_service.js';

/** The built web page: @fewstep/web's dist/ when it is installed (or in this monorepo), else none (API only). */
function defaultPageDir(): string | undefined {
  try {
    const dir = join(dirname(createRequire(import.meta.url).resolve('@fewstep/web/package.json')), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

export const serve: Command = {
  name: 'serve',
  usage: 'fewstep serve [--model <id|dir>] [--port 7860] [--host 127.0.0.1] [--api-key K] [--dtype f32|f16] [--vae tiny|large] [--vae-dtype f32|f16] [--lora <file|repo>[:scale]]... [--controlnet <id|dir>] [--max-queue N] [--page <dir>] [--quiet]',
  description:
    'Loads the model once and serves it until Ctrl-C / SIGTERM (the running request finishes, or is cancelled after\n' +
    '10 s; exit 0):\n' +
    '  POST /v1/images/generations   OpenAI Images API: prompt, n, size ("512x512"), response_format (b64_json, or url:\n' +
    '                                a data: URL), model (optional; must be the served one); extensions: seed, steps,\n' +
    '                                guidance_scale, negative_prompt. Each image also reports its seed.\n' +
    '  GET  /v1/models               the served model\n' +
    '  GET  /health                  status and queue\n' +
    '  GET  /                        the web page (generates in the browser with WebGPU, or on this server)\n' +
    'One generation runs at a time; up to --max-queue wait behind it, more get 429 with Retry-After. A client that\n' +
    'disconnects cancels its request. Bad JSON or values get 400 naming the field, in OpenAI\'s error shape. It binds to\n' +
    'localhost unless --host says otherwise; with --api-key (or FEWSTEP_API_KEY) every API request needs\n' +
    '`Authorization: Bearer <key>`. Any OpenAI client works: `new OpenAI({ baseURL: "http://127.0.0.1:7860/v1", apiKey })`.',
  flags: {
    ...MODEL_FLAGS,
    controlnet: { type: 'string', help: 'A ControlNetModel folder or hub repo to load with the model (the API then needs a control image: not exposed yet)' },
    port: { type: 'int', default: 7860, help: 'TCP port (0: any free one)' },
    host: { type: 'string', default: '127.0.0.1', help: 'Address to bind (0.0.0.0 exposes the server to the network: set --api-key)' },
    'api-key': { type: 'string', help: 'Require `Authorization: Bearer <key>` on every API request (default: $FEWSTEP_API_KEY, else none)' },
    'max-queue': { type: 'int', default: 8, help: 'Requests that may wait behind the running one' },
    page: { type: 'string', help: "Folder of the web page to serve at / (default: @fewstep/web's build, if present)" },
    ...QUIET_FLAG,
  },
  async run({ flags, positionals }, io) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const options = modelOptions(flags);
    const port = flags['port'] as number, host = flags['host'] as string, maxQueue = flags['max-queue'] as number;
    if (port < 0 || port > 65535) throw new UsageError(`--port must be from 0 to 65535, got ${port}`);
    if (maxQueue < 0) throw new UsageError(`--max-queue must be 0 or more, got ${maxQueue}`);
    const apiKey = (flags['api-key'] as string | undefined) ?? process.env['FEWSTEP_API_KEY'] ?? undefined;
    if (apiKey !== undefined && apiKey.length < 8) throw new UsageError('--api-key must be at least 8 characters');
    const pageFlag = flags['page'] as string | undefined;
    if (pageFlag !== undefined && !existsSync(join(pageFlag, 'index.html'))) throw new UsageError(`--page ${pageFlag}: no index.html there`);
    const page = pageFlag ?? defaultPageDir();
    const controlnet = flags['controlnet'] as string | undefined;
    await checkLoras(options.loras);
    if (controlnet !== undefined) await checkControlNetSource(controlnet);

    const quiet = Boolean(flags['quiet']);
    const ui = createProgressUI(io, { quiet });
    const ctx = { ui, signal: io.signal };
    const plan = await planModel(options, { controlnet }, ctx);
    const loaded = await loadModel(plan, ctx);
    ui.finish();
    const service = imageService(loaded, options);
    const log = quiet ? undefined : (line: string) => io.stderr(`${line}\n`);
    let server;
    try {
      server = await startServer(service, { host, port, apiKey, maxQueue, staticDir: page, log });
    } catch (e) {
      loaded.dispose();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new UsageError(`--port ${port}: already in use on ${host}`);
      if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--host ${host}: not an address of this machine`);
      throw requestError(e);
    }
    io.stdout(`serving ${options.model} on ${server.url} (${loaded.device.adapter.name}${page ? '; page at /' : '; no page build found: API only'})\n`);
    if (!quiet && host !== '127.0.0.1' && host !== 'localhost' && host !== '::1' && !apiKey) io.stderr(`warning: listening on ${host} without --api-key: anyone who can reach this port can use the GPU\n`);
    await new Promise<void>((resolve) => {
      if (!io.signal) return; // no way to stop: serve until the process ends
      if (io.signal.aborted) resolve();
      else io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    if (!quiet) io.stderr('shutting down: finishing the running request (at most 10 s)\n');
    await server.close();
    loaded.dispose();
    return 0;
  },
};
