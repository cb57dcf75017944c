/**
 * The WASM backend against the float64 reference backend (backends/reference.ts) on random
 * problems, forward and backward, its NaN/Inf behaviour, resident tensors, `out`, SyncSN's await
 * gaps, and its memory management. Most run the backend directly (one module instance per test
 * that measures memory), so they need neither the layer nor the shared PyTorch vectors; a few
 * check the layer's side (interleaved layers, refusing a backward).
 */
import assert from "node:assert/strict";
import type {
  BackwardResult,
  BatchSync,
  LayerParams,
  NormProblem,
  RunningUpdate,
  SavedForward,
} from "../backends/_backend.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import {
  loadWasmBackend,
  type WasmBackend,
  wasmSimdSupported,
  WasmTensor,
} from "../backends/wasm.ts";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { assertClose, assertSameValues, type Tolerance } from "./_close.ts";
import { STRICT } from "./_backends.ts";
import { seededRandom as rng } from "../examples/_data.ts";

/**
 * y of the WASM backend against the reference's float64 y (rounded once to float32). With the
 * random parameters below |y| is at most ~10 and typically ~1. The WASM kernel keeps every
 * statistic in f64 except the in-chunk sums, which are f32 sums of deviations from a shift within
 * ~1.7 standard deviations of the mean (64 terms per lane): relative error ~1e-7 typical, ~1e-6
 * at worst, reaching y as |xhat| times that. The normalize sweep rounds scale and bias to f32 and
 * does three f32 operations: a few ulps of |xhat * gamma| + |beta|. The mean is a hi/lo float
 * pair, so the 1e4 offsets cost nothing extra. Observed over ~400 random problems of every kind
 * here: at most 7e-7 absolute, 0.2 of this tolerance; 2e-6 leaves room for other inputs without
 * hiding a real error (a wrong formula, a dropped tail element or a lost offset digit is off by
 * 1e-3 or more).
 */
const Y: Tolerance = {
  atol: 2e-6,
  rtol: 2e-6,
  why: "f32 chunk sums around a near-mean shift and an f32 normalize sweep: a few ulps of |y|",
};

/**
 * Running buffers after training forwards: float32 arrays updated by the same TypeScript
 * (applyRunningUpdate) from batch statistics that differ from the reference's by ~1e-8 relative,
 * so they agree to float32 rounding (observed worst: 0.05 of this bound); |running_mean| reaches
 * 3e4 with the offsets, hence a relative bound with a small absolute floor.
 */
const RUNNING: Tolerance = {
  atol: 1e-6,
  rtol: 1e-6,
  why: "float32 buffers fed by batch statistics accurate to ~1e-8 relative",
};

const ignore = !wasmSimdSupported();
if (ignore && STRICT) {
  throw new Error("WebAssembly SIMD is missing, and CI must run the WASM tests");
}

function softmax(logits: number[]): Float64Array {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return Float64Array.from(e, (v) => v / sum);
}

interface Case {
  problem: NormProblem;
  x: Float32Array;
  /** Fresh copies per call: backends update the running buffers in place. */
  params(): LayerParams;
}

/** A random problem; `offset` adds a large mean (per channel, with sign) to x. */
function randomCase(
  seed: number,
  layout: "1d" | "nd",
  [n, c, m]: [number, number, number],
  training: boolean,
  usingBN: boolean,
  offset = 0,
): Case {
  const r = rng(seed);
  const k = layout === "nd" && usingBN ? 3 : 2;
  const x = new Float32Array(n * c * m);
  for (let i = 0; i < x.length; i++) {
    const ch = Math.floor(i / m) % c;
    const sign = ch % 2 ? -1 : 1;
    x[i] = sign * offset * (1 + ch / 10) + (r() - 0.5) * 4 + (ch % 3);
  }
  const weight = Float32Array.from({ length: c }, () => 0.5 + r());
  const bias = Float32Array.from({ length: c }, () => r() - 0.5);
  const meanMix = softmax(Array.from({ length: k }, () => r() * 2 - 1));
  const varMix = softmax(Array.from({ length: k }, () => r() * 2 - 1));
  const bn = layout === "1d" || usingBN;
  const runningMean = Float32Array.from({ length: bn ? c : 0 }, () => offset + r() - 0.5);
  const runningVar = Float32Array.from({ length: bn ? c : 0 }, () => 0.5 + r() * 2);
  return {
    problem: { layout, n, c, m, training, usingBN: bn, eps: 1e-5 },
    x,
    params: () => ({
      layerId: 1,
      weight,
      bias,
      meanMix,
      varMix,
      runningMean: runningMean.slice(),
      runningVar: runningVar.slice(),
      version: 0,
    }),
  };
}

