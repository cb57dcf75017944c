/**
 * Issue 10: the wide passes (rows whose data lies outside float32's comfortable range, listed by
 * the hot passes and redone in scaled units) over many rows and over long rows. llvmpipe
 * (lavapipe, CI's WebGPU) ends a shader invocation's loops after 65535 iterations in all, with no
 * error: with 64 workgroups taking the listed rows in turn, a workgroup per row, data of ~1e-7
 * (every row wide: its largest |x| below 2^-21) over 1M rows left a third of y and dx unwritten
 * (y = 0.38 where the reference has -1.5e-5, dx NaN), and a row of 5.2M floats its last 1.2M
 * elements. The lists now size their pass's dispatch by their count, a workgroup per listed
 * segment (common.wgsl: list_grid). WASM and WebGPU against the float64 reference.
 */
import { seededRandom } from "../examples/_data.ts";
import { Y } from "./_tolerances.ts";
import {
  assertOutputsClose,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";

interface WideCase {
  readonly what: string;
  readonly shape: readonly number[];
  /** x uniform in (-scale, scale). */
  readonly scale: number;
}

const CASES: readonly WideCase[] = [
  { what: "1M rows of 4 floats of ~1e-7 (every row wide)", shape: [16, 65536, 2, 2], scale: 1e-7 },
  { what: "one row of 5.2M floats of ~1e-7", shape: [1, 1, 2048, 2560], scale: 1e-7 },
  { what: "1M rows of 4 floats of ~1e19", shape: [16, 65536, 2, 2], scale: 1e19 },
];

/** A training step of `kase` from the layer's defaults. */
function call(kase: WideCase): LayerCall {
  const count = kase.shape.reduce((a, b) => a * b, 1);
  const random = seededRandom(977);
  const x = new Float32Array(count), dy = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    x[i] = (random() * 2 - 1) * kase.scale;
    dy[i] = random() * 2 - 1;
  }
  return { layer: "2d", shape: kase.shape, training: true, x, dy, scales: true, dispose: true };
}

rangeTests("many wide rows, and a long wide row, match the float64 reference", async (backend) => {
  for (const kase of CASES) {
    const { want, got } = await runBoth(call(kase), backend);
    // y to Y (its scale is at most ~2 here); dx and the gradients to float32 rounding of the size of
    // their terms (GRAD_SCALED).
    assertOutputsClose(got, want, {
      what: kase.what,
      y: Y,
      ...gradsToScale(want.scales),
    });
  }
});
