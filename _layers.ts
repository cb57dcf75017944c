/**
 * The public layer classes SwitchNorm1d, 2d and 3d: what each is (its rank, shapes and default
 * momentum, a LayerKind) and its constructor's documentation. Everything else is SwitchNorm's.
 * Depends on the layer (_layer.ts) and the options' types.
 *
 * @module
 */
import { SwitchNorm } from "./_layer.ts";
import type { LayerKind, SwitchNormNdOptions, SwitchNormOptions } from "./_options.ts";

const KIND_1D: LayerKind = {
  name: "SwitchNorm1d",
  layout: "1d",
  rank: 2,
  rankName: "[N, C]",
  paramShape: (c) => [1, c],
  bufferShape: (c) => [1, c],
  defaultMomentum: 0.997,
};

const KIND_2D: LayerKind = {
  name: "SwitchNorm2d",
  layout: "nd",
  rank: 4,
  rankName: "[N, C, H, W]",
  paramShape: (c) => [1, c, 1, 1],
  bufferShape: (c) => [1, c, 1],
  defaultMomentum: 0.9,
};

const KIND_3D: LayerKind = {
  name: "SwitchNorm3d",
  layout: "nd",
  rank: 5,
  rankName: "[N, C, D, H, W]",
  paramShape: (c) => [1, c, 1, 1, 1],
  bufferShape: (c) => [1, c, 1],
  defaultMomentum: 0.997,
};

/**
 * Switchable Normalization over [N, C]: LN over the features of a sample and BN over the batch,
 * mixed by learned importance weights (the authors' SwitchNorm1d).
 *
 * @example
 * ```ts
 * import { SwitchNorm1d } from "./mod.ts";
 * const sn = new SwitchNorm1d(3, { backend: "reference" });
 * const y = await sn.forward(new Float32Array([1, 2, 3, 4, 6, 8]), [2, 3]);
 * console.log(y.length); // 6
 * ```
 */
export class SwitchNorm1d extends SwitchNorm<true> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.997.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
  constructor(numFeatures: number, options: SwitchNormOptions = {}) {
    super(KIND_1D, numFeatures, options);
  }
}

/**
 * Switchable Normalization over [N, C, H, W]: IN, LN and BN statistics mixed by learned
 * importance weights (the authors' SwitchNorm2d).
 *
 * @example
 * ```ts
 * import { SwitchNorm2d } from "./mod.ts";
 * const sn = new SwitchNorm2d(2, { backend: "reference" });
 * const x = Float32Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => Math.sin(i));
 * const y = await sn.forward(x, [2, 2, 3, 3]);
 * console.log(y.length, sn.stateDict().running_mean); // 36 Float32Array(2) [...]
 * ```
 */
export class SwitchNorm2d<UsingBN extends boolean = true> extends SwitchNorm<UsingBN> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.9.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormNdOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
  constructor(numFeatures: number, options: SwitchNormNdOptions<UsingBN> = {}) {
    super(KIND_2D, numFeatures, options);
  }
}

/**
 * Switchable Normalization over [N, C, D, H, W] (the authors' SwitchNorm3d).
 *
 * @example
 * ```ts
 * import { SwitchNorm3d } from "./mod.ts";
 * const sn = new SwitchNorm3d(1, { backend: "reference" }).eval();
 * const y = await sn.forward(new Float32Array(8).map((_, i) => i), [1, 1, 2, 2, 2]);
 * console.log(y.length); // 8
 * ```
 */
export class SwitchNorm3d<UsingBN extends boolean = true> extends SwitchNorm<UsingBN> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.997.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormNdOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
  constructor(numFeatures: number, options: SwitchNormNdOptions<UsingBN> = {}) {
    super(KIND_3D, numFeatures, options);
  }
}
