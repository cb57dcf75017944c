/**
 * The WASM backend's forward against the float64 reference backend (backends/reference.ts) on
 * random problems, and its NaN/Inf behaviour. They run the backend directly, so they need neither
 * the layer nor the shared PyTorch vectors. The backward: wasm_backward_test.ts; resident tensors,
 * `out`, SyncSN's await gaps and memory: wasm_tensors_test.ts.
 */
import assert from "node:assert/strict";
import { wasmSimdSupported, type WasmTensor } from "../backends/wasm.ts";
import { assertClose, assertSameValues } from "./_close.ts";
import { agree, ignore, MOVING, randomCase, reference, RUNNING, wasm, Y } from "./_wasm_cases.ts";

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
          // Some channels' gamma near float32's limit makes their rows wide (wasm/src/wide.rs:
          // f64 constants found through each chunk's offsets into the scratch area).
          const huge = offset === 0 && shape[2] === 49;
          if (huge) c.params().weight.forEach((_, j, w) => j % 3 === 0 && (w[j] = 3e38));
          const what = `nd [${shape}] offset=${offset} training=${training}${huge ? " wide" : ""}`;
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
          // (The range tests hold wide rows to the reference; agree's tolerance is for gamma ~ 1.)
          if (!huge) await agree(wasm, c, what);
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
