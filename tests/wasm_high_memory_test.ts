/**
 * The WASM backend with its data at and above 2 GiB of linear memory, and near the 4 GiB end of
 * 32-bit WebAssembly: byte offsets from 2^31 up must not turn negative (JavaScript's bitwise
 * operators are signed 32-bit), and a call that cannot fit must fail with a RangeError before it
 * writes anything.
 *
 * These run fast and small: the backend is made over a module instance whose heap starts just
 * below the address under test (its memory grown there, untouched pages below cost nothing), so
 * every tensor and region lands at those addresses without first filling 2 GiB. The opt-in
 * large test (SWITCHNORM_LARGE_TESTS=1) fills the memory with real tensors instead.
 */
import assert from "node:assert/strict";
import type { LayerParams, NormProblem, RunningUpdate } from "../backends/_backend.ts";
const alignUp16 = (v: number) => Math.ceil(v / 16) * 16;
import type { WasmKernels } from "../backends/_wasm_abi.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import {
  loadWasmBackend,
  WasmBackend,
  wasmSimdSupported,
  type WasmTensor,
} from "../backends/wasm.ts";
import { wasmBytes } from "../wasm/switchnorm_wasm.ts";
import { assertClose } from "./_close.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";
import { STRICT } from "./_backends.ts";
import { seededRandom as rng } from "../examples/_data.ts";

const ignore = !wasmSimdSupported();
if (ignore && STRICT) {
  throw new Error("WebAssembly SIMD is missing, and CI must run the WASM tests");
}

const PAGE = 65536;
const module = ignore ? undefined! : await WebAssembly.compile(wasmBytes());

/**
 * A WASM backend whose `__heap_base` is `base` (its heap starts 16 bytes past the 64-byte boundary
 * there, backends/_wasm_regions.ts heapStart), of a memory grown to at least
 * `base + bytes`: the module's own data stays below its real `__heap_base`, far under `base`.
 */
async function backendAt(base: number, bytes: number): Promise<WasmBackend> {
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports as unknown as WasmKernels;
  const pages = Math.ceil((base + bytes) / PAGE) - exports.memory.buffer.byteLength / PAGE;
  if (pages > 0) exports.memory.grow(pages);
  const kernels = Object.create(exports, { __heap_base: { value: { value: base } } });
  return new WasmBackend(kernels as WasmKernels);
}

/** A training problem of layout "nd" with random x, dy and parameters (fresh copies per call). */
function problemOf(seed: number, [n, c, m]: [number, number, number]) {
  const r = rng(seed);
  const x = Float32Array.from({ length: n * c * m }, () => (r() - 0.5) * 4 + 1);
  const dy = Float32Array.from({ length: n * c * m }, () => r() - 0.5);
  const weight = Float32Array.from({ length: c }, () => 0.5 + r());
  const bias = Float32Array.from({ length: c }, () => r() - 0.5);
  const mix = () => {
    const e = [r(), r(), r()].map(Math.exp), s = e[0] + e[1] + e[2];
    return Float64Array.from(e, (v) => v / s);
  };
  const meanMix = mix(), varMix = mix();
  const runningMean = Float32Array.from({ length: c }, () => r() - 0.5);
  const runningVar = Float32Array.from({ length: c }, () => 0.5 + r());
  const problem: NormProblem = { layout: "nd", n, c, m, training: true, usingBN: true, eps: 1e-5 };
  const params = (): LayerParams => ({
    layerId: 7,
    weight,
    bias,
    meanMix,
    varMix,
    runningMean: runningMean.slice(),
    runningVar: runningVar.slice(),
    version: 0,
  });
  return { problem, x, dy, params };
}

const MOVING: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
const reference = new ReferenceBackend();

/** Forward (and backward) of `c` on the WASM backend `w`, checked against the reference. */
async function checkTraining(
  w: WasmBackend,
  c: ReturnType<typeof problemOf>,
  resident: boolean,
  what: string,
): Promise<void> {
  const pw = c.params(), pr = c.params();
  const sw = {}, sr = {};
  const shape = [c.problem.n, c.problem.c, c.problem.m];
  const x = resident ? w.upload(c.x, shape) : c.x;
  const y = await w.forward(c.problem, x, pw, MOVING, undefined, sw);
  const yr = await reference.forward(c.problem, c.x, pr, MOVING, undefined, sr);
  const yw = resident ? await (y as WasmTensor).read() : y as Float32Array;
  assertClose(yw, yr as Float32Array, Y, `${what}: y`);
  assertClose(pw.runningMean, pr.runningMean, RUNNING, `${what}: running_mean`);
  assertClose(pw.runningVar, pr.runningVar, RUNNING, `${what}: running_var`);
  const dy = resident ? w.upload(c.dy, shape) : c.dy;
  const gw = await w.backward!(sw, dy, pw);
  const gr = await reference.backward(sr, c.dy, pr);
  const dx = resident ? await (gw.dx as WasmTensor).read() : gw.dx as Float32Array;
  assertClose(dx, gr.dx as Float32Array, GRAD, `${what}: dx`);
  assertClose(gw.dWeight, gr.dWeight, GRAD, `${what}: dWeight`);
  assertClose(gw.dBias, gr.dBias, GRAD, `${what}: dBias`);
  if (resident) {
    for (const t of [x, y, dy, gw.dx] as WasmTensor[]) t.dispose();
  }
}

