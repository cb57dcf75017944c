/**
 * The reference backward pass against float64 central finite differences of its own forward on
 * tiny shapes: an oracle that depends on nothing but the forward's definition.
 */
import { backward64, forward64, type Params64 } from "../backends/reference.ts";
import type { NormProblem } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";

function rng(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

/** loss(x, params) = sum(y * dy), in float64. */
function loss(problem: NormProblem, x: Float64Array, p: Params64, dy: Float64Array): number {
  const { y } = forward64(problem, x, p);
  return y.reduce((acc, v, i) => acc + v * dy[i], 0);
}

/** Central difference of `f` with respect to entry i of `a`. */
function diff(a: Float64Array, i: number, f: () => number, h = 1e-6): number {
  const keep = a[i];
  a[i] = keep + h;
  const up = f();
  a[i] = keep - h;
  const down = f();
  a[i] = keep;
  return (up - down) / (2 * h);
}

// Central differences of a smooth function with h = 1e-6 are accurate to ~h^2 * f''' plus
// ~1e-16 / h rounding: about 1e-9 relative here.
const FD = { atol: 1e-7, rtol: 1e-6, why: "float64 central differences, h = 1e-6" };

const cases: [string, NormProblem][] = [];
for (const training of [true, false]) {
  for (const usingBN of [true, false]) {
    cases.push([
      `nd ${training ? "train" : "eval"}${usingBN ? "" : " without BN"}`,
      { layout: "nd", n: 3, c: 2, m: 5, training, usingBN, eps: 1e-3 },
    ]);
  }
  cases.push([
    `1d ${training ? "train" : "eval"}`,
    { layout: "1d", n: 4, c: 3, m: 1, training, usingBN: true, eps: 1e-3 },
  ]);
}

for (const [name, problem] of cases) {
  Deno.test(`reference backward equals finite differences of the forward (${name})`, () => {
    const r = rng(7), { n, c, m } = problem;
    const k = problem.layout === "1d" ? 2 : problem.usingBN ? 3 : 2;
    const mix = (len: number) => {
      const e = Array.from({ length: len }, () => Math.exp(r()));
      const sum = e.reduce((a, b) => a + b);
      return Float64Array.from(e, (v) => v / sum);
    };
    const x = Float64Array.from({ length: n * c * m }, () => 2 * r() + 0.5);
    const dy = Float64Array.from({ length: x.length }, r);
    const p = {
      weight: Float64Array.from({ length: c }, () => 1 + 0.5 * r()),
      bias: Float64Array.from({ length: c }, r),
      meanMix: mix(k),
      varMix: mix(k),
      runningMean: Float64Array.from({ length: c }, r),
      runningVar: Float64Array.from({ length: c }, () => 1 + 0.5 * r()),
    };
    const g = backward64(problem, x, dy, p);
    const f = () => loss(problem, x, p, dy);
    const numeric = (a: Float64Array) => Float64Array.from(a, (_, i) => diff(a, i, f));
    assertClose(g.dx, numeric(x), FD, "dx");
    assertClose(g.dWeight, numeric(p.weight), FD, "dweight");
    assertClose(g.dBias, numeric(p.bias), FD, "dbias");
    // b_k = dL/dvarMix_k, the mixing weights taken as free variables.
    assertClose(g.varDots, numeric(p.varMix), FD, "dL/dvarMix");
    // a_k = dL/dmeanMix_k up to a common part: the forward forms the mixed mean about its heaviest
    // term, mu_a + sum_{k != a} w_k (mu_k - mu_a), which equals sum_k w_k mu_k on the simplex the
    // weights live on (softmax's, sparsestmax's) but not off it, so the weights are moved along
    // it: a_k - a_0 is the derivative along e_k - e_0 (every map's Jacobian takes a vector of ones
    // to 0, so the layer sees the differences alone).
    const along = (k: number) => {
      const keep = Float64Array.from(p.meanMix), h = 1e-6;
      const at = (t: number) => {
        p.meanMix.set(keep);
        p.meanMix[k] += t;
        p.meanMix[0] -= t;
        return f();
      };
      const slope = (at(h) - at(-h)) / (2 * h);
      p.meanMix.set(keep);
      return slope;
    };
    const dots = Float64Array.from({ length: k - 1 }, (_, j) => g.meanDots[j + 1] - g.meanDots[0]);
    const slopes = Float64Array.from({ length: k - 1 }, (_, j) => along(j + 1));
    assertClose(dots, slopes, FD, "dL/dmeanMix_k - dL/dmeanMix_0");
  });
}
