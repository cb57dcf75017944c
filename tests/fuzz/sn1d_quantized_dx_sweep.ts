/**
 * Neighbours of attack fuzzer seed 8118 (issue 10): SwitchNorm1d calls, mostly evaluations, whose
 * rows lie a few float32 spacings apart (or 1e-3 relative) at 1e-10 to 3e37, one channel's
 * running_mean at the data over a tiny running_var, the others far off, LN's weights e^-60 to
 * e^-87 (or BN's, in training), gamma 1e-30 to 1e30, dy ~1e-31 beside subnormal ones: dx through
 * LN's variance term w GvL 2 (x - mu_ln) / (C - 1), where w GvL can lie below float32's normal
 * range. Not a test (no assertion, not run by `deno task test`). NUMERICS.md says what it found.
 *
 *   deno run -A tests/fuzz/sn1d_quantized_dx_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The call of one seed. */
export function makeCase(seed: number): LayerCall {
  const r = seededRandom(seed * 7919 + 13);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
  const n = pick([2, 2, 3, 4, 8]), c = pick([2, 3, 3, 5, 8]);
  const X = pick([1e30, 1e30, 1e20, 1e10, 1e3, 1, 1e-10, 3e37]);
  const spread = pick(["ulps", "ulps", "rel"]);
  const x = new Float32Array(n * c);
  for (let i = 0; i < x.length; i++) {
    const u = 2 ** (Math.floor(Math.log2(X)) - 23);
    x[i] = spread === "ulps" ? X + Math.floor(r() * 16) * u : X * (1 + (r() - 0.5) * 1e-3);
  }
  const cancel = Math.floor(r() * c);
  const rm = new Float32Array(c),
    rv = new Float32Array(c),
    g = new Float32Array(c),
    b = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    if (j === cancel) {
      rm[j] = pick([X, x[j], X * (1 + 1e-7)]);
      rv[j] = pick([1e-40, 0, 1e-30, 1e-20]);
    } else {
      rm[j] = pick([-3e38, 3e38, 0, X, -X]);
      rv[j] = pick([1, 1e30, 1e-40, X * X > 3e38 ? 3e38 : X * X]);
    }
    g[j] = pick([1e-20, -1e30, 1, -1, 1e10, 1e-30]);
    b[j] = pick([1.4e-45, 1, 0]);
  }
  const L = pick([-87, -86.5, -86, -85, -84, -80, -75, -70, -60]);
  const mix = pick(["both", "var", "mean"]);
  const training = r() < 0.2;
  const lnSmall = training ? r() < 0.5 : true;
  const logit = (on: boolean) =>
    on ? (lnSmall ? Float32Array.of(L, 0) : Float32Array.of(0, L)) : Float32Array.of(0, 0);
  const dyKind = pick(["mix", "mix", "normal", "tiny"]);
  const dy = Float32Array.from({ length: n * c }, () => {
    const s = r() < 0.5 ? -1 : 1;
    if (dyKind === "normal") return s * r();
    if (dyKind === "tiny") return s * r() * 1e-31;
    return r() < 0.4 ? s * r() * 1e-30 : s * r() * 1e-41;
  });
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: pick([0, 0, 1e-5, 1, 1e-30]), momentum: 0.1 },
    state: {
      weight: g,
      bias: b,
      mean_weight: logit(mix !== "var"),
      var_weight: logit(mix !== "mean"),
      running_mean: rm,
      running_var: rv,
    },
    partial: true,
    training,
    x,
    dy,
    scales: true,
  };
}
if (import.meta.main) await runSweep(makeCase);
