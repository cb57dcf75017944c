/**
 * Calls whose mixed variance a variance weight below float32's normal range (logits ~100 or more
 * apart) takes below that range under eps 0 (issue 10; NUMERICS.md, "Tiny and zero mixing
 * weights"): `grid` runs SwitchNorm2d [4, 3, 1, 5] on constant samples and constant rows under
 * three variance mixings for each of logits 100, 115, 140 and 174 apart, in training and in
 * evaluation (48 calls); `sweep` draws layouts "1d", "2d" and "3d", shapes up to [4, 3, 1, 9000],
 * usingBN, such logits, constant, near-constant and random data at scales 1e-10 to 1e10, per seed.
 * Prints each call that fails the range checks (tests/_range_compare.ts) and the count. Not a
 * test (no assertion, not run by `deno task test`): tests/tiny_variance_mix_test.ts holds the
 * cases it found.
 *
 *   deno run -A tests/fuzz/tiny_variance_fuzz.ts grid [webgpu|wasm]
 *   deno run -A tests/fuzz/tiny_variance_fuzz.ts sweep [webgpu|wasm] [FIRST LAST]
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, runBoth } from "../_range_compare.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The grid's calls, each with a label. */
export function grid(): [string, LayerCall][] {
  const calls: [string, LayerCall][] = [];
  const [n, c, m] = [4, 3, 5];
  for (const lg of [-100, -115, -140, -174]) {
    for (const training of [true, false]) {
      for (const pattern of ["sample", "row"] as const) {
        for (const vw of [[0, 0.5, lg], [lg, lg + 1, 0], [0, lg, lg]]) {
          const x = Float32Array.from(
            { length: n * c * m },
            (_, i) =>
              pattern === "sample"
                ? [0.5, -1.25, 2, 0.75][Math.floor(i / (c * m))]
                : Math.fround(Math.sin(Math.floor(i / m)) * 2),
          );
          calls.push([`${pattern} ${training ? "train" : "eval"} var_weight [${vw}]`, {
            layer: "2d",
            shape: [n, c, 1, m],
            options: { eps: 0 },
            state: {
              mean_weight: new Float32Array([0.2, -0.1, 0.3]),
              var_weight: new Float32Array(vw),
              running_var: new Float32Array([1e-20, 3e-30, 1]),
              running_mean: new Float32Array([0.1, 0.2, 0.3]),
            },
            partial: true,
            training,
            x,
            dy: Float32Array.from({ length: x.length }, (_, i) => Math.sin(i + 1)),
            scales: true,
          }]);
        }
      }
    }
  }
  return calls;
}

/** The sweep's call of `seed`. */
export function sweep(seed: number): [string, LayerCall] {
  const r = seededRandom(seed * 7 + 3);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
  const layer = pick(["2d", "3d", "1d"] as const);
  const n = pick([1, 2, 4]), c = pick([1, 2, 3]);
  let m = layer === "1d" ? 1 : pick([1, 5, 64, 3000, 9000]);
  if (layer === "3d" && m % 2) m += 1;
  const shape = layer === "1d" ? [n, c] : layer === "2d" ? [n, c, 1, m] : [n, c, 2, 1, m / 2];
  const usingBN = r() < 0.8;
  const k = layer === "1d" ? 2 : usingBN ? 3 : 2;
  const lg = pick([-100, -110, -130, -170]);
  const vw = Array.from({ length: k }, () => pick([0, lg, lg + 3]));
  const pattern = pick(["sample", "row", "tiny", "rand"]);
  const sc = pick([1, 1e-10, 1e10]);
  const len = n * c * m;
  const x = Float32Array.from(
    { length: len },
    (_, i) =>
      pattern === "sample"
        ? sc * [0.5, -1.25, 2, 0.75][Math.floor(i / (c * m))]
        : pattern === "row"
        ? Math.fround(sc * Math.sin(Math.floor(i / m) + 1) * 2)
        : pattern === "tiny"
        ? Math.fround(sc * (1 + 1e-6 * Math.sin(i)))
        : Math.fround(sc * (r() * 2 - 1)),
  );
  const training = r() < 0.5;
  const running: Record<string, Float32Array> = usingBN || layer === "1d"
    ? {
      running_var: Float32Array.from({ length: c }, () => pick([1e-20, 3e-30, 1, 0])),
      running_mean: Float32Array.from({ length: c }, () => r()),
    }
    : {};
  return [`${seed} ${layer} [${shape}] ${pattern} ${training ? "train" : "eval"} [${vw}]`, {
    layer,
    shape,
    options: layer === "1d" ? { eps: 0 } : { eps: 0, usingBN },
    state: {
      mean_weight: Float32Array.from({ length: k }, () => r() - 0.5),
      var_weight: Float32Array.from(vw),
      ...running,
    },
    partial: true,
    training,
    x,
    dy: Float32Array.from({ length: len }, (_, i) => Math.sin(i * 0.7 + seed)),
    scales: true,
  }];
}

if (import.meta.main) {
  const [mode = "grid", backend = "webgpu", first = "1", last = "60"] = Deno.args;
  const calls = mode === "grid"
    ? grid()
    : Array.from({ length: +last - +first + 1 }, (_, i) => sweep(+first + i));
  let fails = 0;
  for (const [label, call] of calls) {
    const { got, want } = await runBoth(call, backend as "webgpu" | "wasm");
    try {
      assertRangeChecks(call, got, want);
    } catch (e) {
      fails++;
      console.log(label, String((e as Error).message).replaceAll("\n", " | ").slice(0, 300));
    }
  }
  console.log(`${fails} of ${calls.length} calls fail on ${backend}`);
}
