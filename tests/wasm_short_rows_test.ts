/**
 * Short rows on the WASM backend: SwitchNorm2d with M = H*W from 5 to 257 floats per (n, c) row,
 * where the nd kernels measure rows four at a time and normalize / back-propagate rows of
 * M % 4 != 0 floats four at a time as one run of 4M floats (a vector across two rows uses each
 * row's constants in its lanes). Row counts N*C are not multiples of 4, so groups and the rows
 * left over meet; channels carry mean offsets of ~1e4 with unit spread. The layer tests compare
 * against the float64 reference backend, through Float32Array inputs and resident tensors; the
 * module tests call the kernels directly at every 4-byte alignment and check that a sweep over
 * many rows gives, bit for bit, what the rows give one at a time, and that statistics do not
 * depend on how the rows are split into calls.
 */
import assert from "node:assert/strict";
import { wasmSimdSupported } from "../backends/wasm.ts";
import { SwitchNorm2d } from "../mod.ts";
import { wasmBytes } from "../wasm/switchnorm_wasm.ts";
import { seededRandom as rng } from "../examples/_data.ts";
import { STRICT } from "./_backends.ts";
import { assertClose, assertSameRecords, assertSameValues } from "./_close.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";

const ignore = !wasmSimdSupported();
if (ignore && STRICT) {
  throw new Error("WebAssembly SIMD is missing, and CI must run the WASM tests");
}

/** Row lengths M = H*W: every M % 4, around the kernels' thresholds (25, 64, 256). */
const SHAPES: readonly (readonly [number, number])[] = [
  [1, 5],
  [1, 7],
  [3, 3],
  [1, 13],
  [5, 5],
  [7, 7],
  [9, 11],
  [11, 11],
  [14, 14],
  [15, 17],
  [16, 16],
  [1, 257],
];

/** x of [n, c, m]: channel means of +-1e4 (1 + c/10), spread ~1 (uniform, width 3.5). */
function activations(seed: number, n: number, c: number, m: number, offset = 1e4): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n * c * m }, (_, i) => {
    const ch = Math.floor(i / m) % c;
    return (ch % 2 ? -1 : 1) * offset * (1 + ch / 10) + (r() - 0.5) * 3.5;
  });
}

/** A WASM layer and a reference layer with the same random parameters and buffers. */
function layers(
  c: number,
  usingBN: boolean,
  seed: number,
): [SwitchNorm2d<boolean>, SwitchNorm2d<boolean>] {
  const r = rng(seed);
  const w = new SwitchNorm2d(c, { backend: "wasm", usingBN });
  const ref = new SwitchNorm2d(c, { backend: "reference", usingBN });
  const state: Record<string, Float32Array> = {};
  for (const [key, v] of Object.entries(w.stateDict())) {
    state[key] = Float32Array.from(v, () => {
      switch (key) {
        case "weight":
          return 0.5 + r();
        case "running_mean":
          return 1e4 * (r() - 0.5);
        case "running_var":
          return 0.5 + 2 * r();
        default: // bias and the importance logits
          return r() * 2 - 1;
      }
    });
  }
  w.loadStateDict(state);
  ref.loadStateDict(state);
  return [w, ref];
}

Deno.test({
  name: "short-row forwards match the reference, train and eval, BN on and off, 1e4 offsets",
  ignore,
  async fn() {
    let seed = 1;
    for (const [h, wd] of SHAPES) {
      for (const [n, c] of [[3, 5], [2, 7]] as const) {
        const shape = [n, c, h, wd], m = h * wd;
        for (const usingBN of [true, false]) {
          const [w, ref] = layers(c, usingBN, seed++);
          for (const training of [true, false]) {
            w.train(training);
            ref.train(training);
            const x = activations(seed++, n, c, m);
            const what = `[${shape}] usingBN=${usingBN} training=${training}`;
            const yr = await ref.forward(x, shape);
            const yw = await w.forward(x, shape);
            assertClose(yw, yr, Y, `${what}: y`);
            if (usingBN) {
              const sw = w.stateDict(), sr = ref.stateDict();
              assertClose(sw.running_mean!, sr.running_mean!, RUNNING, `${what}: running_mean`);
              assertClose(sw.running_var!, sr.running_var!, RUNNING, `${what}: running_var`);
            }
          }
          w.dispose();
          ref.dispose();
        }
      }
    }
  },
});

