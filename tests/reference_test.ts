/**
 * The float64 reference backend's BN statistics on constant data: every mean is a sum divided
 * once (as torch's mean), so that a constant column or channel has a variance of exactly 0, as
 * PyTorch float64 gives and the backends give. Its BN means were sums of x / n, each term rounded:
 * a constant column of 2^109 over 31 samples had a variance of 6e33 (SwitchNorm1d fuzzer seed
 * 82: running_var 5.8e32 where the backends, exactly, have 0).
 *
 * @module
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";

Deno.test("reference: a constant SwitchNorm1d column has a BN variance of exactly 0", async () => {
  for (const [n, v] of [[31, -(2 ** 109)], [7, 3 * 2 ** 60], [300, 1e-30]]) {
    const layer = new SwitchNorm1d(2, { backend: "reference" });
    layer.train(true);
    const x = Float32Array.from({ length: 2 * n }, (_, i) => i % 2 ? i / n : v);
    await layer.forward(x, [n, 2]);
    // The buffers start at 0 (the authors' code): running_var is 0.997 * 0 + 0.003 * 0, while the
    // ordinary column's moves.
    assert.equal(layer.running_var[0], 0, `n ${n}, column of ${v}`);
    assert.ok(layer.running_var[1] > 0);
    layer.dispose();
  }
});

Deno.test("reference: a constant SwitchNorm2d channel has a BN variance of exactly 0", async () => {
  for (const [n, v] of [[3, 2 ** 109], [31, -(2 ** 109)], [5, 1e20]]) {
    const layer = new SwitchNorm2d(1, { backend: "reference" });
    layer.train(true);
    await layer.forward(new Float32Array(n * 4).fill(v), [n, 1, 2, 2]);
    assert.equal(layer.running_var[0], 0, `n ${n}, channel of ${v}`);
    layer.dispose();
  }
});
