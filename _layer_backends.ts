/**
 * The backends one layer has run on ("auto" may switch per call), all of which may hold its state
 * (WASM regions, GPU buffers, running buffers newer than the CPU's): moving the running buffers
 * to the backend a call settles on, refusing CPU reads of stale ones, reading them back, freeing
 * the layer's state now (dispose) or once the layer is garbage-collected. Depends only on the
 * Backend interface.
 *
 * @module
 */
import type { Backend, LayerParams } from "./backends/_backend.ts";

/**
 * What a garbage-collected layer held in its backends (WASM regions, GPU buffers) is freed here:
 * users of a garbage-collected language drop objects. The held value is the layer's id and its
 * set of backends, never the layer itself. dispose() still frees at once.
 */
const dropped = new FinalizationRegistry<{ id: number; backends: Set<Backend> }>(
  ({ id, backends }) => {
    for (const b of backends) b.forgetLayer?.(id);
  },
);

/** One layer's backends. */
export class LayerBackends {
  /** The backend the latest forward ran on. */
  #settled?: Backend;
  /** Every backend this layer has run on: all hold layer state. */
  readonly #used = new Set<Backend>();

  /** Registers `layer` (whose id is `layerId`) so that its backends forget it once collected. */
  constructor(readonly layerName: string, layer: object, layerId: number) {
    dropped.register(layer, { id: layerId, backends: this.#used });
  }

  /** How many backends the layer has run on. */
  get count(): number {
    return this.#used.size;
  }

  /**
   * Makes `backend` the one this call runs on. If another backend's device holds the newest
   * running buffers, they are read back first: this call must start from them.
   */
  async settle(backend: Backend, params: LayerParams): Promise<void> {
    const previous = this.#settled;
    if (previous && previous !== backend && previous.runningStale?.(params)) {
      await previous.syncRunning!(params);
    }
    this.#settled = backend;
    this.#used.add(backend);
  }

  /** Throws (naming `what`) if a device holds running buffers newer than the CPU's. */
  checkRunningFresh(what: string, params: LayerParams): void {
    for (const b of this.#used) {
      if (b.runningStale?.(params)) {
        throw new Error(
          `${this.layerName}.${what}: the running buffers were updated on the ${b.name} device; ` +
            "await layer.sync() first",
        );
      }
    }
  }

  /** Brings device-held running buffers back to the CPU. */
  async syncRunning(params: LayerParams): Promise<void> {
    for (const b of this.#used) await b.syncRunning?.(params);
  }

  /** Frees what the backends keep for the layer now. */
  release(params: LayerParams): void {
    for (const b of this.#used) b.releaseLayer?.(params);
  }
}
