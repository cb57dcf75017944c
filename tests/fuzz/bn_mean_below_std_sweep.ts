/**
 * A seeded sweep of the BN record's training neighbour (issue 10): a channel whose batch BN mean
 * lies far below its std (2^-20 to 2^-200 of it: pairs of values +-v about 0, within each row or
 * mirrored across samples, plus a pair of small elements that leaves the mean; sums the float64
 * reference forms exactly, see `make`), at data of 2^-66 to 2^100, beside channels of far different scale, under mixing weights that give
 * BN most, an equal share, a tiny share (e^-174) or none, the variance likewise; momentum 0, 0.5,
 * 0.9 or 0.997 from running buffers of 0, 1 or 1e-30; dy from 1e-38 to 1e20; layout "nd" (rows of
 * 4 to 300) or SwitchNorm1d; mostly training, some evaluations. Each call is held to the float64
 * reference with the range tests' checks, and a training step's running buffers as
 * `tests/range_property_test.ts` holds them (running_mean to RUNNING of its update's terms,
 * running_var relatively); failures are printed with their seed, then the count. Not a test (no
 * assertion, not run by `deno task test`): a tool to find members of a fault class. NUMERICS.md
 * ("SwitchNorm1d's statistics and wide elements", "Other known cases") says what it found.
 *
 *   deno run -A tests/fuzz/bn_mean_below_std_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { CallResult, LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { assertCloseToScale } from "../_close.ts";
import { RUNNING, SUBNORMAL } from "../_tolerances.ts";
import { runningMeanScale } from "../_term_scales.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall & { momentum: number } {
  const r = seededRandom(seed * 61 + 13);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick(["2d", "2d", "2d", "1d"] as const);
  const n = layer === "1d" ? pick([4, 6, 16, 33]) : pick([2, 4]);
  const c = pick([2, 3]);
  const m = layer === "1d" ? 1 : pick([4, 16, 33, 300]);
  const shape = layer === "1d" ? [n, c] : [n, c, 1, m];
  const len = n * c * m;
  // Channel 0: pairs +-v (v ~ s) about 0, the mean left by `ratio` of s.
  // The float64 reference sums a row in order and divides once: its means are exact only where
  // no partial sum rounds. So v lies on a grid of s 2^-20 (s a power of 2), the mean's elements
  // carry 4 significant bits, and the pairs are adjacent in the sums (within a row, or the
  // samples' adjacent elements in SwitchNorm1d); pairs across samples (a row mirrored in the next
  // sample, the IN means +-S/m) leave the BN mean 2^-53 of S/m off in the reference's division,
  // so they take ratios of 2^-36 or more.
  const s = 2 ** Math.round(Math.log2(pick([1, 1e20, 1e-20, 1e30, 1e-10, 3e5])));
  const count = n * m;
  const within = m > 1 && r() < 0.5; // pairs within a row (IN means ~0 too) or across samples
  const ratio = within || layer === "1d"
    ? pick([2 ** -20, 2 ** -30, 2 ** -40, 2 ** -60, 2 ** -100, 2 ** -200, 2 ** -99.7])
    : pick([2 ** -20, 2 ** -24, 2 ** -30, 2 ** -36]);
  const ch0 = new Float64Array(count); // unpaired elements stay 0
  const pairs: [number, number][] = [];
  for (let k = 0; k < count; k++) {
    // k's partner: the next element of the row (within) or k's element of the next sample.
    const q = within ? (k % 2 === 0 ? k + 1 : -1) : (Math.floor(k / m) % 2 === 0 ? k + m : -1);
    if (q < 0 || q >= count || (within && Math.floor(q / m) !== Math.floor(k / m))) continue;
    const v = Math.round((r() * 2 - 1) * 2 ** 20) * s * 2 ** -20;
    ch0[k] = v;
    ch0[q] = -v;
    pairs.push([k, q]);
  }
  // Half the mean's sum, t (4 bits; one whose elements would lie below float32's normal range
  // takes a larger ratio).
  let t = pick([1, -1]) * ratio * s * count / 2;
  while (Math.abs(t) < 2 ** -120) t *= 2 ** 20;
  const e = Math.floor(Math.log2(Math.abs(t)));
  t = Math.sign(t) * 2 ** e * (1 + Math.floor(r() * 16) / 16);
  // Where the pairs cancel in the sums (within a row, or SwitchNorm1d's samples), the mean's pair
  // is the last of its row (or of the column) so that the reference adds it to an exact 0.
  let [k0, q0] = pairs[Math.floor(r() * pairs.length)];
  if (within || layer === "1d") {
    for (const [k, q] of pairs) {
      if ((layer === "1d" || Math.floor(k / m) === Math.floor(k0 / m)) && k > k0) [k0, q0] = [k, q];
    }
  }
  if (r() < 0.6) {
    // A pair of tiny elements that leave the mean.
    ch0[k0] = ch0[q0] = t;
  } else {
    // A pair of small elements v, -v + 2t (v 2^4 to 2^16 above t, so both hold it).
    const v = t * 2 ** pick([4, 10, 16]);
    ch0[k0] = v;
    ch0[q0] = Math.fround(-v + 2 * t);
  }
  const others = [pick([1, 1e-30, 1e30, 1e-38, 1e35, 1e10]), pick([1, 1e-20, 1e25])];
  const offs = [pick([0, 0.3, 3, -1]), pick([0, 1, -0.5])];
  const x = new Float32Array(len);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      for (let e = 0; e < m; e++) {
        const at = layer === "1d" ? i * c + j : (i * c + j) * m + e;
        x[at] = j === 0 ? ch0[i * m + e] : (r() * 2 - 1 + offs[j - 1]) * others[j - 1];
      }
    }
  }
  const ds = pick([1, 1e-20, 1e20, 1e-38, 1e-5]);
  const dOff = pick([0, 0, 0.5]);
  const dy = Float32Array.from({ length: len }, () => (r() * 2 - 1 + dOff) * ds);
  const k = layer === "1d" ? 2 : 3;
  // BN's logit last: most (8), equal (0), a tiny share (-174 beside 0), none (-1e30).
  const bnShare = () => pick([8, 0, -174, -1e30, -20]);
  const mean_weight = Float32Array.from(
    { length: k },
    (_, i) => i === k - 1 ? bnShare() : pick([0, 0, -3, 1.3]),
  );
  const var_weight = Float32Array.from(
    { length: k },
    (_, i) => i === k - 1 ? bnShare() : pick([0, 0, -3, 1.3]),
  );
  const momentum = pick([0.9, 0.9, 0, 0.5, 0.997]);
  return {
    layer,
    shape,
    options: { eps: pick([1e-5, 0, 2 ** -126, 1e-30]), momentum },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1e-10, 1e10, -3e20, 1e30, 2e-39])),
      bias: Float32Array.from({ length: c }, () => pick([0, 0, 1])),
      mean_weight,
      var_weight,
      running_mean: Float32Array.from({ length: c }, () => pick([0, 1, 1e-30])),
      running_var: Float32Array.from({ length: c }, () => pick([1, 1, 1e-30, 0])),
    },
    partial: true,
    training: r() < 0.85,
    x,
    dy,
    scales: true,
    running: true,
    dispose: true,
    momentum,
  };
}

/** Holds a training step's running buffers as `tests/range_property_test.ts` does. */
export function assertRunning(
  call: LayerCall & { momentum: number },
  got: CallResult,
  want: CallResult,
): void {
  if (!call.training) return;
  const c = call.shape[1], m = call.layer === "1d" ? 1 : call.x.length / (call.shape[0] * c);
  const scale = runningMeanScale({
    c,
    m,
    batches: [call.x],
    start: call.state!.running_mean,
    momentum: call.momentum,
  });
  const RUN = { ...RUNNING, floor: SUBNORMAL.floor };
  assertCloseToScale(got.runningMean!, want.runningMean!, scale, RUN, "running_mean");
  const varScale = Float64Array.from(want.runningVar!, (v) => Math.abs(v));
  assertCloseToScale(got.runningVar!, want.runningVar!, varScale, RUN, "running_var");
}

if (import.meta.main) {
  await runSweep(
    make,
    (call, got, want) => assertRunning(call as LayerCall & { momentum: number }, got, want),
  );
}