const MOVING: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
const reference = new ReferenceBackend();

/** Runs `c` on both backends and compares y and the running buffers. */
async function agree(wasm: WasmBackend, c: Case, what: string, update = MOVING): Promise<void> {
  const pw = c.params(), pr = c.params();
  const yw = await wasm.forward(c.problem, c.x, pw, update) as Float32Array;
  const yr = await reference.forward(c.problem, c.x, pr, update);
  assertClose(yw, yr, Y, `${what}: y`);
  assertClose(pw.runningMean, pr.runningMean, RUNNING, `${what}: running_mean`);
  assertClose(pw.runningVar, pr.runningVar, RUNNING, `${what}: running_var`);
}

const wasm = ignore ? undefined! : await loadWasmBackend();

Deno.test({
  name: "WASM SIMD is detected here, and the backend loads from the embedded module",
  ignore,
  fn() {
    assert.equal(wasmSimdSupported(), true);
    assert.equal(wasm.name, "wasm");
  },
});

Deno.test({
  name: "WASM matches the reference on random nd problems, M = 1..40, train and eval, BN on/off",
  ignore,
  async fn() {
    let seed = 1;
    for (let m = 1; m <= 40; m++) {
      for (const [n, c] of [[1, 3], [2, 1], [3, 5]] as const) {
        for (const training of [true, false]) {
          for (const usingBN of [true, false]) {
            const what = `nd [${n},${c},${m}] training=${training} usingBN=${usingBN}`;
            await agree(wasm, randomCase(seed++, "nd", [n, c, m], training, usingBN), what);
          }
        }
      }
    }
  },
});

Deno.test({
  name: "WASM matches the reference on long rows that span several chunks and odd tails",
  ignore,
  async fn() {
    let seed = 100;
    for (const m of [1023, 1024, 1025, 3136, 4099]) {
      for (const training of [true, false]) {
        const what = `nd [2,3,${m}] training=${training}`;
        await agree(wasm, randomCase(seed++, "nd", [2, 3, m], training, true), what);
      }
    }
  },
});

Deno.test({
  name:
    "WASM Float32Array forward staged in several chunks equals the resident forward bit for bit",
  ignore,
  async fn() {
    // Chunks are >= 512 KiB of whole rows: these span 2-3 chunks with a shorter last one, for
    // short rows (the per-row fast path) and long ones, with and without large offsets.
    const shapes: [number, number, number][] = [[40, 70, 49], [4, 9, 9000], [3, 7, 5003]];
    let seed = 150;
    for (const shape of shapes) {
      for (const offset of [0, 1e4]) {
        for (const training of [true, false]) {
          const c = randomCase(seed++, "nd", shape, training, true, offset);
          const what = `nd [${shape}] offset=${offset} training=${training}`;
          const pf = c.params(), pt = c.params();
          const out = new Float32Array(c.x.length);
          const yf = await wasm.forward(c.problem, c.x, pf, MOVING, out);
          assert.equal(yf, out, `${what}: returns out`);
          const xt = wasm.upload(c.x, [c.x.length]);
          const yt = await wasm.forward(c.problem, xt, pt, MOVING) as WasmTensor;
          assertSameValues(out, await yt.read(), `${what}: y`);
          assertSameValues(pf.runningMean, pt.runningMean, `${what}: running_mean`);
          assertSameValues(pf.runningVar, pt.runningVar, `${what}: running_var`);
          xt.dispose();
          yt.dispose();
          await agree(wasm, c, what);
        }
      }
    }
  },
});

