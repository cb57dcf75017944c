/**
 * A subnormal gamma under huge dy in layout "1d" whose column's gradient sums cancel to 0,
 * attack fuzzer seed 214697: SwitchNorm1d [4, 3] in training, eps 1e-30, every x 1e10 (x - mu 0),
 * dy +-3e38 alternating, gamma [2e-39, -1e30, -1e30]. A subnormal gamma is factor-wide
 * (common.wgsl), whose elements only sn1d_bwd_wide_dx forms right, but sn_bwd_groups listed a
 * channel for it only where the channel's sums carried exponents, which sums of 0 do not. On a
 * GPU that flushes subnormals (SwiftShader, NVIDIA) sn1d_bwd_dx then made dy gamma 0, lifted dy
 * by 2^64 to +-Infinity and multiplied by the flushed gamma: dx NaN for -+6.0e14 in column 0.
 * Such channels (gamma / std factor-wide by the column's bound) are now listed.
 */
import assert from "node:assert/strict";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

/** The seed's call, changed by `f`. */
function variant(f: (c: LayerCall & { dy: Float32Array }) => void): LayerCall {
  const call = structuredClone(make(214697)) as LayerCall & { dy: Float32Array };
  f(call);
  return call;
}

const VARIANTS: [string, (c: LayerCall & { dy: Float32Array }) => void][] = [
  ["as is (dy +-3e38)", () => {}],
  ["dy +-1e30", (c) => {
    c.dy = c.dy.map((v) => Math.sign(v) * 1e30);
  }],
  ["dy +-1", (c) => {
    c.dy = c.dy.map((v) => Math.sign(v));
  }],
  ["eps 1e-5", (c) => {
    (c as { options: { eps: number } }).options.eps = 1e-5;
  }],
  ["gamma0 -1e-40, bias 0", (c) => {
    const s = c.state as { weight: Float32Array; bias: Float32Array };
    s.weight[0] = -1e-40;
    s.bias = new Float32Array(3);
  }],
];

for (const [name, f] of VARIANTS) {
  rangeTests(
    `attack fuzzer seed 214697, ${name}: subnormal gamma, column sums 0`,
    async (backend) => {
      const call = variant(f);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}
