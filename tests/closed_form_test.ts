/**
 * Outputs known in closed form, on every backend: inputs built so that the statistics are exact
 * (alternating +-1: every mean 0, every unbiased variance a simple fraction), so that one named
 * formula decides each case. Each test stands for a fault that random agreement tests catch only
 * by chance: eps outside the square root, a normalize pass that stops short of the tensor's last
 * elements, a softmax that overflows on large logits.
 */
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { Y } from "./_tolerances.ts";
import { seededRandom as rng } from "../examples/_data.ts";

/** x [N, C, M] with x[n, c, i] = (-1)^i: every row has mean 0 and unbiased variance M/(M-1). */
function alternatingRows(n: number, c: number, m: number): Float32Array {
  return Float32Array.from({ length: n * c * m }, (_, j) => (j % m) % 2 ? -1 : 1);
}

/** x [N, C] with x[n, c] = (-1)^(n+c): means 0, variance C/(C-1) per sample, N/(N-1) per channel. */
function checkerboard(n: number, c: number): Float32Array {
  return Float32Array.from({ length: n * c }, (_, j) => (Math.floor(j / c) + j % c) % 2 ? -1 : 1);
}

await testEachBackend(
  "eps is added to the variance under the square root: y = x / sqrt(var + eps)",
  async (backend) => {
    // eps = 1 beside a variance of 2 (M = 2) or 1.2 (M = 6): sqrt(var + eps) and sqrt(var) + eps
    // differ by 30% or more, and so would eps dropped or added twice.
    for (const m of [2, 6]) {
      const sn = new SwitchNorm2d(3, { backend, eps: 1 });
      const x = alternatingRows(2, 3, m);
      const y = await sn.forward(x, [2, 3, 1, m]);
      const scale = 1 / Math.sqrt(m / (m - 1) + 1);
      assertClose(y, Array.from(x, (v) => v * scale), Y, `SwitchNorm2d [2, 3, 1, ${m}], eps = 1`);
      sn.dispose();
    }
    // 1d: LN over C = 2 has variance 2, BN over N = 4 has 4/3; the default logits mix them 1:1.
    const sn = new SwitchNorm1d(2, { backend, eps: 1 });
    const x = checkerboard(4, 2);
    const scale = 1 / Math.sqrt(0.5 * 2 + 0.5 * (4 / 3) + 1);
    assertClose(
      await sn.forward(x, [4, 2]),
      Array.from(x, (v) => v * scale),
      Y,
      "SwitchNorm1d [4, 2], eps = 1",
    );
    sn.dispose();
  },
);

await testEachBackend(
  "every element is normalized up to the last, when the tensor ends in a partial workgroup",
  async (backend) => {
    // WebGPU normalizes one vec4 per thread in workgroups of 256 threads (1024 elements): these
    // sizes leave 223, 1 and 103 vec4s (2d) and 221 (1d) to a last, partial workgroup, which a
    // count of workgroups rounded down would leave unwritten.
    for (const [n, c, m] of [[2, 3, 1002], [1, 1, 1026], [5, 41, 2]]) {
      const sn = new SwitchNorm2d(c, { backend });
      const x = alternatingRows(n, c, m);
      const y = await sn.forward(x, [n, c, 1, m]);
      const scale = 1 / Math.sqrt(m / (m - 1) + sn.eps);
      assertClose(y, Array.from(x, (v) => v * scale), Y, `SwitchNorm2d [${n}, ${c}, 1, ${m}]`);
      sn.dispose();
    }
    for (const [n, c] of [[2, 3002], [3002, 2]]) {
      const sn = new SwitchNorm1d(c, { backend });
      const x = checkerboard(n, c);
      const scale = 1 / Math.sqrt(0.5 * c / (c - 1) + 0.5 * n / (n - 1) + sn.eps);
      assertClose(
        await sn.forward(x, [n, c]),
        Array.from(x, (v) => v * scale),
        Y,
        `1d [${n}, ${c}]`,
      );
      sn.dispose();
    }
  },
);

/**
 * y of SwitchNorm2d when the mixing is one-hot: means of IN (row), variances of LN (sample),
 * computed in float64 from the spec's formulas (var_ln = mean_c (var_in + mu_in^2) - mu_ln^2).
 */
function inMeanLnVar(x: Float32Array, n: number, c: number, m: number, eps: number): number[] {
  const mu = new Float64Array(n * c), second = new Float64Array(n * c);
  for (let r = 0; r < n * c; r++) {
    const row = x.subarray(r * m, (r + 1) * m);
    mu[r] = row.reduce((a, v) => a + v, 0) / m;
    const varIn = row.reduce((a, v) => a + (v - mu[r]) ** 2, 0) / (m - 1);
    second[r] = varIn + mu[r] ** 2;
  }
  const y: number[] = [];
  for (let s = 0; s < n; s++) {
    let muLn = 0, secondLn = 0;
    for (let ch = 0; ch < c; ch++) muLn += mu[s * c + ch] / c, secondLn += second[s * c + ch] / c;
    const scale = 1 / Math.sqrt(secondLn - muLn * muLn + eps);
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < m; i++) y.push((x[(s * c + ch) * m + i] - mu[s * c + ch]) * scale);
    }
  }
  return y;
}

await testEachBackend(
  "importance logits in the hundreds mix one normalizer, not NaN (softmax subtracts the max)",
  async (backend) => {
    // softmax([800, 0, 0]) is [1, 0, 0] in float64; without subtracting the largest logit first,
    // exp(800) = Infinity and every weight, so every output, is NaN.
    const [n, c, m] = [2, 3, 5];
    const r = rng(31);
    const x = Float32Array.from({ length: n * c * m }, () => 3 * r() - 1);
    for (const big of [800, 1e4]) {
      const sn = new SwitchNorm2d(c, { backend });
      sn.loadStateDict({ ...sn.stateDict(), mean_weight: [big, 0, 0], var_weight: [0, big, -big] });
      const y = await sn.forward(x, [n, c, 1, m]);
      assertClose(y, inMeanLnVar(x, n, c, m, sn.eps), Y, `logits ${big}: IN means, LN variances`);
      sn.dispose();
    }
  },
);
