import { BufferPool } from './pool.js';
import { DispatchProfiler, type ProfileEntry } from './profiler.js';
import { DeviceError, InvalidArgumentError, ResourceLimitError, throwIfAborted } from './errors.js';

/**
 * Kernel tuning a Device carries: which GEMM tiling, split-K, attention kernel, … its dispatches use.
 * Empty here — @fewstep/kernels declares its (optional) fields by declaration merging and fills in
 * per-adapter defaults for whatever is left out; this package never reads it.
 */
export interface KernelSettings {}

/**
 * What `Device.scope()` collects and disposes: tensors register themselves (declared here so the device
 * needs nothing from tensor.ts).
 */
export interface ScopedResource {
  dispose(): void;
}

export interface DeviceOptions {
  /** `navigator.gpu` in a browser; `await nodeGPU()` from `@fewstep/tensor/node` in Node. */
  gpu: GPU;
  /** Use `shader-f16` when the adapter offers it (default true). */
  f16?: boolean | undefined;
  /** Use `subgroups` when offered (default true). */
  subgroups?: boolean | undefined;
  powerPreference?: GPUPowerPreference | undefined;
  /** Dawn device toggles to enable, e.g. ['disable_robustness'] (off by default). */
  toggles?: string[] | undefined;
  /** Dawn device toggles to disable, e.g. ['timestamp_quantization'] for exact benchmark timings. */
  disabledToggles?: string[] | undefined;
  /**
   * How to wait for the GPU. 'sleep' (the default where the thread may block, i.e. Node): short blocking
   * sleeps between event-loop turns (see Device.settle); 'spin': plain awaits.
   */
  wait?: 'sleep' | 'spin' | undefined;
  /** Kernel tuning (see `KernelSettings`); omitted fields take per-adapter defaults. */
  kernels?: KernelSettings | undefined;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** e.g. "lavapipe (vulkan)" — a one-line name for logs and benchmark rows. */
  name: string;
}

export const NO_ADAPTER_HELP =
  'No WebGPU adapter found. On a machine without a GPU, install Mesa lavapipe >= 24 ' +
  '(Debian bookworm: add "deb http://deb.debian.org/debian bookworm-backports main" to apt sources, then ' +
  '`apt-get install -y -t bookworm-backports mesa-vulkan-drivers`).';

/** Per-dispatch uniform data, gathered on the CPU and uploaded once per submit. */
class UniformArena {
  static readonly CHUNK = 1 << 16;
  private chunks: { buf: GPUBuffer; cpu: Uint8Array; used: number }[] = [];
  private cur = 0;
  constructor(private device: GPUDevice) {}