Deno.test("16-byte rounding of byte counts stays exact and positive from 2 GiB to 4 GiB", () => {
  assert.equal(alignUp16(2 ** 31), 2 ** 31);
  assert.equal(alignUp16(2 ** 31 + 1), 2 ** 31 + 16);
  assert.equal(alignUp16(2 ** 32 - 20), 2 ** 32 - 16);
  assert.equal(alignUp16(2 ** 32 - 1), 2 ** 32);
});

Deno.test({
  name: "a resident forward whose output starts at 2 GiB reads back the right values",
  ignore,
  async fn() {
    // x (3120 bytes) fills the last bytes below 2^31 exactly, so y (and every region after it)
    // lies above: the heap starts 16 bytes past the 64-byte boundary at __heap_base
    // (backends/_wasm_regions.ts heapStart), 2^31 - 3120.
    const w = await backendAt(2 ** 31 - 3136, 4 * PAGE);
    const c = problemOf(1, [2, 3, 130]);
    const pw = c.params(), pr = c.params();
    const x = w.upload(c.x, [2, 3, 130]);
    assert.equal(x.byteOffset, 2 ** 31 - 3120);
    const y = await w.forward(c.problem, x, pw, MOVING) as WasmTensor;
    assert.ok(y.byteOffset >= 2 ** 31, `y at ${y.byteOffset}`);
    const yr = await reference.forward(c.problem, c.x, pr, MOVING);
    assertClose(await y.read(), yr as Float32Array, Y, "y above 2 GiB");
    assertClose(y.data, yr as Float32Array, Y, "y's view above 2 GiB");
    assertClose(pw.runningMean, pr.runningMean, RUNNING, "running_mean");
  },
});

Deno.test({
  name:
    "a training forward and backward whose copies of x and dy straddle 2 GiB match the reference",
  ignore,
  async fn() {
    const w = await backendAt(2 ** 31 - 8192, 4 * PAGE);
    await checkTraining(w, problemOf(2, [4, 3, 120]), false, "Float32Array across 2^31");
    // The next upload lies above 2^31 too and keeps its data.
    const data = Float32Array.from({ length: 1000 }, (_, i) => i / 7);
    const t = w.upload(data, [1000]);
    assert.ok(t.byteOffset >= 2 ** 31);
    assertClose(await t.read(), data, { atol: 0, rtol: 0, why: "a copy" }, "upload above 2^31");
  },
});

Deno.test({
  name: "resident forward and backward in the last MiB below 4 GiB match the reference",
  ignore,
  async fn() {
    const w = await backendAt(2 ** 32 - 2 ** 20, 2 ** 20);
    await checkTraining(w, problemOf(3, [2, 3, 1000]), true, "resident near 2^32");
    await checkTraining(w, problemOf(4, [2, 3, 1000]), false, "Float32Array near 2^32");
  },
});

Deno.test({
  name: "an upload past 4 GiB fails with a RangeError and leaves the live tensors as they were",
  ignore,
  async fn() {
    const w = await backendAt(2 ** 32 - 2 ** 20, 2 ** 20);
    const data = Float32Array.from({ length: 1000 }, (_, i) => i);
    const t = w.upload(data, [1000]);
    assert.throws(() => w.upload(new Float32Array(2 ** 18), [2 ** 18]), (e: Error) => {
      assert.ok(e instanceof RangeError, String(e));
      assert.match(e.message, /out of memory.*4 GiB/);
      return true;
    });
    assertClose(await t.read(), data, { atol: 0, rtol: 0, why: "untouched" }, "live tensor");
  },
});

