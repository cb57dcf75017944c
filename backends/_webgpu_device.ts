/**
 * The WebGPU device of the webgpu backend: finding an adapter, asking for its higher limits,
 * noticing device loss, and the buffer pool. Every wait on the GPU goes through
 * {@linkcode GpuContext.guard}, which races it against device loss, so that no call can hang on
 * a promise that a lost device never settles.
 *
 * Depends on nothing of the package: the WebGPU API only.
 *
 * @module
 */

/** What `navigator.gpu.requestAdapter()` found, read before any device request (a Deno trap:
 * adapter.info is unreadable after requestDevice() has thrown). */
export interface AdapterSummary {
  /** The adapter's description (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"), or vendor/arch. */
  readonly description: string;
  /** A software or otherwise fallback adapter (lavapipe is one). */
  readonly isFallbackAdapter: boolean;
}

/** Why there is no adapter, or the adapter with its summary. */
export type AdapterProbe =
  | { readonly adapter: GPUAdapter; readonly summary: AdapterSummary }
  | { readonly adapter?: undefined; readonly missing: string };

/** Asks the runtime for an adapter. Never throws: a missing adapter comes back with its reason. */
export async function requestAdapter(): Promise<AdapterProbe> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) return { missing: "this runtime has no WebGPU (navigator.gpu is undefined)" };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { missing: `navigator.gpu.requestAdapter() failed: ${(e as Error).message}` };
  }
  if (!adapter) {
    return {
      missing: "navigator.gpu.requestAdapter() found no adapter (no GPU or Vulkan/Metal/DX12 " +
        "driver; on Linux without a GPU, Mesa's lavapipe provides one: mesa-vulkan-drivers)",
    };
  }
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const description = info.description ||
    [info.vendor, info.architecture, info.device].filter(Boolean).join(" ") || "unnamed adapter";
  return {
    adapter,
    summary: { description, isFallbackAdapter: Boolean(info.isFallbackAdapter ?? legacy) },
  };
}

/** An Error that says the device is gone, with the reason WebGPU gave. */
export class DeviceLostError extends Error {
  /** @param detail what WebGPU reported */
  constructor(detail: string) {
    super(`webgpu backend: the GPU device was lost (${detail}); the call did not complete`);
    this.name = "DeviceLostError";
  }
}

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
// The lists of wide items, which hold their wide pass's dispatch arguments (common.wgsl).
const LIST_USAGE = STORAGE_USAGE | 0x100; // | INDIRECT
const STAGING_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST

/** Usages of the pooled buffer kinds (GPUBufferUsage values, spelled out so that this module
 * loads where the GPUBufferUsage global is missing). */
export const USAGE = {
  storage: STORAGE_USAGE,
  list: LIST_USAGE,
  staging: STAGING_USAGE,
  uniform: UNIFORM_USAGE,
};

/**
 * The device, its loss, and a pool of buffers by (usage, size). Buffers return to the pool right
 * after the submit that used them: queue order makes a later submit's writes wait for earlier
 * reads, so reuse is safe. Buffers are destroyed only once the queue has finished all work
 * submitted so far (destroying right after a submit has hung wgpu).
 */