Deno.test({
  name: "WASM matches the reference on random 1d problems, including N = 1, C = 1 and long blocks",
  ignore,
  async fn() {
    let seed = 200;
    const shapes: [number, number][] = [
      [1, 5],
      [5, 1],
      [2, 2],
      [7, 3],
      [16, 37],
      [300, 5],
      [33, 1000],
      [3, 20000],
    ];
    for (const [n, c] of shapes) {
      for (const training of [true, false]) {
        const what = `1d [${n},${c}] training=${training}`;
        await agree(wasm, randomCase(seed++, "1d", [n, c, 1], training, true), what);
      }
    }
  },
});

Deno.test({
  name: "WASM keeps full accuracy with mean offsets of 1e4 and unit spread",
  ignore,
  async fn() {
    let seed = 300;
    for (const offset of [1e4, -3e4]) {
      for (
        const [layout, shape] of [["nd", [2, 4, 49]], ["nd", [3, 2, 1500]], ["1d", [
          64,
          6,
          1,
        ]]] as const
      ) {
        for (const training of [true, false]) {
          const c = randomCase(seed++, layout, [...shape], training, true, offset);
          await agree(wasm, c, `${layout} [${shape}] offset ${offset} training=${training}`);
        }
      }
    }
  },
});

Deno.test({
  name:
    "WASM folds batch statistics into the running buffers like the reference, both update kinds",
  ignore,
  async fn() {
    for (const update of [MOVING, { kind: "batchAverage" } as const]) {
      for (const layout of ["nd", "1d"] as const) {
        const shape: [number, number, number] = layout === "nd" ? [4, 3, 10] : [9, 4, 1];
        const c = randomCase(400, layout, shape, true, true, 5);
        const pw = c.params(), pr = c.params();
        for (let step = 0; step < 3; step++) {
          await wasm.forward(c.problem, c.x, pw, update);
          await reference.forward(c.problem, c.x, pr, update);
        }
        assertClose(pw.runningMean, pr.runningMean, RUNNING, `${layout} ${update.kind}: mean`);
        assertClose(pw.runningVar, pr.runningVar, RUNNING, `${layout} ${update.kind}: var`);
      }
    }
  },
});

Deno.test({
  name: "WASM leaves the running buffers alone in evaluation mode",
  ignore,
  async fn() {
    const c = randomCase(500, "nd", [2, 3, 7], false, true);
    const p = c.params();
    const before = [p.runningMean.slice(), p.runningVar.slice()];
    await wasm.forward(c.problem, c.x, p, MOVING);
    assertSameValues(p.runningMean, before[0], "running_mean");
    assertSameValues(p.runningVar, before[1], "running_var");
  },
});

Deno.test({
  name: "WASM puts NaN and Inf exactly where the reference does",
  ignore,
  async fn() {
    const specials = [NaN, Infinity, -Infinity, 3e38, -3e38];
    let seed = 600;
    for (
      const [layout, shape] of [["nd", [2, 3, 9]], ["nd", [2, 2, 1100]], ["1d", [6, 5, 1]]] as const
    ) {
      for (const training of [true, false]) {
        for (const special of specials) {
          const c = randomCase(seed++, layout, [...shape], training, true);
          // One special value in one row; a second in another row for the 1d/BN paths.
          c.x[3] = special;
          c.x[c.x.length - 2] = special;
          const pw = c.params(), pr = c.params();
          const yw = await wasm.forward(c.problem, c.x, pw, MOVING) as Float32Array;
          const yr = await reference.forward(c.problem, c.x, pr, MOVING);
          const what = `${layout} [${shape}] training=${training} with ${special}`;
          for (let i = 0; i < yr.length; i++) {
            assert.equal(Number.isNaN(yw[i]), Number.isNaN(yr[i]), `${what}: NaN at [${i}]`);
            if (!Number.isFinite(yr[i])) assert.equal(yw[i], yr[i], `${what}: Inf at [${i}]`);
          }
          assertClose(yw, yr, Y, `${what}: y`);
          assertClose(pw.runningMean, pr.runningMean, RUNNING, `${what}: running_mean`);
        }
      }
    }
  },
});