Deno.test({
  name: "a 2 GiB Float32Array input that cannot fit fails before writing over live tensors or " +
    "the statistics kept for a backward",
  ignore,
  async fn() {
    const w = await backendAt(2 ** 31, 4 * PAGE);
    const c = problemOf(5, [2, 3, 64]);
    const pw = c.params(), pr = c.params(), sw = {}, sr = {};
    await w.forward(c.problem, c.x, pw, MOVING, undefined, sw);
    await reference.forward(c.problem, c.x, pr, MOVING, undefined, sr);
    const data = Float32Array.from({ length: 4096 }, (_, i) => i % 97);
    const t = w.upload(data, [4096]);
    // [8192, 1, 256, 256]: 2 GiB of x, which with the 2 GiB below the heap cannot fit in 4 GiB.
    // The pages of x are never touched, so this costs no real memory.
    const big: NormProblem = { ...c.problem, n: 8192, c: 1, m: 256 * 256 };
    const x = new Float32Array(8192 * 256 * 256);
    // The same layer: its statistics, kept for the backward below, must survive the failure.
    const bigParams = { ...c.params(), weight: new Float32Array(1) };
    Object.assign(bigParams, {
      bias: new Float32Array(1),
      runningMean: new Float32Array(1),
      runningVar: new Float32Array(1).fill(1),
    });
    for (const save of [undefined, {}]) {
      await assert.rejects(() => w.forward(big, x, bigParams, MOVING, undefined, save), (e) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match((e as Error).message, /out of memory/);
        return true;
      });
    }
    assertClose(await t.read(), data, { atol: 0, rtol: 0, why: "untouched" }, "live tensor");
    const gw = await w.backward!(sw, c.dy, pw);
    const gr = await reference.backward(sr, c.dy, pr);
    assertClose(gw.dx as Float32Array, gr.dx as Float32Array, GRAD, "the earlier forward's dx");
    assertClose(gw.dWeight, gr.dWeight, GRAD, "the earlier forward's dWeight");
  },
});

const large = Deno.env.get("SWITCHNORM_LARGE_TESTS") === "1";
const largeName = "with 2 GiB of live tensors, forwards and backwards above and across 2^31 are " +
  "right, and a 2 GiB Float32Array input fails cleanly there and runs right on a fresh backend";

/** Uploads filler tensors (a known pattern) until the heap's next free byte is `top`. */
function fill(w: WasmBackend, top: number): WasmTensor[] {
  const chunk = Float32Array.from({ length: 2 ** 26 }, (_, i) => i % 1009);
  const out: WasmTensor[] = [w.upload(chunk.subarray(0, 4), [4])];
  let next = out[0].byteOffset + 16;
  while (next < top) {
    const length = Math.min(chunk.length, (top - next) / 4);
    out.push(w.upload(chunk.subarray(0, length), [length]));
    next = out.at(-1)!.byteOffset + length * 4;
  }
  assert.equal(next, top);
  return out;
}

/** Whether each filler still holds its pattern at its first and last 64 values. */
function assertFillers(fillers: WasmTensor[], what: string): void {
  for (const t of fillers) {
    const d = t.data;
    for (
      const i of [
        ...Array(64).keys(),
        ...Array.from({ length: 64 }, (_, k) => d.length - 1 - k),
      ]
    ) {
      if (i >= 0 && i < d.length && d[i] !== i % 1009) {
        assert.fail(`${what}: filler at ${t.byteOffset} holds ${d[i]} at ${i}, not ${i % 1009}`);
      }
    }
  }
}

/** x of [8192, 1, 256, 256] (2 GiB): each sample a scaled, shifted copy of one random block. */
function bigInput(): Float32Array {
  const m = 256 * 256, r = rng(9);
  const block = Float32Array.from({ length: m }, () => r() - 0.5);
  const x = new Float32Array(8192 * m);
  for (let s = 0; s < 8192; s++) {
    const scale = 1 + (s % 7), shift = s / 1000;
    const row = x.subarray(s * m, (s + 1) * m);
    for (let i = 0; i < m; i++) row[i] = block[i] * scale + shift;
  }
  return x;
}