Deno.test({
  name: "short-row forwards on resident tensors give the Float32Array path's numbers bit for bit",
  ignore,
  async fn() {
    let seed = 500;
    for (const [h, wd] of SHAPES) {
      const [n, c] = [3, 5], shape = [n, c, h, wd], m = h * wd;
      for (const usingBN of [true, false]) {
        for (const training of [true, false]) {
          const [a, ref] = layers(c, usingBN, seed);
          const [b] = layers(c, usingBN, seed++);
          a.train(training);
          b.train(training);
          ref.train(training);
          const x = activations(seed++, n, c, m);
          const what = `[${shape}] usingBN=${usingBN} training=${training}`;
          const want = await a.forward(x, shape);
          using xt = await b.upload(x, shape);
          using yt = await b.forward(xt);
          const got = await yt.read();
          assertSameValues(got, want, `${what}: y`);
          assertClose(got, await ref.forward(x, shape), Y, `${what}: y against the reference`);
          if (usingBN) assertSameRecords(b.stateDict(), a.stateDict(), `${what}: buffers`);
          for (const layer of [a, b, ref]) layer.dispose();
        }
      }
    }
  },
});

Deno.test({
  name: "short-row backwards match the reference, from Float32Array and resident dy",
  ignore,
  async fn() {
    let seed = 1000;
    for (const [h, wd] of SHAPES) {
      const [n, c] = [3, 5], shape = [n, c, h, wd], m = h * wd;
      for (const usingBN of [true, false]) {
        for (const training of [true, false]) {
          const what = `[${shape}] usingBN=${usingBN} training=${training}`;
          const x = activations(seed++, n, c, m);
          const r = rng(seed++);
          const dy = Float32Array.from({ length: x.length }, () => r() * 2 - 1);
          const [a, ref] = layers(c, usingBN, seed);
          const [b] = layers(c, usingBN, seed++);
          for (const layer of [a, b, ref]) {
            layer.train(training);
            layer.zeroGrad();
          }
          // A backward needs a forward that kept its statistics (training, or keepForBackward).
          await ref.forward(x, shape, { keepForBackward: true });
          await a.forward(x, shape, { keepForBackward: true });
          const want = await ref.backward(dy);
          const got = await a.backward(dy);
          assertClose(got, want, GRAD, `${what}: dx`);
          for (const [name, g] of Object.entries(ref.grads)) {
            assertClose(a.grads[name as "weight"], g, GRAD, `${what}: grad of ${name}`);
          }
          using xt = await b.upload(x, shape);
          using dyt = await b.upload(dy, shape);
          using _y = await b.forward(xt, { keepForBackward: true });
          using dxt = await b.backward(dyt);
          assertSameValues(await dxt.read(), got, `${what}: resident dx`);
          assertSameRecords(b.grads, a.grads, `${what}: resident grads`);
          for (const layer of [a, b, ref]) layer.dispose();
        }
      }
    }
  },
});

/** The kernels of a fresh module instance, with a bump allocator over its memory. */
async function kernels() {
  const { instance } = await WebAssembly.instantiate(wasmBytes(), {});
  // deno-lint-ignore no-explicit-any
  const k = instance.exports as any;
  const memory = k.memory as WebAssembly.Memory;
  memory.grow(64);
  let at = ((k.__heap_base.value as number) + 63) & ~63;
  /** `bytes` of memory, 64-byte aligned plus `skew` bytes. */
  const take = (bytes: number, skew = 0) => {
    const p = at + skew;
    at = (p + bytes + 127) & ~63;
    return p;
  };
  return { k, memory, take };
}