Deno.test({
  name: "WASM gives NaN for the single-element variance (M = 1, N = 1 in 1d BN, C = 1 in 1d LN)",
  ignore,
  async fn() {
    for (
      const [layout, shape] of [["nd", [2, 3, 1]], ["1d", [1, 4, 1]], ["1d", [4, 1, 1]]] as const
    ) {
      const c = randomCase(700, layout, [...shape], true, true);
      const y = await wasm.forward(c.problem, c.x, c.params(), MOVING) as Float32Array;
      assert.ok(y.every(Number.isNaN), `${layout} [${shape}]: expected all NaN, got ${y}`);
    }
  },
});

Deno.test({
  name: "resident tensors chain through two layers and give the Float32Array path's numbers",
  ignore,
  async fn() {
    const shape = [3, 4, 5, 7];
    const x = Float32Array.from({ length: 420 }, (_, i) => Math.sin(i * 0.37) * 3 + (i % 5));
    const make = () => [
      new SwitchNorm2d(4, { backend: "wasm" }),
      new SwitchNorm2d(4, { backend: "wasm", usingBN: false }),
    ];
    const [a1, b1] = make(), [a2, b2] = make();
    const viaArrays = await b1.forward(await a1.forward(x, shape), shape);

    using t = await a2.upload(x, shape);
    using u = await a2.forward(t);
    using v = await b2.forward(u);
    assert.ok(v instanceof WasmTensor && v !== u && u !== t);
    assert.deepEqual(v.shape, shape);
    assertSameValues(await v.read(), viaArrays, "read()");
    assertSameValues(v.data, viaArrays, "data");
    assertSameValues(a2.running_mean, a1.running_mean, "running_mean");
    assertSameValues(a2.running_var, a1.running_var, "running_var");
  },
});

Deno.test({
  name: "out receives y on both paths, and a resident tensor can be normalized in place",
  ignore,
  async fn() {
    const c = randomCase(800, "nd", [2, 3, 11], true, true);
    const plain = await wasm.forward(c.problem, c.x, c.params(), MOVING) as Float32Array;

    const out = new Float32Array(c.x.length).fill(7);
    assert.equal(await wasm.forward(c.problem, c.x, c.params(), MOVING, out), out);
    assertSameValues(out, plain, "out");

    using t = wasm.upload(c.x, [2, 3, 11]);
    using o = wasm.upload(new Float32Array(c.x.length), [2, 3, 11]);
    assert.equal(await wasm.forward(c.problem, t, c.params(), MOVING, o), o);
    assertSameValues(o.data, plain, "resident out");
    assert.equal(await wasm.forward(c.problem, t, c.params(), MOVING, t), t);
    assertSameValues(t.data, plain, "in place");

    await assert.rejects(
      () => wasm.forward(c.problem, c.x, c.params(), MOVING, o),
      /out must be a Float32Array/,
    );
    await assert.rejects(
      () => wasm.forward(c.problem, t, c.params(), MOVING, new Float32Array(66)),
      /out must be a live tensor/,
    );
  },
});

Deno.test({
  name: "disposing a WasmTensor frees its memory for the next tensor, and it cannot be used after",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const used = b.usedBytes;
    const t = b.upload(new Float32Array(1000).fill(1), [10, 100]);
    const at = t.byteOffset;
    assert.ok(b.usedBytes >= used + 4000);
    t.dispose();
    t.dispose(); // idempotent
    assert.equal(b.usedBytes, used);
    assert.throws(() => t.data, /disposed/);
    const problem: NormProblem = {
      layout: "nd",
      n: 10,
      c: 100,
      m: 1,
      training: false,
      usingBN: false,
      eps: 1e-5,
    };
    await assert.rejects(
      () => b.forward(problem, t, randomCase(1, "nd", [10, 100, 1], false, false).params(), MOVING),
      /live tensor/,
    );
    using u = b.upload(new Float32Array(1000), [10, 100]);
    assert.equal(u.byteOffset, at);
  },
});