  /** Returns where `data` sits: a 256-byte aligned slot, bound with a dynamic offset. */
  push(data: ArrayBuffer): { buffer: GPUBuffer; offset: number; size: number } {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    let c = this.chunks[this.cur];
    if (c && c.used + size > UniformArena.CHUNK) c = this.chunks[++this.cur];
    if (!c) {
      c = { buf: this.device.createBuffer({ size: UniformArena.CHUNK, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform arena' }), cpu: new Uint8Array(UniformArena.CHUNK), used: 0 };
      this.chunks[this.cur] = c;
    }
    const offset = c.used;
    c.cpu.set(new Uint8Array(data), offset);
    c.used = Math.ceil((offset + size) / 256) * 256;
    return { buffer: c.buf, offset, size };
  }

  /** Forgets what was pushed since the last upload (its dispatches were dropped). */
  discard(): void {
    for (let i = 0; i <= this.cur && i < this.chunks.length; i++) this.chunks[i]!.used = 0;
    this.cur = 0;
  }

  /** Uploads what this submit needs; queue order makes the write land after earlier submits ran. */
  upload(queue: GPUQueue): void {
    for (let i = 0; i <= this.cur && i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      if (c.used) queue.writeBuffer(c.buf, 0, c.cpu.buffer, 0, c.used);
      c.used = 0;
    }
    this.cur = 0;
  }
}

/**
 * One WebGPU device with everything kernels need: real limits, optional features, a buffer pool,
 * a pipeline cache, and a single command encoder that batches dispatches until `flush()`.
 */
export class Device {
  readonly pool: BufferPool;
  readonly features: { f16: boolean; subgroups: boolean; timestamp: boolean };
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arena: UniformArena;
  private pipelines = new Map<string, GPUComputePipeline>();
  private layouts = new Map<string, GPUBindGroupLayout>();
  private pendingErrors: Promise<string | null>[] = [];
  private firstError: string | null = null;
  /** Scope stack for `scope()`; tensors register into the innermost one (see track()). */
  private readonly scopes: Set<ScopedResource>[] = [];
  /** Signals of the enclosing `withSignal()` calls; any aborted one stops further GPU work. */
  private readonly signals: AbortSignal[] = [];
  private kernelSettings: Readonly<KernelSettings> = Object.freeze({});
  /** Dispatches recorded since creation (for debugging and benchmarks). */
  dispatchCount = 0;
  private static readonly SUBMIT_EVERY = 48;
  private sinceSubmit = 0;
  /** Inside timeDispatches: everything stays in one timed pass. */
  private timing = false;
  /** Bind-group cache counters (a warm forward pass should be nearly all hits). */
  readonly bindGroupStats = { hits: 0, misses: 0 };
  private static readonly BIND_GROUP_CACHE = 16384;
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private layoutIds = new Map<GPUBindGroupLayout, number>();
  private pipelineLayouts = new WeakMap<GPUComputePipeline, { bgl: GPUBindGroupLayout; id: number }>();

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }
  private lost = false;

  private constructor(
    readonly gpu: GPUDevice,
    readonly adapter: AdapterDescription,
    readonly limits: GPUSupportedLimits,
    // Held so they outlive the device: in Dawn's Node bindings, garbage-collecting the GPU object
    // (the Dawn instance) while a device lives tears the instance down under lavapipe's threads
    // and crashes the process at random (futex/mutex aborts, segfaults).
    readonly gpuInstance: GPU,
    readonly gpuAdapter: GPUAdapter,
  ) {
    this.pool = new BufferPool(gpu, limits.maxBufferSize);
    this.arena = new UniformArena(gpu);
    this.features = {
      f16: gpu.features.has('shader-f16'),
      subgroups: gpu.features.has('subgroups'),
      timestamp: gpu.features.has('timestamp-query'),
    };
    gpu.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      if (!this.firstError) this.firstError = msg;
    });
    void gpu.lost.then((info) => {
      this.lost = true;
      if (info.reason !== 'destroyed' && !this.firstError) this.firstError = `device lost: ${info.message}`;
    });
  }

