/**
 * The C ABI of the WASM module (wasm/src/lib.rs and wasm/src/layout.rs), mirrored for the
 * TypeScript side: export signatures, flag values and the layer block's layout. Private to the
 * package; change it together with `ABI_VERSION` in wasm/src/lib.rs.
 *
 * Depends on nothing of the package.
 *
 * @module
 */

/** The ABI version this mirror describes; the loader refuses a module reporting another. */
export const ABI_VERSION = 9;

/** `layout` argument: [N, C, M] (SwitchNorm2d/3d). */
export const LAYOUT_ND = 0;
/** `layout` argument: [N, C] (SwitchNorm1d). */
export const LAYOUT_1D = 1;

/** `mode` bit: training (BN statistics from the batch) rather than evaluation. */
export const MODE_TRAINING = 1;
/** `mode` bit: BN statistics take part in the mix. */
export const MODE_USING_BN = 2;
/**
 * `mode` bit of the statistics pass (SyncSN): in training with usingBN, leave M2 (the sum of
 * squared deviations behind the BN variance) in the BN variance slots, for a cross-replica merge.
 */
export const MODE_BN_PARTIALS = 4;
/**
 * `mode` bit of the statistics pass of layout "nd": a backward may follow (training or
 * keepForBackward), so rows whose mean lies near 0 beside their std are summed again in float64.
 */
export const MODE_REFINE_MEANS = 8;
/**
 * `mode` bit of a training forward of layout "nd" with usingBN under the batch average (not
 * SyncSN): channels whose BN statistics' error may move the float32 rounding of the running
 * buffers' sums are summed again in float64 (`nd::refine_batch_average`).
 */
export const MODE_BATCH_AVERAGE = 16;

/**
 * f64 slots before gamma in the layer block: eps, mean_mix[3], var_mix[3], reserved. Then f32
 * gamma[C], beta[C], running_mean[C], running_var[C].
 */
export const LAYER_HEADER_F64 = 8;

/**
 * The module's exports. Every pointer is a byte offset into `memory`; every buffer is owned and
 * sized by the caller (the kernels allocate nothing and keep no state between calls). A forward
 * is `sn_stats_*` then `sn_normalize_*` on the same statistics area, which afterwards still holds
 * every statistic of that forward (layout in wasm/src/layout.rs).
 */
export interface WasmKernels {
  /** The linear memory; the loader manages everything from `__heap_base` up. */
  readonly memory: WebAssembly.Memory;
  /** First byte after the module's stack and static data. */
  readonly __heap_base: WebAssembly.Global;
  /** The module's ABI version (compare with `ABI_VERSION`). */
  sn_abi_version(): number;
  /** Bytes of the layer block for C channels. */
  sn_layer_bytes(c: number): number;
  /** Number of f64 values in the statistics area (the BN mean and variance are the last 2C). */
  sn_stats_len(layout: number, n: number, c: number): number;
  /** Bytes of transient scratch (16-byte aligned) that a forward needs. */
  sn_scratch_bytes(layout: number, n: number, c: number): number;
  /** Number of f64 values in the backward work area. */
  sn_work_len(layout: number, n: number, c: number): number;
  /** f64 index in the work area of the packed gradient sums. */
  sn_sums_at(layout: number, n: number, c: number): number;
  /**
   * Number of packed gradient sums, 4C + 2K + 1: dWeight[C], dBias[C], meanDots[K], varDots[K],
   * gmB[C], gvB[C] (K normalizers mixed; the reference backend's packing), then the mean dots'
   * offset (BackwardResult.meanDotsOffset).
   */
  sn_sums_len(layout: number, mode: number, c: number): number;
  /** Statistics pass over x of [n, c, m]: IN, LN and BN statistics into `stats`. */
  sn_stats_nd(
    x: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
  ): void;
  /** Normalize pass over x of [n, c, m] into y (may equal x), from `stats`. */
  sn_normalize_nd(
    x: number,
    y: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    scratch: number,
  ): void;
  /**
   * `sn_stats_nd` in parts, for an input staged chunk by chunk: IN statistics of rows
   * [row0, row0 + rows) of the tensor [n, c, m], whose data is at `x` (the chunk).
   */
  sn_stats_rows_nd(
    x: number,
    row0: number,
    rows: number,
    n: number,
    c: number,
    m: number,
    stats: number,
    mode: number,
  ): void;
  /** The rest of `sn_stats_nd` once `sn_stats_rows_nd` has covered every row. */
  sn_stats_derive_nd(
    x: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
  ): void;
  /**
   * `sn_normalize_nd` in parts: the per-row constants (16 bytes per row, and f64 constants of
   * wide rows after them) into `scratch`, for rows of m floats; returns 1 if some row is wide (its
   * float32 sweep could leave float32's range, wasm/src/wide.rs), else 0.
   */
  sn_constants_nd(
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    scratch: number,
  ): number;
  /**
   * The normalize sweep of `rows` rows of m floats, constants at `consts` (scratch + 16 row0);
   * `wide` as `sn_constants_nd` returned.
   */
  sn_normalize_rows_nd(
    x: number,
    y: number,
    rows: number,
    m: number,
    consts: number,
    wide: number,
  ): void;
  /** Statistics pass over x of [n, c]: LN and BN statistics into `stats`. */
  sn_stats_1d(
    x: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    scratch: number,
  ): void;
  /** Normalize pass over x of [n, c] into y (may equal x), from `stats`. */
  sn_normalize_1d(
    x: number,
    y: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
  ): void;
  /**
   * Backward reduction over x, dy of [n, c, m] with the statistics of their forward: per-row
   * gradients and the packed sums into `work`.
   */
  sn_backward_reduce_nd(
    x: number,
    dy: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
  ): void;
  /**
   * Backward dx pass over [n, c, m] from `work` (sums possibly replaced by their cross-replica
   * totals); `count` is the batch size behind the BN statistics. `dx` may equal `dy`.
   */
  sn_backward_dx_nd(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
    count: number,
  ): void;
  /** Backward reduction over x, dy of [n, c]. */
  sn_backward_reduce_1d(
    x: number,
    dy: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
  ): void;
  /** Backward dx pass over [n, c]; overwrites gmB, gvB of the sums. `dx` may equal `dy`. */
  sn_backward_dx_1d(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
    count: number,
  ): void;
  /** Roofline: sum of x (returned) and y = x over `len` floats; no other math. */
  sn_roofline(x: number, y: number, len: number): number;
  /** Backward roofline: sum of x + dy (returned) and dx = x + dy over `len` floats. */
  sn_roofline_backward(x: number, dy: number, dx: number, len: number): number;
}