Deno.test({
  name: "a tensor's data view survives memory growth, and an old view detaches or stays valid",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    using t = b.upload(Float32Array.from({ length: 64 }, (_, i) => i), [8, 8]);
    const before = t.data;
    const bytes = b.memoryBytes;
    using big = b.upload(new Float32Array(bytes), [1, bytes]); // forces the memory to grow
    assert.ok(b.memoryBytes > bytes && big.length === bytes);
    // A private memory detaches its old buffer; a shared one (the threads build) never does, and
    // the old view keeps showing the same bytes.
    if (before.buffer instanceof SharedArrayBuffer) {
      assertSameValues(before, Float32Array.from({ length: 64 }, (_, i) => i), "old shared view");
    } else assert.equal(before.length, 0, "the old view is detached by the growth");
    assertSameValues(t.data, Float32Array.from({ length: 64 }, (_, i) => i), "data after growth");
    assertSameValues(await t.read(), t.data, "read() after growth");
  },
});

Deno.test({
  name: "10,000 forwards of varying small shapes keep the memory size at its first-pass size",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const cases = [
      randomCase(1, "nd", [2, 3, 17], true, true),
      randomCase(2, "nd", [1, 8, 64], true, false),
      randomCase(3, "nd", [5, 2, 300], false, true),
      randomCase(4, "1d", [33, 12, 1], true, true),
      randomCase(5, "nd", [4, 16, 49], true, true),
      randomCase(6, "1d", [2, 500, 1], false, true),
      randomCase(7, "nd", [3, 1, 1], true, true),
    ];
    const params = cases.map((c) => c.params());
    const run = async (i: number) => {
      const c = cases[i % cases.length], p = params[i % cases.length];
      if (i % 3 === 0) {
        // Resident: upload, forward into a new tensor, free both.
        using t = b.upload(c.x, [c.x.length]);
        using y = await b.forward(c.problem, t, p, MOVING) as WasmTensor;
        assert.equal(y.length, c.x.length);
      } else {
        const y = await b.forward(c.problem, c.x, p, MOVING) as Float32Array;
        assert.equal(y.length, c.x.length);
      }
    };
    for (let i = 0; i < 3 * cases.length; i++) await run(i);
    const size = b.memoryBytes, used = b.usedBytes;
    for (let i = 0; i < 10_000; i++) await run(i);
    assert.equal(b.memoryBytes, size);
    assert.equal(b.usedBytes, used);
  },
});

Deno.test({
  name: "upload rejects a shape that does not match the data, and a used-up backend refuses work",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    assert.throws(() => b.upload(new Float32Array(6), [4, 2]), /does not describe 6 elements/);
    b.dispose();
    assert.throws(() => b.upload(new Float32Array(6), [2, 3]), /after dispose/);
  },
});

/**
 * dx of the WASM backward against the reference's float64 one. The reduction sums dy and
 * dy (x - f32 mean) per row in f32 within chunks of 256 floats (16 terms per partial sum) and
 * adds the chunks in f64; everything O(N*C) is f64, and the dx sweep is three f32 multiply-adds
 * from per-row constants rounded to f32, so dx is good to a few f32 ulps. Observed at most 0.02
 * of this bound on the problems below.
 */
const DX: Tolerance = {
  atol: 1e-5,
  rtol: 1e-5,
  why: "f32 dx sweep from f64 per-row constants: a few ulps of |dx|",
};

/**
 * The parameter gradients and the logit dot products: sums over N*M terms of those f32 chunk
 * sums, whose rounding (~1e-8 of the sum of |terms|, and not always unbiased) reaches a few 1e-5
 * absolute on rows of 3000 floats with terms up to ~10 (dBias is sum dy itself). Observed at
 * most 0.17 of this bound. GRAD (1e-4, the shared table's) would pass too, but would hide an f32
 * accumulation over whole rows.
 */
const SUMS: Tolerance = {
  atol: 5e-5,
  rtol: 5e-5,
  why: "sums over N*M of f32 chunk sums of 256 floats, added in f64",
};

/** Training forward (with save) then backward on both backends; compares every result. */
async function agreeBackward(wasm: WasmBackend, c: Case, dy: Float32Array, what: string) {
  const pw = c.params(), pr = c.params();
  const sw: SavedForward = {}, sr: SavedForward = {};
  await wasm.forward(c.problem, c.x, pw, MOVING, undefined, sw);
  await reference.forward(c.problem, c.x, pr, MOVING, undefined, sr);
  const gw = await wasm.backward(sw, dy, pw), gr = await reference.backward(sr, dy, pr);
  assertGradsClose(gw, gr, what);
}

