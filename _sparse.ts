/**
 * Sparse SN's state beside the logits, as the authors' SSN2d keeps it (switchablenorms/
 * Sparse_SwitchNorm, utils/sparse_switchable_norm.py): the sparsestmax radius and, per mixing,
 * whether it is fixed. A fixed mixing's weights ARE its logits (no map, no gradient); a mixing
 * becomes fixed after a forward whose sparsestmax weights were one-hot, and its logits are then
 * set to that one-hot vector. Depends on the importance maps and the state-dict key spec type.
 *
 * @module
 */
import { type Importance, sparsestmax } from "./_importance.ts";
import type { KeySpec } from "./_state_dict.ts";

/** The two mixings of a layer. */
export type Mixing = "mean" | "var";

/** SSN2d's momentum default (the authors build every SSN2d with it). */
export const SPARSE_DEFAULT_MOMENTUM = 0.997;

/** The state-dict keys of SSN2d's extra buffers: `mean_fixed`, `var_fixed` (0/1), `radius`. */
export const SPARSE_KEYS: Readonly<Record<string, KeySpec>> = {
  mean_fixed: { length: 1, shapes: [] },
  var_fixed: { length: 1, shapes: [] },
  radius: { length: 1, shapes: [] },
};

/** The radius and the fixed flags of one Sparse SN layer. */
export class SparseState {
  radius = 0;
  readonly fixed: Record<Mixing, boolean> = { mean: false, var: false };

  /** The mixing weights of `logits`: the logits themselves once fixed, else sparsestmax. */
  importance(logits: Float32Array, which: Mixing): Importance {
    if (this.fixed[which]) {
      const k = logits.length;
      return { weights: Float64Array.from(logits), vjp: () => new Float64Array(k) };
    }
    return sparsestmax(logits, this.radius);
  }

  /**
   * After a forward that used `weights`: when they are one-hot (max - min >= 1, SSN2d's test),
   * fixes the mixing, sets `logits` to the one-hot vector and zeroes `grad` (SSN2d sets it to
   * None). Returns whether it did.
   */
  fixIfOneHot(
    which: Mixing,
    weights: Float64Array,
    logits: Float32Array,
    grad: Float32Array,
  ): boolean {
    if (this.fixed[which]) return false;
    const max = Math.max(...weights), min = Math.min(...weights);
    if (!(max - min >= 1)) return false;
    const hot = weights.indexOf(max);
    logits.forEach((_, i) => logits[i] = +(i === hot));
    grad.fill(0);
    this.fixed[which] = true;
    return true;
  }

  /** The index of the normalizer a fixed mixing uses (its largest logit), else undefined. */
  fixedTo(which: Mixing, logits: Float32Array): number | undefined {
    return this.fixed[which] ? logits.indexOf(Math.max(...logits)) : undefined;
  }

  /** The extra state-dict entries, flat. */
  entries(): { mean_fixed: Float32Array; var_fixed: Float32Array; radius: Float32Array } {
    return {
      mean_fixed: Float32Array.of(+this.fixed.mean),
      var_fixed: Float32Array.of(+this.fixed.var),
      radius: Float32Array.of(this.radius),
    };
  }

  /**
   * Checks the entries read of {@linkcode SPARSE_KEYS} (flags 0 or 1, radius in [0, 1]; absent
   * ones stay as they are) and returns a function that applies them, so that the caller can check
   * everything first.
   */
  prepareLoad(where: string, read: Readonly<Partial<Record<string, Float32Array>>>): () => void {
    for (const key of ["mean_fixed", "var_fixed"]) {
      const v = read[key]?.[0];
      if (v !== undefined && v !== 0 && v !== 1) {
        throw new RangeError(`${where}: "${key}" must be 0 or 1, got ${v}`);
      }
    }
    const radius = read.radius?.[0];
    if (radius !== undefined && !(radius >= 0 && radius <= 1)) {
      throw new RangeError(`${where}: "radius" must be in [0, 1], got ${radius}`);
    }
    return () => {
      if (read.mean_fixed) this.fixed.mean = read.mean_fixed[0] === 1;
      if (read.var_fixed) this.fixed.var = read.var_fixed[0] === 1;
      if (radius !== undefined) this.radius = radius + 0; // a loaded -0 reads back as 0
    };
  }
}