export class GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  /** Largest storage binding this backend uses (the device's, or a lower test setting). */
  readonly maxBinding: number;
  #lost?: string;
  #lostPromise: Promise<never>;
  #free = new Map<string, GPUBuffer[]>();
  #freeBytes = 0;
  #destroyed = false;
  /** Pooled bytes kept before the oldest free buffers are destroyed. */
  readonly poolCap: number;
  /** Elements per thread of the statistics pass. */
  readonly elementsPerThread: number;
  /** Threads per workgroup of the group passes (sn_group_stats, sn_bwd_groups). */
  readonly groupWorkgroupSize: number;
  /** Workgroups per grid dimension a dispatch uses (the device's, or a lower test setting). */
  readonly maxWorkgroups: number;
  /** Called once when the device is lost (not when it is disposed). */
  onLost?: (reason: string) => void;

  /** @internal */
  constructor(
    device: GPUDevice,
    adapter: AdapterSummary,
    maxBinding: number,
    poolCap: number,
    elementsPerThread: number,
    maxWorkgroups = 65535,
    groupWorkgroupSize = 64,
  ) {
    this.device = device;
    this.maxWorkgroups = maxWorkgroups;
    this.elementsPerThread = elementsPerThread;
    this.groupWorkgroupSize = groupWorkgroupSize;
    this.adapter = adapter;
    this.maxBinding = maxBinding;
    this.poolCap = poolCap;
    this.#lostPromise = device.lost.then((info) => {
      const why = `${info.reason ?? "unknown"}${info.message ? `: ${info.message}` : ""}`;
      this.#lost = why;
      if (!this.#destroyed) this.onLost?.(why);
      throw new DeviceLostError(why);
    });
    this.#lostPromise.catch(() => {}); // observed through guard(); never an unhandled rejection
  }

  /** Why the device is gone, or undefined while it works. */
  get lost(): string | undefined {
    return this.#destroyed ? "the backend was disposed" : this.#lost;
  }

  /** Throws a clear error if the device can no longer be used. */
  check(): void {
    if (this.#destroyed) throw new Error("webgpu backend: used after dispose()");
    if (this.#lost !== undefined) throw new DeviceLostError(this.#lost);
  }

  /**
   * Waits for `p` unless the device is lost first, in which case it rejects clearly. A
   * rejection of `p` itself (mapAsync rejects with a bare "validation error" on a destroyed
   * device) is reported as the loss when device.lost follows within a moment.
   */
  async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await Promise.race([p, this.#lostPromise]);
    } catch (e) {
      if (e instanceof DeviceLostError) throw e;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, 100));
      const lost = await Promise.race([this.#lostPromise.catch((l) => l as Error), grace]);
      clearTimeout(timer);
      throw lost ?? e;
    }
  }

  /**
   * A buffer of at least `size` bytes (exactly `size` rounded up to 16) of a pooled kind. Throws
   * a RangeError above the device's maxBufferSize: WebGPU would return an invalid buffer and
   * report it only later, as a bare validation error.
   */
  acquire(kind: keyof typeof USAGE, size: number): GPUBuffer {
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    const max = this.device.limits.maxBufferSize;
    if (!(bytes <= max)) {
      throw new RangeError(
        `webgpu backend: a buffer of ${bytes} bytes is more than this device's maxBufferSize ` +
          `(${max})`,
      );
    }
    const list = this.#free.get(`${kind}:${bytes}`);
    const b = list?.pop();
    if (b) {
      this.#freeBytes -= bytes;
      return b;
    }
    return this.device.createBuffer({
      size: bytes,
      usage: USAGE[kind],
      label: `switchnorm ${kind}`,
    });
  }

  /** Gives a buffer from {@linkcode acquire} back; it may be handed out again at once. */
  release(kind: keyof typeof USAGE, buffer: GPUBuffer): void {
    if (this.#destroyed || this.#lost !== undefined) return;
    const key = `${kind}:${buffer.size}`;
    let list = this.#free.get(key);
    if (!list) this.#free.set(key, list = []);
    list.push(buffer);
    this.#freeBytes += buffer.size;
    if (this.#freeBytes > this.poolCap) this.#trim();
  }

  /** Destroys the free buffers, largest first, until the pool is under its cap. */
  #trim(): void {
    const all = [...this.#free.entries()].flatMap(([k, l]) => l.map((b) => [k, b] as const));
    all.sort((a, b) => b[1].size - a[1].size);
    const doomed: GPUBuffer[] = [];
    for (const [k, b] of all) {
      if (this.#freeBytes <= this.poolCap / 2) break;
      const l = this.#free.get(k)!;
      l.splice(l.indexOf(b), 1);
      this.#freeBytes -= b.size;
      doomed.push(b);
    }
    this.destroyLater(doomed);
  }

  /** Destroys buffers once all work submitted so far is done. */
  destroyLater(buffers: GPUBuffer[]): void {
    if (buffers.length === 0 || this.#lost !== undefined) return;
    this.guard(this.device.queue.onSubmittedWorkDone()).then(
      () => buffers.forEach((b) => b.destroy()),
      () => {}, // device gone: its memory went with it
    );
  }

  /** Bytes held by free pooled buffers. */
  get pooledBytes(): number {
    return this.#freeBytes;
  }

  /**
   * Frees the pool and then the device, after the queue has finished. Resolves when done (or at
   * once if the device is already lost).
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const pooled = [...this.#free.values()].flat();
    this.#free.clear();
    this.#freeBytes = 0;
    if (this.#lost === undefined) {
      try {
        await this.guard(this.device.queue.onSubmittedWorkDone());
      } catch {
        return; // lost meanwhile: nothing left to free
      }
      pooled.forEach((b) => b.destroy());
    }
    this.device.destroy();
  }
}

/** Options of a backend instance's device. */
export interface DeviceOptions {
  /**
   * Use storage bindings of at most this many bytes even if the device allows more (a multiple
   * of 256, at least 65536). For tests: tensors above this size take the windowed path that
   * tensors above the real limit (128 MiB by default) take, at a size lavapipe handles quickly.
   */
  readonly maxBindingBytes?: number;
  /**
   * Ask for a maxBufferSize of at most this many bytes (WebGPU grants at least its default, 256
   * MiB). For tests of what exceeds the limit without allocating the adapter's 2 GiB or more.
   */
  readonly maxBufferBytes?: number;
  /** Ask for timestamp-query where the adapter offers it (the bench does). */
  readonly timestamps?: boolean;
  /** Bytes of free pooled buffers kept for reuse. Default 256 MiB. */
  readonly poolBytes?: number;
  /**
   * Elements per thread of the statistics pass (see PlanLimits.elementsPerThread). Default: 256
   * on a fallback (CPU) adapter, 16 on a GPU. Tests set it to run the GPU's choice on lavapipe.
   */
  readonly elementsPerThread?: number;
  /**
   * Threads per workgroup of the passes that merge summaries into LN and BN groups
   * (sn_group_stats, sn_bwd_groups): a power of two from 1 to 64. Default: 8 on a fallback (CPU)
   * adapter, 64 on a GPU. Those passes do little work per member and a fixed amount per thread
   * (the workgroup's tree of merges and its barriers), which a CPU implementation such as
   * lavapipe runs as loops over the invocations: at [64,512,7,7] 8 threads run the two passes
   * ~3-4x faster there than 64. Tests set it to run the GPU's choice on lavapipe.
   */
  readonly groupWorkgroupSize?: number;
  /**
   * Use at most this many workgroups per dispatch dimension (at least 2) even if the device
   * allows more. For tests: small tensors then take the 2D grids that tensors of millions of
   * rows or elements take under the real limit (65535).
   */
  readonly maxWorkgroupsPerDimension?: number;
}

/** Opens a device on a fresh adapter with the adapter's highest buffer limits. */
export async function openDevice(options: DeviceOptions = {}): Promise<GpuContext> {
  const probe = await requestAdapter();
  if (!probe.adapter) throw new Error(`backend "webgpu" is not available: ${probe.missing}`);
  const { adapter, summary } = probe;
  const features: GPUFeatureName[] = [];
  if (options.timestamps && adapter.features.has("timestamp-query")) {
    features.push("timestamp-query");
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        // Never above the adapter's; WebGPU raises a request below its default to the default.
        maxBufferSize: Math.min(adapter.limits.maxBufferSize, options.maxBufferBytes ?? Infinity),
        minStorageBufferOffsetAlignment: adapter.limits.minStorageBufferOffsetAlignment,
      },
    });
  } catch (e) {
    throw new Error(
      `webgpu backend: the adapter "${summary.description}" gave no device: ${
        (e as Error).message
      }`,
    );
  }
  let maxBinding = Math.floor(device.limits.maxStorageBufferBindingSize / 256) * 256;
  if (options.maxBindingBytes !== undefined) {
    const m = options.maxBindingBytes;
    if (!Number.isInteger(m) || m < 65536 || m % 256 !== 0) {
      device.destroy();
      throw new RangeError("maxBindingBytes must be a multiple of 256, at least 65536");
    }
    maxBinding = Math.min(maxBinding, m);
  }
  let maxWorkgroups = device.limits.maxComputeWorkgroupsPerDimension;
  if (options.maxWorkgroupsPerDimension !== undefined) {
    const w = options.maxWorkgroupsPerDimension;
    if (!Number.isInteger(w) || w < 2) {
      device.destroy();
      throw new RangeError("maxWorkgroupsPerDimension must be an integer of at least 2");
    }
    maxWorkgroups = Math.min(maxWorkgroups, w);
  }
  const groupSize = options.groupWorkgroupSize ?? (summary.isFallbackAdapter ? 8 : 64);
  if (
    !Number.isInteger(groupSize) || groupSize < 1 || groupSize > 64 ||
    (groupSize & (groupSize - 1)) !== 0
  ) {
    device.destroy();
    throw new RangeError(
      `groupWorkgroupSize must be a power of two from 1 to 64, got ${groupSize}`,
    );
  }
  const perThread = options.elementsPerThread ?? (summary.isFallbackAdapter ? 256 : 16);
  return new GpuContext(
    device,
    summary,
    maxBinding,
    options.poolBytes ?? 256 * 2 ** 20,
    perThread,
    maxWorkgroups,
    groupSize,
  );
}