function assertGradsClose(gw: BackwardResult, gr: BackwardResult, what: string): void {
  assert.ok(gw.dx instanceof Float32Array, `${what}: dx is a Float32Array`);
  assertClose(gw.dx, gr.dx as Float32Array, DX, `${what}: dx`);
  assertClose(gw.dWeight, gr.dWeight, SUMS, `${what}: dWeight`);
  assertClose(gw.dBias, gr.dBias, SUMS, `${what}: dBias`);
  assertClose(gw.meanDots, gr.meanDots, SUMS, `${what}: meanDots`);
  assertClose(gw.varDots, gr.varDots, SUMS, `${what}: varDots`);
}

function randomDy(seed: number, length: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length }, () => r() * 2 - 1);
}

Deno.test({
  name: "WASM backward matches the reference on random nd problems, train and eval, BN on/off",
  ignore,
  async fn() {
    let seed = 1000;
    for (const m of [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 49, 1023, 1024, 1025, 3000]) {
      for (const [n, c] of [[1, 3], [2, 1], [3, 5]] as const) {
        for (const training of [true, false]) {
          for (const usingBN of [true, false]) {
            const what = `nd [${n},${c},${m}] training=${training} usingBN=${usingBN}`;
            const k = randomCase(seed++, "nd", [n, c, m], training, usingBN);
            await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
          }
        }
      }
    }
  },
});

Deno.test({
  name: "WASM backward matches the reference on random 1d problems, odd widths included",
  ignore,
  async fn() {
    let seed = 1200;
    for (const [n, c] of [[2, 2], [7, 3], [16, 37], [300, 5], [33, 1000], [3, 2001]]) {
      for (const training of [true, false]) {
        const what = `1d [${n},${c}] training=${training}`;
        const k = randomCase(seed++, "1d", [n, c, 1], training, true);
        await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
      }
    }
  },
});

Deno.test({
  name: "WASM backward keeps full accuracy with mean offsets of 1e4 and unit spread",
  ignore,
  async fn() {
    let seed = 1300;
    for (const offset of [1e4, -3e4]) {
      for (
        const [layout, shape] of [
          ["nd", [2, 4, 49]],
          ["nd", [3, 2, 1500]],
          ["1d", [64, 6, 1]],
        ] as const
      ) {
        for (const training of [true, false]) {
          const k = randomCase(seed++, layout, [...shape], training, true, offset);
          const what = `${layout} [${shape}] offset ${offset} training=${training}`;
          await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
        }
      }
    }
  },
});

Deno.test({
  name: "a backward on resident tensors gives the Float32Array path's numbers, in a new tensor",
  ignore,
  async fn() {
    for (const [layout, shape] of [["nd", [3, 4, 37]], ["1d", [9, 7, 1]]] as const) {
      const k = randomCase(1400, layout, [...shape], true, true);
      const dy = randomDy(1401, k.x.length);
      const plain: SavedForward = {}, resident: SavedForward = {};
      const p1 = k.params(), p2 = { ...k.params(), layerId: 2 };
      await wasm.forward(k.problem, k.x, p1, MOVING, undefined, plain);
      const want = await wasm.backward(plain, dy, p1);

      using xt = wasm.upload(k.x, [k.x.length]);
      using dyt = wasm.upload(dy, [dy.length]);
      using yt = await wasm.forward(k.problem, xt, p2, MOVING, undefined, resident) as WasmTensor;
      const got = await wasm.backward(resident, dyt, p2);
      using dx = got.dx as WasmTensor;
      assert.ok(dx instanceof WasmTensor && dx !== dyt && dx !== xt && dx !== yt);
      assert.deepEqual(dx.shape, xt.shape);
      assertSameValues(dx.data, want.dx as Float32Array, `${layout}: dx`);
      assertSameValues(dyt.data, dy, `${layout}: dy is left alone`);
      assertSameValues(got.dWeight, want.dWeight, `${layout}: dWeight`);
      assertSameValues(got.dBias, want.dBias, `${layout}: dBias`);
      assertSameValues(got.meanDots, want.meanDots, `${layout}: meanDots`);
      assertSameValues(got.varDots, want.varDots, `${layout}: varDots`);
      wasm.releaseLayer(p1);
      wasm.releaseLayer(p2);
    }
  },
});