Deno.test({
  name: large ? largeName : `${largeName} (skipped: set SWITCHNORM_LARGE_TESTS=1; ~20-40 s, ~9 GB)`,
  ignore: ignore || !large,
  async fn() {
    const m = 256 * 256;
    const big: NormProblem = {
      layout: "nd",
      n: 8192,
      c: 1,
      m,
      training: false,
      usingBN: true,
      eps: 1e-5,
    };
    const bigParams = (): LayerParams => ({
      layerId: 20,
      weight: Float32Array.of(1.5),
      bias: Float32Array.of(-0.25),
      meanMix: Float64Array.of(0.5, 0.3, 0.2),
      varMix: Float64Array.of(0.2, 0.5, 0.3),
      runningMean: Float32Array.of(0.1),
      runningVar: Float32Array.of(0.9),
      version: 0,
    });
    let x: Float32Array | undefined = bigInput();
    {
      const w = await loadWasmBackend();
      // Live tensors up to 16 KiB below 2^31: what comes next straddles 2^31 or lies above it.
      const fillers = fill(w, 2 ** 31 - 16384);
      await checkTraining(w, problemOf(11, [4, 3, 400]), false, "Float32Array across 2^31");
      await checkTraining(w, problemOf(12, [4, 3, 400]), true, "resident above 2^31");
      const data = Float32Array.from({ length: 5000 }, (_, i) => i / 3);
      const t = w.upload(data, [5000]);
      assert.ok(t.byteOffset > 2 ** 31);
      assertClose(await t.read(), data, { atol: 0, rtol: 0, why: "a copy" }, "upload above 2^31");
      // A forward kept for a backward, then the 2 GiB input, which cannot fit any more.
      const c = problemOf(13, [2, 3, 64]);
      const pw = c.params(), pr = c.params(), sw = {}, sr = {};
      await w.forward(c.problem, c.x, pw, MOVING, undefined, sw);
      await reference.forward(c.problem, c.x, pr, MOVING, undefined, sr);
      await assert.rejects(() => w.forward(big, x!, bigParams(), MOVING), (e) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match((e as Error).message, /out of memory/);
        return true;
      });
      assertFillers(fillers, "after the 2 GiB input failed");
      assertClose(await t.read(), data, { atol: 0, rtol: 0, why: "untouched" }, "live tensor");
      const gw = await w.backward!(sw, c.dy, pw);
      const gr = await reference.backward(sr, c.dy, pr);
      assertClose(gw.dx as Float32Array, gr.dx as Float32Array, GRAD, "the kept forward's dx");
      w.dispose();
    }
    // A fresh backend: the 2 GiB input fits, in evaluation (each sample on its own, so samples
    // check against the reference one at a time) and in training, whose backward (x and dy
    // copied in, 4 GiB) cannot fit and must say so.
    const w = await loadWasmBackend();
    let y: Float32Array | undefined = await w.forward(big, x, bigParams(), MOVING) as Float32Array;
    for (const s of [0, 1, 4095, 6000, 8191]) {
      const one = { ...big, n: 1 };
      const yr = await reference.forward(one, x.subarray(s * m, (s + 1) * m), bigParams(), MOVING);
      assertClose(
        y.subarray(s * m, (s + 1) * m),
        yr as Float32Array,
        Y,
        `2 GiB input: sample ${s}`,
      );
    }
    // Into y's array, so that the test holds one 2 GiB output at a time.
    const save = {};
    await w.forward({ ...big, training: true }, x, bigParams(), MOVING, y, save);
    y = undefined;
    await assert.rejects(() => w.backward!(save, new Float32Array(x!.length), bigParams()), (e) => {
      assert.ok(e instanceof RangeError, String(e));
      assert.match((e as Error).message, /out of memory/);
      return true;
    });
    x = undefined;
    w.dispose();
  },
});

const inPlaceName = "a resident 2.5 GiB tensor normalized in place is right at its end, 2.5 GiB " +
  "past its start (kernel offsets above 2^31 within one tensor)";

Deno.test({
  name: large
    ? inPlaceName
    : `${inPlaceName} (skipped: set SWITCHNORM_LARGE_TESTS=1; ~15 s, ~3.5 GB)`,
  ignore: ignore || !large,
  async fn() {
    const m = 256 * 256, n = 10240;
    const problem: NormProblem = {
      layout: "nd",
      n,
      c: 1,
      m,
      training: false,
      usingBN: true,
      eps: 1e-5,
    };
    const params = (): LayerParams => ({
      layerId: 30,
      weight: Float32Array.of(0.75),
      bias: Float32Array.of(0.5),
      meanMix: Float64Array.of(0.2, 0.3, 0.5),
      varMix: Float64Array.of(0.6, 0.1, 0.3),
      runningMean: Float32Array.of(-0.2),
      runningVar: Float32Array.of(1.3),
      version: 0,
    });
    const w = await loadWasmBackend();
    // The source's pages are never written, so only the tensor's own 2.5 GiB become resident.
    const t = w.upload(new Float32Array(n * m), [n, 1, 256, 256]);
    const r = rng(31), block = Float32Array.from({ length: m }, () => r() - 0.5);
    const sampleOf = (s: number) => block.map((v) => v * (1 + (s % 5)) + s / 2000);
    const data = t.data;
    for (let s = 0; s < n; s++) data.set(sampleOf(s), s * m);
    const y = await w.forward(problem, t, params(), MOVING, t);
    assert.equal(y, t);
    const out = t.data;
    for (const s of [0, 5000, 8191, 8192, n - 1]) {
      const one = { ...problem, n: 1 };
      const want = await reference.forward(one, sampleOf(s), params(), MOVING);
      assertClose(out.subarray(s * m, (s + 1) * m), want as Float32Array, Y, `sample ${s}`);
    }
    t.dispose();
    w.dispose();
  },
});
