/**
 * A layer's construction options: their public types, their checks and their defaults, and the
 * description of each layer class (rank, shapes, default momentum) they are read against. One
 * job: turn what the user passed into settled values, or throw naming the option. Depends only on
 * the validators, the backend selection's list of requests and SyncSN's group wrapper.
 *
 * @module
 */
import { BACKEND_REQUESTS, type BackendRequest } from "./backends/select.ts";
import { batchSync, type LayerSync, type SyncGroup } from "./_sync.ts";
import { SPARSE_DEFAULT_MOMENTUM } from "./_sparse.ts";
import {
  checkBoolean,
  checkEps,
  checkFiniteIn,
  checkKnownKeys,
  checkPositiveInt,
  describeInteger,
  describeValue,
} from "./_validate.ts";

/**
 * The most channels a layer may have. Parameters, buffers and gradients take 32 bytes per
 * channel (8 GiB at this bound) before any input, WebGPU holds 8 bytes per channel of running
 * buffers in one buffer (maxBufferSize is about 2^31 on common adapters) and WASM's 4 GiB memory
 * holds its layer block and a sample's statistics: beyond it no backend could run the layer, and
 * the arrays would exhaust memory rather than fail.
 */
const MAX_FEATURES = 2 ** 28;

/** Options shared by every SwitchNorm layer. */
export interface SwitchNormOptions {
  /**
   * Added to the variance before the square root. 0, or from 2^-126 (1.18e-38, float32's
   * smallest normal number: a smaller positive eps would be a subnormal that GPUs may flush to 0)
   * to float32's largest number (3.4e38). Default 1e-5. Others throw a RangeError.
   */
  eps?: number;
  /** Moving-average momentum in [0, 1]: `running = momentum*running + (1-momentum)*batch`. */
  momentum?: number;
  /**
   * true (default): running buffers are a moving average. false: training-mode forwards add the
   * batch statistics up, and {@linkcode SwitchNorm.finalizeBatchAverage} turns the sums into the
   * inference statistics (the paper's batch average).
   */
  usingMovingAverage?: boolean;
  /** Which backend runs the layer: "auto" (default), "wasm", "webgpu" or "reference". */
  backend?: BackendRequest;
  /**
   * SyncSN: the group of data-parallel replicas this layer is one of. In training mode the BN
   * statistics, the running buffers and the gradients are then those of the global batch on
   * every replica (IN and LN statistics stay local). Each replica must call forward and backward
   * in the same order. Several layers of a replica may share one group: each is known on it by
   * the order it was made with that group (0 for the first), so make them in the same order on
   * every replica; a replica calling another layer than the others fails the call at once on
   * every replica.
   */
  sync?: SyncGroup;
  /**
   * Sparse SN (the authors' SSN2d): map the importance logits to mixing weights with sparsestmax
   * (radius {@linkcode SwitchNorm.radius}) instead of softmax, so that training drives each layer
   * to a single normalizer. The state dict gains SSN2d's `mean_fixed`, `var_fixed` and `radius`,
   * and the default momentum becomes SSN2d's 0.997 (for SwitchNorm2d too). Default false.
   */
  sparse?: boolean;
}

/**
 * Options of SwitchNorm2d and SwitchNorm3d. `UsingBN` is inferred from `usingBN`, so that
 * {@linkcode SwitchNorm.stateDict} has the running buffers exactly when the layer does.
 */
export interface SwitchNormNdOptions<UsingBN extends boolean = boolean> extends SwitchNormOptions {
  /** Mix in batch statistics (default true). false: only IN and LN, no running buffers. */
  usingBN?: UsingBN;
  /** Initialise gamma to 0 instead of 1 (the last norm of a residual block). Default false. */
  lastGamma?: boolean;
}

/** What distinguishes SwitchNorm1d, 2d and 3d. */
export interface LayerKind {
  readonly name: string;
  readonly layout: "1d" | "nd";
  readonly rank: number;
  readonly rankName: string;
  /** The reference's shape for weight/bias and for the running buffers. */
  readonly paramShape: (c: number) => number[];
  readonly bufferShape: (c: number) => number[];
  readonly defaultMomentum: number;
}

/** The options as the layer keeps them: checked, defaults filled in. */
export interface LayerOptions {
  readonly eps: number;
  readonly momentum: number;
  readonly usingMovingAverage: boolean;
  readonly usingBN: boolean;
  readonly lastGamma: boolean;
  readonly backendRequest: BackendRequest;
  readonly sparse: boolean;
  readonly syncGroup?: SyncGroup;
  /** The group wrapped as the operations backends use; present exactly with syncGroup. */
  readonly sync?: LayerSync;
}

/**
 * Checks `numFeatures` and the options of a `kind` layer and fills in the defaults. Throws a
 * RangeError or TypeError naming the option (see the layer constructors' docs).
 */
export function readLayerOptions(
  kind: LayerKind,
  numFeatures: number,
  options: SwitchNormNdOptions,
): LayerOptions {
  // The layer's own bound first: an integer beyond it, however large, is refused by it.
  if (Number.isInteger(numFeatures) && numFeatures > MAX_FEATURES) {
    throw new RangeError(
      `${kind.name}: numFeatures must be at most 2^28 (${MAX_FEATURES}), got ${
        describeInteger(numFeatures)
      }: its parameters, buffers and gradients alone would need ${
        describeInteger(32 * numFeatures)
      } bytes`,
    );
  }
  checkPositiveInt(`${kind.name}: numFeatures`, numFeatures);
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${kind.name}: options must be an object, got ${describeValue(options)}`);
  }
  const known = ["eps", "momentum", "usingMovingAverage", "backend", "sync", "sparse"];
  if (kind.layout === "nd") known.push("usingBN", "lastGamma");
  checkKnownKeys(kind.name, options, known);
  // undefined means "the default"; null is a mistake, as for the boolean options.
  const eps = options.eps === undefined ? 1e-5 : checkEps(`${kind.name}: eps`, options.eps);
  const sparse = checkBoolean(`${kind.name}: sparse`, options.sparse, false);
  const momentum = options.momentum === undefined
    ? (sparse ? SPARSE_DEFAULT_MOMENTUM : kind.defaultMomentum)
    : checkFiniteIn(`${kind.name}: momentum`, options.momentum, 0, 1);
  const usingMovingAverage = checkBoolean(
    `${kind.name}: usingMovingAverage`,
    options.usingMovingAverage,
    true,
  );
  const usingBN = checkBoolean(`${kind.name}: usingBN`, options.usingBN, true);
  const lastGamma = checkBoolean(`${kind.name}: lastGamma`, options.lastGamma, false);
  const backendRequest = options.backend === undefined ? "auto" : options.backend;
  if (!BACKEND_REQUESTS.includes(backendRequest)) {
    throw new RangeError(
      `${kind.name}: unknown backend ${describeValue(backendRequest)} (expected ${
        BACKEND_REQUESTS.join(", ")
      })`,
    );
  }
  const settled = { eps, momentum, usingMovingAverage, usingBN, lastGamma, backendRequest, sparse };
  if (options.sync === undefined) return settled;
  const g = options.sync;
  if (typeof g !== "object" || g === null || typeof g.allGather !== "function") {
    throw new TypeError(`${kind.name}: sync must be a SyncGroup with an allGather function`);
  }
  checkPositiveInt(`${kind.name}: sync.size`, g.size);
  return { ...settled, syncGroup: g, sync: batchSync(g, kind.name) };
}