Deno.test({
  name: "two layers' forwards, then their backwards in reverse order, give the reference's results",
  ignore,
  async fn() {
    const shape = [4, 3, 5, 6], len = 360;
    const r = rng(1500);
    const x = Float32Array.from({ length: len }, () => r() * 4 - 1);
    const dy = Float32Array.from({ length: len }, () => r() * 2 - 1);
    const run = async (backend: "wasm" | "reference") => {
      const a = new SwitchNorm2d(3, { backend });
      const b = new SwitchNorm2d(3, { backend, usingBN: false });
      const y = await a.forward(x, shape);
      const z = await b.forward(y, shape);
      assert.equal(z.length, len);
      const dz = await b.backward(dy);
      const dx = await a.backward(dz);
      const out = { dx, a: structuredClone(a.grads), b: structuredClone(b.grads) };
      a.dispose();
      b.dispose();
      return out;
    };
    const got = await run("wasm"), want = await run("reference");
    assertClose(got.dx, want.dx, DX, "dx");
    for (const layer of ["a", "b"] as const) {
      for (const [name, g] of Object.entries(want[layer])) {
        assertClose(got[layer][name as "weight"], g, SUMS, `layer ${layer}: grad of ${name}`);
      }
    }
  },
});

Deno.test({
  name: "a backward after an evaluation forward that kept nothing is refused",
  ignore,
  async fn() {
    const sn = new SwitchNorm1d(3, { backend: "wasm" });
    const x = Float32Array.from([1, 2, 4, 3, 0, 1]);
    await sn.forward(x, [2, 3]);
    await sn.backward(new Float32Array(6)); // training keeps what backward needs
    sn.eval();
    await sn.forward(x, [2, 3]);
    await assert.rejects(() => sn.backward(new Float32Array(6)), /no forward to differentiate/);
    await sn.forward(x, [2, 3], { keepForBackward: true });
    const dx = await sn.backward(new Float32Array(6).fill(1));
    assert.equal(dx.length, 6);
    sn.dispose();
  },
});

Deno.test({
  name:
    "the backend's backward refuses the wrong kind of dy and statistics a later forward replaced",
  ignore,
  async fn() {
    const k = randomCase(1600, "nd", [2, 3, 5], true, true);
    const p = { ...k.params(), layerId: 3 };
    const saved: SavedForward = {};
    await wasm.forward(k.problem, k.x, p, MOVING, undefined, saved);
    using t = wasm.upload(new Float32Array(30), [30]);
    await assert.rejects(() => wasm.backward(saved, t, p), /dy must be a Float32Array of 30/);
    await assert.rejects(
      () => wasm.backward(saved, new Float32Array(29), p),
      /dy must be a Float32Array of 30/,
    );
    await assert.rejects(
      () => wasm.backward({ problem: k.problem, x: k.x }, new Float32Array(30), p),
      /needs a forward run on the wasm backend/,
    );

    using xt = wasm.upload(k.x, [2, 3, 5]);
    const residentSaved: SavedForward = {};
    using _y = await wasm.forward(k.problem, xt, p, MOVING, undefined, residentSaved) as WasmTensor;
    await assert.rejects(() => wasm.backward(saved, new Float32Array(30), p), /statistics .* gone/);
    await assert.rejects(
      () => wasm.backward(residentSaved, new Float32Array(30), p),
      /dy must be a live tensor/,
    );
    wasm.releaseLayer(p);
    await assert.rejects(() => wasm.backward(residentSaved, t, p), /statistics .* gone/);
  },
});

/** A group of one replica whose operations resolve only after `gap` ran (another layer's call). */
function slowSolo(gap: () => Promise<void>): BatchSync {
  return {
    replicas: 1,
    async mergeStats(count, mean, m2) {
      await gap();
      return { count, mean, m2 };
    },
    async sum(local) {
      await gap();
      return local;
    },
  };
}

