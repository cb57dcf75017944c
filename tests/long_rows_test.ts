/**
 * Issue 10, point 2: statistics of long rows. SwitchNorm3d on [1, 3, 1, 1, 4e6] (one sample, so
 * the IN, LN and BN means differ only by ~std / sqrt(M) = 6e-4), one training forward and
 * backward on every backend, against PyTorch float64 (tests/vectors/summaries/sn3d_long_rows.json,
 * `deno task gen:vectors`). The importance-logit gradients are differences of IN, LN and BN
 * means, so row means that are only float32-accurate (1e-7 relative) miss them by percents.
 * x and dy (12M floats each) are drawn here from the generator's seeded stream.
 */
import { SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { seededRandom } from "../examples/_data.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";

const summary = JSON.parse(
  Deno.readTextFileSync(new URL("./vectors/summaries/sn3d_long_rows.json", import.meta.url)),
);
const shape: number[] = summary.shape;
const count = shape.reduce((a, b) => a * b, 1);

function draw(seed: number, lo: number, width: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + width * random();
  return out;
}

const x = draw(summary.x_seed, -1, 4);
const dy = draw(summary.dy_seed, -1, 2);
const head: number = summary.x_head.length;

Deno.test("the long-row test draws the same x and dy as the PyTorch summary", () => {
  assertClose(x.subarray(0, head), summary.x_head, { atol: 0, rtol: 0, why: "same floats" }, "x");
  assertClose(dy.subarray(0, head), summary.dy_head, { atol: 0, rtol: 0, why: "same" }, "dy");
});

async function longRows(backend: BackendName): Promise<void> {
  const e = summary.expect;
  const layer = new SwitchNorm3d(3, { backend });
  layer.train(true);
  const y = await layer.forward(x, shape, { keepForBackward: true });
  assertClose(y.subarray(0, head), e.y_head, Y, "y, first values");
  assertClose(y.subarray(count - head), e.y_tail, Y, "y, last values");
  assertClose(layer.running_mean, e.running_mean, RUNNING, "running_mean");
  assertClose(layer.running_var, e.running_var, RUNNING, "running_var");
  const dx = await layer.backward(dy);
  assertClose(dx.subarray(0, head), e.dx_head, GRAD, "dx, first values");
  assertClose(dx.subarray(count - head), e.dx_tail, GRAD, "dx, last values");
  for (const [name, want] of Object.entries(e.grads)) {
    const got = layer.grads[name as keyof typeof layer.grads];
    assertClose(got, want as number[], GRAD, `grad of ${name}`);
  }
  layer.dispose();
}

await testEachBackend(
  "SwitchNorm3d on rows of 4e6 floats matches PyTorch in y, buffers, dx and every gradient",
  longRows,
);
