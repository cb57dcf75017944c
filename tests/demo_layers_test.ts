/**
 * The demo's tiny layers (examples/_tiny_layers.ts): their backward passes against central
 * finite differences of a random linear loss, on small shapes. The demo's claims rest on them.
 */
import assert from "node:assert/strict";
import {
  AvgPool2x2,
  Conv3x3,
  GlobalAvgPool,
  Linear,
  ReLU,
  softmaxCrossEntropy,
} from "../examples/_tiny_layers.ts";
import { seededRandom } from "../examples/_data.ts";

const random = seededRandom(12345);
const randomArray = (n: number, scale = 1) =>
  Float32Array.from({ length: n }, () => scale * (2 * random() - 1));

/**
 * Checks `analytic` (the gradient of loss with respect to `p`) against central differences of
 * `loss`, which must read `p` afresh. float32 arithmetic: h = 1e-2 and a tolerance of 0.2% of the largest gradient.
 */
function checkGradient(
  name: string,
  p: Float32Array,
  analytic: Float32Array,
  loss: () => number,
  h = 1e-2,
): void {
  let scale = 0;
  for (const g of analytic) scale = Math.max(scale, Math.abs(g));
  for (let i = 0; i < p.length; i++) {
    const keep = p[i];
    p[i] = keep + h;
    const up = loss();
    p[i] = keep - h;
    const down = loss();
    p[i] = keep;
    const numeric = (up - down) / (2 * h);
    const err = Math.abs(numeric - analytic[i]);
    assert(
      err <= 2e-3 * Math.max(scale, 1e-3) + 1e-4,
      `${name}[${i}]: analytic ${analytic[i]}, finite difference ${numeric}`,
    );
  }
}

/** sum(y * r) in float64 for a fixed random r: dL/dy = r. */
const dot = (y: Float32Array, r: Float32Array) => {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * r[i];
  return s;
};

Deno.test("demo layers: Conv3x3 backward matches finite differences", () => {
  const [n, inC, outC, h, w] = [2, 2, 3, 4, 5];
  const conv = new Conv3x3(inC, outC, random);
  conv.bias.set(randomArray(outC));
  const x = randomArray(n * inC * h * w);
  const r = randomArray(n * outC * h * w);
  conv.forward(x, n, h, w);
  const dx = conv.backward(r);
  const loss = () => dot(conv.forward(x, n, h, w), r);
  checkGradient("conv dx", x, dx, loss);
  checkGradient("conv dweight", conv.weight, conv.gradWeight.slice(), loss);
  checkGradient("conv dbias", conv.bias, conv.gradBias.slice(), loss);
});

Deno.test("demo layers: Linear backward matches finite differences", () => {
  const [n, inF, outF] = [3, 4, 5];
  const fc = new Linear(inF, outF, random);
  fc.bias.set(randomArray(outF));
  const x = randomArray(n * inF);
  const r = randomArray(n * outF);
  fc.forward(x, n);
  const dx = fc.backward(r);
  const loss = () => dot(fc.forward(x, n), r);
  checkGradient("linear dx", x, dx, loss);
  checkGradient("linear dweight", fc.weight, fc.gradWeight.slice(), loss);
  checkGradient("linear dbias", fc.bias, fc.gradBias.slice(), loss);
});

Deno.test("demo layers: softmax cross-entropy gradient matches finite differences", () => {
  const [n, k] = [3, 4];
  const logits = randomArray(n * k, 3);
  const labels = [0, 3, 2];
  const { dlogits, loss } = softmaxCrossEntropy(logits, labels, n, k);
  assert(Number.isFinite(loss) && loss > 0);
  checkGradient("cross-entropy dlogits", logits, dlogits, () => {
    return softmaxCrossEntropy(logits, labels, n, k).loss;
  }, 1e-2);
});

Deno.test("demo layers: pooling and ReLU backward match finite differences", () => {
  const [n, c, h, w] = [2, 2, 4, 6];
  const x = randomArray(n * c * h * w);
  // keep ReLU inputs away from the kink, where finite differences are not the derivative
  for (let i = 0; i < x.length; i++) if (Math.abs(x[i]) < 0.05) x[i] = 0.1;
  const relu = new ReLU(), pool = new AvgPool2x2(), gap = new GlobalAvgPool();
  const run = () => gap.forward(pool.forward(relu.forward(x), n, c, h, w), n, c, (h * w) / 4);
  const r = randomArray(n * c);
  run();
  const dx = relu.backward(pool.backward(gap.backward(r)));
  checkGradient("relu/avgpool/gap dx", x, dx, () => dot(run(), r));
});