Deno.test({
  name: "SyncSN calls survive other layers' calls in their await, on Float32Arrays and tensors",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    for (const [layout, shape] of [["nd", [3, 4, 21]], ["1d", [8, 5, 1]]] as const) {
      for (const resident of [false, true]) {
        const k = randomCase(1700, layout, [...shape], true, true);
        const other = randomCase(1701, layout, [shape[0] + 2, shape[1] + 1, shape[2]], true, true);
        const po = { ...other.params(), layerId: 99 };
        // The interloper uses every shared region (a Float32Array x, larger, so the regions grow
        // and move) and this layer's neighbour's own regions.
        const gap = async () => {
          const s: SavedForward = {};
          await b.forward(other.problem, other.x, po, MOVING, undefined, s);
          await b.backward(s, randomDy(1, other.x.length), po);
        };
        const dy = randomDy(1702, k.x.length);
        const want: SavedForward = {}, pw = k.params();
        const yWant = await b.forward(k.problem, k.x, pw, MOVING, undefined, want) as Float32Array;
        const gWant = await b.backward(want, dy, pw);

        const problem = { ...k.problem, sync: slowSolo(gap) }, ps = { ...k.params(), layerId: 7 };
        const saved: SavedForward = {};
        const what = `${layout} resident=${resident}`;
        if (resident) {
          using xt = b.upload(k.x, [k.x.length]);
          using dyt = b.upload(dy, [dy.length]);
          using y = await b.forward(problem, xt, ps, MOVING, undefined, saved) as WasmTensor;
          assertSameValues(y.data, yWant as Float32Array, `${what}: y`);
          const g = await b.backward(saved, dyt, ps);
          using dx = g.dx as WasmTensor;
          assertSameValues(dx.data, gWant.dx as Float32Array, `${what}: dx`);
          assertSameValues(g.dWeight, gWant.dWeight, `${what}: dWeight`);
        } else {
          const y = await b.forward(problem, k.x, ps, MOVING, undefined, saved);
          assertSameValues(y as Float32Array, yWant as Float32Array, `${what}: y`);
          const g = await b.backward(saved, dy, ps);
          assertSameValues(g.dx as Float32Array, gWant.dx as Float32Array, `${what}: dx`);
          assertSameValues(g.dWeight, gWant.dWeight, `${what}: dWeight`);
        }
        assertSameValues(ps.runningMean, pw.runningMean, `${what}: running_mean`);
        b.releaseLayer(po);
        b.releaseLayer(ps);
        b.releaseLayer(pw);
      }
    }
  },
});

Deno.test({
  name: "1,000 training steps (forward and backward) keep the memory size, and release frees it",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const used = b.usedBytes;
    const cases = [
      randomCase(1, "nd", [2, 3, 17], true, true),
      randomCase(2, "nd", [4, 8, 49], true, false),
      randomCase(3, "1d", [33, 12, 1], true, true),
    ];
    const params = cases.map((c, i) => ({ ...c.params(), layerId: 10 + i }));
    const step = async (i: number) => {
      const c = cases[i % cases.length], p = params[i % cases.length], s: SavedForward = {};
      const dy = new Float32Array(c.x.length).fill(0.5);
      if (i % 2) {
        using t = b.upload(c.x, [c.x.length]);
        using dyt = b.upload(dy, [dy.length]);
        using _y = await b.forward(c.problem, t, p, MOVING, undefined, s) as WasmTensor;
        using _dx = (await b.backward(s, dyt, p)).dx as WasmTensor;
      } else {
        await b.forward(c.problem, c.x, p, MOVING, undefined, s);
        await b.backward(s, dy, p);
      }
    };
    for (let i = 0; i < 2 * cases.length; i++) await step(i);
    const size = b.memoryBytes, held = b.usedBytes;
    for (let i = 0; i < 1000; i++) await step(i);
    assert.equal(b.memoryBytes, size);
    assert.equal(b.usedBytes, held);
    for (const p of params) b.releaseLayer(p);
    assert.ok(b.usedBytes < held, "the layers' own regions are freed");
    assert.ok(b.usedBytes >= used);
  },
});