  static async open(opts: DeviceOptions): Promise<Device> {
    const adapter = await opts.gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : {});
    if (!adapter) throw new DeviceError('no_adapter', NO_ADAPTER_HELP);
    const want: GPUFeatureName[] = [];
    if (opts.f16 !== false && adapter.features.has('shader-f16')) want.push('shader-f16');
    if (opts.subgroups !== false && adapter.features.has('subgroups')) want.push('subgroups' as GPUFeatureName);
    if (adapter.features.has('timestamp-query')) want.push('timestamp-query');
    const L = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: L.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
    };
    const desc: GPUDeviceDescriptor & { dawnTogglesDescriptor?: unknown | undefined } = { requiredFeatures: want, requiredLimits, label: 'fewstep' };
    if (opts.toggles?.length || opts.disabledToggles?.length) desc.dawnTogglesDescriptor = { enabledToggles: opts.toggles ?? [], disabledToggles: opts.disabledToggles ?? [] };
    const gpu = await adapter.requestDevice(desc);
    const info = adapter.info ?? ({} as GPUAdapterInfo);
    const vendor = info.vendor ?? '', architecture = info.architecture ?? '', device = info.device ?? '', description = info.description ?? '';
    const backend = (info as unknown as { backendType?: string | undefined }).backendType;
    const base = description || device || vendor || 'unknown adapter';
    const name = backend ? `${base} (${backend})` : base;
    const d = new Device(gpu, { vendor, architecture, device, description, name }, gpu.limits, opts.gpu, adapter);
    if (opts.wait !== 'spin') d.blockingSleep = blockingSleeper();
    if (opts.kernels) d.kernels = opts.kernels;
    return d;
  }

  /**
   * This device's kernel settings, as given to `open()` or last assigned (a frozen copy). Assigning
   * replaces them (benchmarks, tests); dispatches made afterwards use the new ones. Pipelines are cached
   * by everything that shapes their code, so switching back and forth recompiles nothing twice.
   */
  get kernels(): Readonly<KernelSettings> {
    return this.kernelSettings;
  }
  set kernels(settings: KernelSettings) {
    this.kernelSettings = frozenCopy(settings) as Readonly<KernelSettings>;
  }

  /** The largest range one storage binding may cover. */
  get maxBinding(): number {
    return this.limits.maxStorageBufferBindingSize;
  }

  // ---- pipelines -----------------------------------------------------------------------------

  /**
   * A compute pipeline cached by `key` (compile-time facts only: family, entry, dtype, overrides).
   * `storage` lists the storage bindings 1..n as 'read' or 'rw'; binding 0 is the uniform params.
   */
  pipeline(key: string, build: () => { code: string; entryPoint: string; constants?: Record<string, number> | undefined; storage: ('read' | 'rw')[] }): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (p) return p;
    const b = build();
    const layoutKey = b.storage.join(',');
    let bgl = this.layouts.get(layoutKey);
    if (!bgl) {
      // Params bind with a dynamic offset, so one bind group serves every dispatch that uses the same
      // buffers (see dispatch): creating bind groups is the largest per-dispatch CPU cost in Dawn.
      const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } }];
      b.storage.forEach((s, i) => entries.push({ binding: i + 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: s === 'read' ? 'read-only-storage' : 'storage' } }));
      bgl = this.gpu.createBindGroupLayout({ entries, label: `layout ${layoutKey}` });
      this.layouts.set(layoutKey, bgl);
      this.layoutIds.set(bgl, this.layouts.size);
    }
    this.gpu.pushErrorScope('validation');
    const module = this.gpu.createShaderModule({ code: b.code, label: key });
    p = this.gpu.createComputePipeline({
      label: key,
      layout: this.gpu.createPipelineLayout({ bindGroupLayouts: [bgl] }),
      compute: { module, entryPoint: b.entryPoint, ...(b.constants ? { constants: b.constants } : {}) },
    });
    this.pendingErrors.push(this.gpu.popErrorScope().then((e) => (e ? `pipeline ${key}: ${e.message}` : null)));
    this.pipelines.set(key, p);
    this.pipelineLayouts.set(p, { bgl, id: this.layoutIds.get(bgl)! });
    return p;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  // ---- recording ---------------------------------------------------------------------------------

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.gpu.createCommandEncoder({ label: 'fewstep' });
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private ensureEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (!this.encoder) this.encoder = this.gpu.createCommandEncoder({ label: 'fewstep' });
    return this.encoder;
  }

  /** Records one dispatch. `buffers` bind to 1..n; `params` (if any) to binding 0. */
  dispatch(pipeline: GPUComputePipeline, params: ArrayBuffer, buffers: GPUBufferBinding[], workgroups: readonly [number, number?, number?], label?: string): void {
    this.checkSignal();
    if (this.lost) throw new DeviceError('device_lost', 'the GPU device was lost or destroyed');
    const [x, y = 1, z = 1] = workgroups;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new ResourceLimitError(`${label ?? pipeline.label}: dispatch ${x}×${y}×${z} exceeds ${max} workgroups per dimension`);
    if (x === 0 || y === 0 || z === 0) return;
    const layout = this.pipelineLayouts.get(pipeline);
    if (!layout) throw new InvalidArgumentError(`${label ?? pipeline.label}: pipeline was not made by Device.pipeline()`, 'pipeline');
    const u = this.arena.push(params);
    // Bind groups are cached by (layout, buffers, ranges): a model's forward pass draws the same pooled
    // buffers run after run, so warm runs create almost none. Buffer ids are never reused, so an entry
    // holding a destroyed buffer can never match again.
    let key = `${layout.id}|${this.bufferId(u.buffer)}:${u.size}`;
    for (const b of buffers) key += `|${this.bufferId(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
    let bg = this.bindGroups.get(key);
    if (bg) this.bindGroupStats.hits++;
    else {
      this.bindGroupStats.misses++;
      if (this.bindGroups.size >= Device.BIND_GROUP_CACHE) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: u.buffer, offset: 0, size: u.size } }];
      buffers.forEach((b, i) => entries.push({ binding: i + 1, resource: b }));
      bg = this.gpu.createBindGroup({ layout: layout.bgl, entries, label: label ?? '' });
      this.bindGroups.set(key, bg);
    }
    let pass: GPUComputePassEncoder;
    if (this.profiling && this.profiler) {
      if (this.profiler.full) this.flush();
      const enc = this.ensureEncoder();
      pass = enc.beginComputePass({ timestampWrites: this.profiler.next(label ?? pipeline.label) });
      this.pass = pass;
    } else pass = this.ensurePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg, [u.offset]);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
    if (this.profiling) {
      pass.end();
      this.pass = null;
    }
    // Submit in batches while recording goes on, so the GPU starts on the first kernels instead of
    // idling until the model's last dispatch is recorded (measured on an H200: recording a UNet step's
    // 310 dispatches took about a third of the step when it all went in one submit).
    if (++this.sinceSubmit >= Device.SUBMIT_EVERY && !this.timing) this.flush();
  }

  /** Buffer-to-buffer copies recorded since creation. */
  copyCount = 0;

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.checkSignal();
    this.copyCount++;
    this.ensureEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Lets a benchmark wrap its own pass (timestamps) into the shared encoder. */
  commandEncoder(): GPUCommandEncoder {
    return this.ensureEncoder();
  }

  /**
   * Times the dispatches `record` makes, on the GPU (timestamp queries), in milliseconds; null when
   * the adapter lacks 'timestamp-query'. The dispatches run in a pass of their own.
   */
  async timeDispatches(record: () => void): Promise<number | null> {
    if (!this.features.timestamp) {
      record();
      await this.sync();
      return null;
    }
    this.flush();
    const copiesBefore = this.copyCount;
    const qs = this.gpu.createQuerySet({ type: 'timestamp', count: 2 });
    this.encoder = this.gpu.createCommandEncoder({ label: 'timed' });
    const timed = this.encoder.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    this.pass = timed;
    this.timing = true;
    try {
      record();
    } finally {
      this.timing = false;
      if (this.pass) {
        this.pass.end();
        this.pass = null;
      }
    }
    void timed;
    const copiedInside = this.copyCount !== copiesBefore;
    const resolve = this.gpu.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.ensureEncoder().resolveQuerySet(qs, 0, 2, resolve, 0);
    const bytes = await this.read(resolve, 0, 16);
    resolve.destroy();
    qs.destroy();
    const t = new BigInt64Array(bytes.buffer, bytes.byteOffset, 2);
    // Buffer copies end the timed pass early (they cannot run inside a compute pass), so the
    // timestamps would miss them: report null and let the caller use wall-clock time.
    if (copiedInside) return null;
    return Number(t[1]! - t[0]!) / 1e6;
  }

  /** Submits everything recorded so far (drops it instead once a `withSignal()` signal has aborted). */
  flush(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.sinceSubmit = 0;
    if (this.encoder) {
      if (this.aborted()) this.discard();
      else {
        this.profiler?.resolve(this.encoder);
        this.arena.upload(this.gpu.queue);
        this.gpu.queue.submit([this.encoder.finish()]);
        this.encoder = null;
      }
    }
    // Weights freed while their last dispatches were being recorded can go now (see BufferPool.acquireExact).
    this.pool.collect();
  }

  /**
   * Submits what is recorded and resolves when the GPU has finished everything submitted so far (no error check:
   * `sync` does that). For pacing recording against the GPU (ParameterCache.pace).
   */
  workDone(): Promise<void> {
    this.checkSignal();
    this.flush();
    return this.settle(this.gpu.queue.onSubmittedWorkDone());
  }

  /** Flushes, waits for the GPU, and throws the first validation/compile error seen. */
  async sync(): Promise<void> {
    await this.workDone();
    await this.profiler?.collect();
    await this.checkErrors();
  }

  /**
   * Gives the memory of freed buffers back now: submits what is recorded, destroys the pool's free buffers, then
   * submits an empty command buffer and waits for it — Dawn releases a destroyed buffer's memory only once a submit
   * made after the destroy has completed (until then, on lavapipe, it stays in the process' RSS). For a stage
   * boundary after freeing a model (low-memory mode), not for the hot path.
   */
  async trimMemory(): Promise<void> {
    this.checkSignal();
    this.flush();
    this.pool.trim();
    this.gpu.queue.submit([this.gpu.createCommandEncoder().finish()]);
    await this.settle(this.gpu.queue.onSubmittedWorkDone());
    await this.checkErrors();
  }

  // ---- waiting -------------------------------------------------------------------------------

  private blockingSleep: ((ms: number) => void) | null = null;

  /**
   * Awaits a Dawn promise. While one is pending, Dawn's Node bindings poll on every event-loop turn
   * (setImmediate), which kept ~70 % of a core busy — on a 2-core machine, taken from lavapipe, which
   * runs the kernels on the same cores. After the first millisecond this waits in 1 ms blocking sleeps
   * with one event-loop turn between them (so Dawn still sees the completion): matmul 4096×320×2560 on
   * lavapipe 306–323 → 199–247 ms per call; at most ~1 ms of added latency on a real GPU.
   */
  private async settle<T>(p: Promise<T>): Promise<T> {
    const sleep = this.blockingSleep;
    const signals = [...this.signals];
    if (!sleep && !signals.length) return p;
    let done = false;
    p.then(() => (done = true), () => (done = true));
    if (!sleep) {
      // Plain await, cut short by an abort (the GPU finishes the submitted work on its own).
      let off = () => {};
      const aborted = new Promise<never>((_, reject) => {
        const onAbort = () => {
          try {
            this.checkSignal();
          } catch (e) {
            reject(e);
          }
        };
        for (const s of signals) s.addEventListener('abort', onAbort);
        off = () => signals.forEach((s) => s.removeEventListener('abort', onAbort));
      });
      try {
        this.checkSignal();
        return await Promise.race([p, aborted]);
      } finally {
        off();
      }
    }
    const t0 = performance.now();
    while (!done) {
      // An abort while waiting returns at once; the submitted work still runs to its end on the GPU,
      // before anything submitted later (queue order), so buffers freed now are safe to reuse.
      this.checkSignal();
      await nextTurn();
      if (!done && performance.now() - t0 > 1) sleep(1);
    }
    return p;
  }

  // ---- profiling -------------------------------------------------------------------------------

  /** Made on first use and kept: it holds the totals (and any unread results) after profiling stops. */
  private profiler: DispatchProfiler | null = null;
  private profiling = false;

  /**
   * Turns per-dispatch GPU timing on or off (needs 'timestamp-query'). While on, each dispatch gets
   * a pass of its own; `profile()` returns the per-label totals gathered at each sync. Turning it on
   * starts new totals.
   */
  setProfiling(on: boolean): void {
    if (on && !this.features.timestamp) throw new DeviceError('feature_missing', `profiling needs the 'timestamp-query' feature, which ${this.adapter.name} lacks`);
    if (on === this.profiling) return;
    this.flush();
    if (on) (this.profiler ??= new DispatchProfiler(this.gpu)).report(true);
    this.profiling = on;
  }

  /** Per-label GPU milliseconds gathered while profiling (call after a sync), most expensive first. */
  profile(reset = false): ProfileEntry[] {
    return this.profiler?.report(reset) ?? [];
  }

  async checkErrors(): Promise<void> {
    const errs = await Promise.all(this.pendingErrors.splice(0));
    const e = errs.find((x) => x);
    if (e && !this.firstError) this.firstError = e;
    if (this.firstError) {
      const m = this.firstError;
      this.firstError = null;
      throw new DeviceError(m.startsWith('device lost:') ? 'device_lost' : 'gpu_error', `WebGPU error: ${m}`);
    }
  }

  /** Writes bytes into a buffer, after submitting pending work so the write cannot overtake it. */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.checkSignal();
    this.flush();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    const whole = bytes.byteLength & ~3;
    if (whole) this.gpu.queue.writeBuffer(buffer, offset, bytes, 0, whole);
    if (whole !== bytes.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(whole));
      this.gpu.queue.writeBuffer(buffer, offset + whole, tail);
    }
  }

  /** Reads `size` bytes back (size rounded up to 4 internally). */
  async read(buffer: GPUBuffer, offset: number, size: number): Promise<Uint8Array> {
    this.checkSignal();
    const padded = Math.ceil(size / 4) * 4;
    const staging = this.gpu.createBuffer({ size: padded, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
    this.copy(buffer, offset, staging, 0, padded);
    this.flush();
    const mapped = staging.mapAsync(GPUMapMode.READ);
    try {
      await this.settle(mapped);
    } catch (e) {
      // Aborted while waiting: free the staging buffer once its mapping settles.
      mapped.then(() => staging.destroy(), () => staging.destroy());
      throw e;
    }
    const out = new Uint8Array(staging.getMappedRange().slice(0, size));
    staging.unmap();
    staging.destroy();
    await this.profiler?.collect();
    await this.checkErrors();
    return out;
  }

  // ---- scopes --------------------------------------------------------------------------------

  /**
   * Runs `fn`; every tensor created inside and not part of its result (a tensor, or tensors in an
   * array/object) is disposed when it returns. Works with sync and async functions.
   */
  scope<T>(fn: () => T): T {
    const { end } = this.openScope();
    let r: T;
    try {
      r = fn();
    } catch (e) {
      end(undefined);
      throw e;
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => (end(v), v),
        (e) => {
          end(undefined);
          throw e;
        },
      ) as T;
    }
    end(r);
    return r;
  }

  /**
   * A scope opened by hand, for code whose body cannot be one callback (a forward written as a generator that
   * pauses between layers): `end(result)` frees what was created since, but the tensors in `result`, as `scope`
   * does when `fn` returns. End scopes in the reverse order of opening.
   */
  openScope(): { end(result?: unknown): void } {
    const set = new Set<ScopedResource>();
    this.scopes.push(set);
    return {
      end: (result?: unknown) => {
        const idx = this.scopes.lastIndexOf(set);
        if (idx >= 0) this.scopes.splice(idx, 1);
        const keep = new Set<unknown>();
        collectReturned(result, keep);
        const parent = this.scopes[this.scopes.length - 1];
        for (const t of set) {
          if (keep.has(t)) parent?.add(t);
          else t.dispose();
        }
      },
    };
  }

  /** Registers a resource (a new tensor) with the innermost open scope, if any. */
  track(r: ScopedResource): void {
    this.scopes[this.scopes.length - 1]?.add(r);
  }

  /** Removes a resource from every open scope (kept, or disposed by hand). */
  untrack(r: ScopedResource): void {
    for (const s of this.scopes) s.delete(r);
  }

  // ---- cancellation ------------------------------------------------------------------------------

  /**
   * Runs `fn` with `signal` guarding this device's GPU work: once it is aborted, the next `dispatch()`,
   * `copy()`, `write()`, `sync()` or `read()` throws an AbortError (the signal's reason when that is a
   * FewstepError), commands recorded but not yet submitted are dropped instead of submitted, and a wait
   * in `sync()`/`read()` returns at once. Tensors made inside `scope()` are freed as the error
   * propagates. Calls nest (inner work stops when any enclosing signal aborts) and each restores the
   * previous state when `fn` returns or its promise settles. The guard is per device, not per call
   * chain: run one guarded job per device at a time.
   */
  withSignal<T>(signal: AbortSignal | undefined, fn: () => T): T {
    if (!signal) return fn();
    throwIfAborted(signal);
    // Work recorded before belongs to the caller's context: submit it now, so an abort of this signal
    // drops only what was recorded under it.
    this.flush();
    this.signals.push(signal);
    const end = () => {
      const i = this.signals.lastIndexOf(signal);
      if (i >= 0) this.signals.splice(i, 1);
      if (signal.aborted) this.discard();
    };
    let r: T;
    try {
      r = fn();
    } catch (e) {
      end();
      throw e;
    }
    if (r instanceof Promise) return r.finally(end) as T;
    end();
    return r;
  }

  /** True when a signal of an enclosing `withSignal()` has aborted. */
  private aborted(): boolean {
    return this.signals.some((s) => s.aborted);
  }

  /** Throws (and drops unsubmitted commands) when an enclosing signal has aborted. */
  private checkSignal(): void {
    if (!this.signals.length) return;
    const s = this.signals.find((x) => x.aborted);
    if (!s) return;
    this.discard();
    throwIfAborted(s);
  }

  /** Drops everything recorded but not yet submitted. */
  private discard(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder = null;
    this.sinceSubmit = 0;
    this.arena.discard();
    this.profiler?.discard();
  }

  /** Frees pooled buffers and the device. */
  destroy(): void {
    this.flush();
    this.pool.trim();
    this.profiler?.destroy();
    this.gpu.destroy();
  }
}

/** Objects a scope returns (itself, or inside arrays and plain objects, 4 levels deep): these survive it. */
function collectReturned(v: unknown, out: Set<unknown>, depth = 0): void {
  if (!v || typeof v !== 'object' || depth > 4) return;
  out.add(v);
  if (Array.isArray(v)) for (const x of v) collectReturned(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectReturned(x, out, depth + 1);
}

/** A deep copy of plain objects and arrays, frozen (settings objects: later edits to the caller's copy change nothing). */
function frozenCopy(v: unknown): unknown {
  if (Array.isArray(v)) return Object.freeze(v.map(frozenCopy));
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.freeze(Object.fromEntries(Object.entries(v).map(([k, x]) => [k, frozenCopy(x)])));
  }
  return v;
}

/** One event-loop turn: setImmediate where it exists (Node), else a zero timeout. */
function nextTurn(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  return new Promise((r) => (g.setImmediate ? g.setImmediate(r) : setTimeout(r, 0)));
}

/** A blocking sleep where this thread may block (Node's main thread, workers), else null (a browser page). */
function blockingSleeper(): ((ms: number) => void) | null {
  const g = globalThis as { process?: { versions?: { node?: string | undefined } } };
  if (!g.process?.versions?.node || typeof SharedArrayBuffer !== 'function' || typeof Atomics?.wait !== 'function') return null;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  return (ms) => void Atomics.wait(cell, 0, 0, ms);
}