Deno.test({
  name: "the normalize and dx sweeps give each row's own numbers at every 4-byte alignment",
  ignore,
  async fn() {
    const { k, memory, take } = await kernels();
    const r = rng(2000);
    for (const [h, wd] of [...SHAPES, [1, 26], [1, 27], [3, 21]]) {
      const m = h * wd;
      for (const rows of [1, 3, 6, 13]) {
        const len = rows * m;
        const x = activations(r() * 1e9, 1, rows, m);
        const consts = Float32Array.from({ length: 4 * rows }, (_, i) => {
          const row = i >> 2;
          return [x[row * m], 0.5 + r(), r() - 0.5, 0][i & 3];
        });
        // Per row, one call each: the one-row path.
        const cAt = take(16 * rows), f32 = () => new Float32Array(memory.buffer);
        f32().set(consts, cAt >> 2);
        const xAt0 = take(4 * len), yAt0 = take(4 * len);
        f32().set(x, xAt0 >> 2);
        for (let row = 0; row < rows; row++) {
          k.sn_normalize_rows_nd(xAt0 + 4 * row * m, yAt0 + 4 * row * m, 1, m, cAt + 16 * row, 0);
        }
        const want = f32().slice(yAt0 >> 2, (yAt0 >> 2) + len);
        for (let skew = 0; skew < 16; skew += 4) {
          // wide = 1: the sweep that checks each row for wide ones (none here) gives the same.
          for (const [inPlace, wide] of [[false, 0], [true, 0], [false, 1], [true, 1]] as const) {
            const xAt = take(4 * len, skew), yAt = inPlace ? xAt : take(4 * len, 12 - skew);
            f32().set(x, xAt >> 2);
            k.sn_normalize_rows_nd(xAt, yAt, rows, m, cAt, wide);
            const got = f32().slice(yAt >> 2, (yAt >> 2) + len);
            assertSameValues(
              got,
              want,
              `y: m=${m} rows=${rows} skew=${skew} inPlace=${inPlace} wide=${wide}`,
            );
          }
        }
      }
    }
    // dx: the same problem at every alignment (which moves where the groups of four start, and
    // which rows go one at a time) gives the same dx, written in place over dy.
    for (const [h, wd] of [[5, 5], [7, 7], [11, 11], [1, 257]]) {
      const m = h * wd, n = 3, c = 5, rows = n * c, len = rows * m;
      const x = activations(r() * 1e9, n, c, m);
      const dy = Float32Array.from({ length: len }, () => r() * 2 - 1);
      const layer = take(k.sn_layer_bytes(c));
      new Float64Array(memory.buffer, layer, 8).set([1e-5, 0.2, 0.3, 0.5, 0.4, 0.3, 0.3, 0]);
      const params = new Float32Array(memory.buffer, layer + 64, 4 * c);
      for (let j = 0; j < c; j++) [params[j], params[c + j], params[3 * c + j]] = [1 + r(), r(), 1];
      const stats = take(8 * k.sn_stats_len(0, n, c)), scratch = take(k.sn_scratch_bytes(0, n, c));
      const work = take(8 * k.sn_work_len(0, n, c));
      let want: Float32Array | undefined;
      for (let skew = 0; skew < 16; skew += 4) {
        const xAt = take(4 * len, skew), dyAt = take(4 * len, skew), yAt = take(4 * len, skew);
        const f32 = new Float32Array(memory.buffer);
        f32.set(x, xAt >> 2);
        f32.set(dy, dyAt >> 2);
        k.sn_stats_nd(xAt, n, c, m, 3, layer, stats);
        k.sn_normalize_nd(xAt, yAt, n, c, m, 3, layer, stats, scratch);
        k.sn_backward_reduce_nd(xAt, dyAt, n, c, m, 3, layer, stats, work);
        k.sn_backward_dx_nd(xAt, dyAt, dyAt, n, c, m, 3, layer, stats, work, n);
        const got = new Float32Array(memory.buffer).slice(dyAt >> 2, (dyAt >> 2) + len);
        assert.ok(got.every(Number.isFinite), `dx: m=${m} skew=${skew} finite`);
        if (want) assertSameValues(got, want, `dx: m=${m} skew=${skew}`);
        want = got;
      }
    }
  },
});

Deno.test({
  name: "short-row statistics do not depend on how the rows are split into calls",
  ignore,
  async fn() {
    const { k, memory, take } = await kernels();
    const r = rng(3000);
    for (const [h, wd] of SHAPES) {
      const m = h * wd, n = 3, c = 7, rows = n * c, len = rows * m;
      const x = activations(r() * 1e9, n, c, m);
      // A NaN and an Inf in two rows: they stay in their rows.
      x[2 * m + 1] = NaN;
      x[9 * m + m - 1] = Infinity;
      const stats = take(8 * k.sn_stats_len(0, n, c));
      const xAt = take(4 * len);
      new Float32Array(memory.buffer).set(x, xAt >> 2);
      k.sn_stats_rows_nd(xAt, 0, rows, n, c, m, stats);
      const want = new Float64Array(memory.buffer, stats, 2 * rows).slice();
      for (let row = 0; row < rows; row++) {
        const bad = row === 2 || row === 9;
        assert.equal(Number.isNaN(want[rows + row]), bad, `m=${m}: var_in of row ${row}`);
        if (row === 9) assert.equal(want[row], Infinity, `m=${m}: mu_in of row 9`);
        if (!bad) assert.ok(Math.abs(Math.abs(want[row]) - 1e4 * (1 + row % c / 10)) < 1);
      }
      for (const step of [1, 2, 3, 5, 6]) {
        const parts = take(8 * k.sn_stats_len(0, n, c));
        for (let row0 = 0; row0 < rows; row0 += step) {
          const count = Math.min(step, rows - row0);
          k.sn_stats_rows_nd(xAt + 4 * row0 * m, row0, count, n, c, m, parts);
        }
        const got = new Float64Array(memory.buffer, parts, 2 * rows).slice();
        assertSameValues(got, want, `m=${m} rows in calls of ${step}`);
      }
    }
  },
});
