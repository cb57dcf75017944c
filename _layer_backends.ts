/**
 * The backends one layer has run on ("auto" may switch per call), all of which may hold its state
 * (WASM regions, GPU buffers, running buffers newer than the CPU's): choosing the backend of a
 * forward and moving the running buffers to it, refusing CPU reads of stale ones, reading them
 * back, freeing the layer's state now (dispose) or once the layer is garbage-collected. Depends on
 * the Backend interface, the backend selection (backends/select.ts), the layer's parameter store
 * and call queue (types only), never on a backend.
 *
 * @module
 */
import type { Backend, LayerParams, ResidentTensor } from "./backends/_backend.ts";
import { type BackendRequest, chooseBackend } from "./backends/select.ts";
import type { ParamStore } from "./_params.ts";
import type { CallQueue } from "./_call_queue.ts";

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
   * Chooses the backend a forward of `x` runs on (asked per call: "auto" decides by where x lives,
   * and by the call's size under a rule with a WebGPU threshold; an explicit "webgpu" gets a fresh
   * device after a loss; select.ts caches the backends, so this is cheap), checks that it can run
   * the call, and makes it the layer's. If another backend's device holds the newest running
   * buffers, they are read back first: this call must start from them.
   */
  async forForward(
    request: BackendRequest,
    x: Float32Array | ResidentTensor,
    resident: boolean,
    sync: boolean,
    params: LayerParams,
  ): Promise<{ backend: Backend; reason: string }> {
    const name = this.layerName;
    const chosen = await chooseBackend(request, undefined, {
      elements: x.length,
      sync,
      resident: resident ? (x as ResidentTensor).backend : undefined,
    });
    const backend = chosen.backend;
    if (sync && !backend.supportsSync) {
      throw new Error(
        `${name}.forward: SyncSN (the sync option) is not supported on ${backend.name}`,
      );
    }
    if (resident && (x as ResidentTensor).backend !== backend.name) {
      throw new TypeError(
        `${name}.forward: x lives in ${
          (x as ResidentTensor).backend
        } memory but this layer runs on ${backend.name}`,
      );
    }
    const previous = this.#settled;
    if (previous && previous !== backend && previous.runningStale?.(params)) {
      await previous.syncRunning!(params);
    }
    this.#settled = backend;
    this.#used.add(backend);
    return chosen;
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

  /**
   * Frees what the backends keep for the layer now; a backend whose device holds the newest
   * running buffers frees them once they are read back, in the layer's call order (`calls`).
   */
  release(p: ParamStore, calls: CallQueue): void {
    for (const b of this.#used) {
      if (!b.runningStale?.(p.view())) {
        b.releaseLayer?.(p.view());
        continue;
      }
      // The device holds the newest running buffers: read them back in call order (later calls
      // wait for it, so none runs on state about to be freed), then free. They are read into
      // copies, kept only if the CPU wrote no running buffers meanwhile (loadStateDict and
      // resetRunningStats are not refused by it: what they write after dispose wins).
      void calls.run(async () => {
        const version = p.runningVersion, view = p.view();
        const copy = {
          ...view,
          runningMean: p.runningMean.slice(),
          runningVar: p.runningVar.slice(),
        };
        try {
          await b.syncRunning!(copy);
          if (p.runningVersion === version) {
            p.runningMean.set(copy.runningMean);
            p.runningVar.set(copy.runningVar);
          }
        } catch {
          // The device was lost: its newer buffers with it; the layer keeps its CPU copy.
        } finally {
          b.releaseLayer?.(p.view());
        }
      }, true);
    }
  }
}
