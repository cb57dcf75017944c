/**
 * The WebGPU dispatch plans: binding windows (every segment and element once, aligned, within
 * the limit), the workgroups per window and the workgroup grid, and the sizes they refuse.
 */
import assert from "node:assert/strict";
import {
  checkLoopedWindows,
  GRAD_BYTES,
  grid,
  groupThreadsFor,
  lnGroupSpan,
  makePlan,
  MAX_LOOPED_SEGMENTS,
  MAX_LOOPED_WINDOW_SAMPLES,
  type PlanLimits,
  type PlannedDispatch,
  segments,
  SLOT_BYTES,
} from "../backends/_webgpu_plan.ts";
import { makeBackwardPlan } from "../backends/_webgpu_backward_plan.ts";
import type { NormProblem } from "../backends/_backend.ts";
import { rng } from "./_webgpu.ts";
import { shaderWeight, weightRests } from "../backends/_webgpu_weights.ts";
import { LAZY_SOURCES, LIST_BINDING, SOURCES } from "../backends/_webgpu_pipelines.ts";

Deno.test("the plan binds every segment and element once, in aligned windows within the limit", () => {
  const r = rng(5);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  for (let i = 0; i < 300; i++) {
    const layout = pick(["1d", "nd"] as const);
    const problem: NormProblem = {
      layout,
      n: pick([1, 3, 33, 100, 1000]),
      c: pick([1, 5, 64, 300]),
      m: layout === "1d" ? 1 : pick([1, 2, 3, 49, 1023, 5001, 70000]),
      training: true,
      usingBN: true,
      eps: 1e-5,
    };
    const limits: PlanLimits = {
      maxBinding: pick([65536, 2 ** 20, 2 ** 27]),
      offsetAlign: pick([32, 256]),
      elementsPerThread: pick([16, 256]),
    };
    const total = problem.n * problem.c * problem.m;
    let plan;
    try {
      plan = makePlan(
        problem,
        { meanMix: [1], varMix: [1], update: { kind: "batchAverage" } },
        limits,
      );
    } catch (e) {
      // Only per-row arrays too large for the binding, or tensors beyond u32 indices, may be
      // refused.
      assert.match(
        (e as Error).message,
        /more than one storage binding|32-bit element indices|do not fit a storage binding/,
      );
      continue;
    }
    let covered = 0, lastEnd = 0;
    for (const d of plan.dispatches) {
      // The forward's per-row records in blocks of samples: every window aligned, within one
      // binding.
      for (const w of Object.values(d.forward ?? {})) {
        if (typeof w !== "object") continue;
        assert.equal(w.offset % limits.offsetAlign, 0, `${d.kind}: record window aligned`);
        assert.ok(w.size <= limits.maxBinding, `${d.kind}: a record window of ${w.size} bytes`);
      }
      if (!d.window) continue;
      assert.equal(d.window.offset % limits.offsetAlign, 0);
      assert.ok(d.window.size <= limits.maxBinding, `window of ${d.window.size} bytes`);
      assert.ok(d.window.offset + d.window.size <= plan.tensorBytes);
      if (d.kind.startsWith("normalize")) {
        assert.equal(d.window.offset, lastEnd, "normalize windows tile the tensor");
        lastEnd = d.window.offset + d.window.size;
        covered += d.window.size / 4;
      }
    }
    assert.ok(covered >= total && covered < total + 4);
    const slots = new DataView(plan.uniforms);
    const stats = plan.dispatches.filter((d) => d.kind === "stats" || d.kind === "stats1d");
    let next = 0;
    for (const d of stats) {
      const first = slots.getUint32(d.slot * SLOT_BYTES + 28, true);
      const end = slots.getUint32(d.slot * SLOT_BYTES + 32, true);
      assert.equal(first, next, "stats windows take the segments in order, each once");
      next = end;
    }
    const chunks = layout === "nd" ? plan.partials / (problem.n * problem.c) : 0;
    assert.equal(
      next,
      layout === "nd" ? problem.n * problem.c * chunks : Math.ceil(problem.n / 32),
    );
    // The backward's gradient records: every window aligned and within one binding.
    let backward;
    try {
      backward = makeBackwardPlan(problem, { meanMix: [1], varMix: [1] }, limits, problem.n);
    } catch (e) {
      assert.match((e as Error).message, /more than one storage binding|too many channels/);
      continue;
    }
    for (const d of backward.dispatches) {
      for (const w of Object.values(d.records ?? {})) {
        assert.equal(w.offset % limits.offsetAlign, 0, `${d.kind}: aligned`);
        assert.ok(w.size <= limits.maxBinding, `${d.kind}: a window of ${w.size} bytes`);
      }
    }
  }
});

Deno.test("the plan gives each normalize and dx window the workgroups its vec4s need, rounding up", () => {
  // One thread per vec4, 256 threads per workgroup (sn_normalize, sn1d_normalize, sn_bwd_dx,
  // sn1d_bwd_dx): a window of v vec4s needs ceil(v / 256) workgroups. One fewer leaves the
  // window's tail unwritten; this names that fault where only random comparisons would show it.
  const perWindow = ["normalize", "normalize1d", "bwdDx", "bwdDx1d"];
  // [4, 300, 300] takes two windows of x; layout "1d" refuses tensors above one binding.
  const limits: PlanLimits = { maxBinding: 2 ** 20, offsetAlign: 256 };
  const params = { meanMix: [1], varMix: [1] };
  const shapes = [[1, 1, 1], [2, 3, 1002], [5, 41, 2], [7, 13, 997], [100, 64, 1], [4, 300, 300]];
  let checked = 0;
  for (const layout of ["1d", "nd"] as const) {
    for (const [n, c, m] of shapes) {
      const problem: NormProblem = {
        layout,
        n,
        c,
        m: layout === "1d" ? 1 : m,
        training: true,
        usingBN: true,
        eps: 1e-5,
      };
      const plans = [
        makePlan(problem, { ...params, update: { kind: "batchAverage" } }, limits),
        makeBackwardPlan(problem, params, limits, n),
      ];
      for (const plan of plans) {
        for (const d of plan.dispatches) {
          if (!perWindow.includes(d.kind)) continue;
          const vecs = d.window!.size / 16;
          assert.equal(
            d.workgroups,
            Math.ceil(vecs / 256),
            `${layout} [${n}, ${c}, ${problem.m}] ${d.kind}: ${d.workgroups} workgroups for ` +
              `${vecs} vec4s`,
          );
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 20, `only ${checked} windows checked`);
});

Deno.test("the workgroup grid covers every workgroup within the per-dimension limit", () => {
  for (const max of [2, 3, 7, 65535]) {
    for (const count of [1, 2, max - 1, max, max + 1, 2 * max + 1, max * max - 1, max * max]) {
      if (count > max * max) continue;
      const [x, y] = grid(count, max);
      assert.ok(x <= max && y <= max, `${count} on ${max}: [${x}, ${y}]`);
      assert.ok(x * y >= count && x * (y - 1) < count, `${count} on ${max}: [${x}, ${y}]`);
    }
    assert.throws(() => grid(max * max + 1, max), /exceed a \d+ x \d+ grid/);
  }
});

/**
 * Which per-row gradient records each group of a backward plan sums ("nd"), found by running the
 * plan's sn_bwd_groups slots on the CPU: sums[g] counts how often row r was added to group g.
 */
function groupMembers(
  problem: NormProblem,
  limits: PlanLimits,
): { sums: Map<number, number>[]; windows: number } {
  const plan = makeBackwardPlan(problem, { meanMix: [1, 0, 0], varMix: [1, 0, 0] }, limits, 1);
  const { n, c } = problem;
  const slots = new DataView(plan.uniforms);
  const u = (d: { slot: number }, at: number) => slots.getUint32(d.slot * SLOT_BYTES + at, true);
  const sums: Map<number, number>[] = Array.from({ length: n + c }, () => new Map());
  let windows = 0;
  for (const d of plan.dispatches.filter((d) => d.kind === "bwdGroups")) {
    const rows = d.records?.rows, groups = d.records?.groups;
    for (const w of [rows, groups]) {
      if (!w) continue;
      assert.equal(w.offset % limits.offsetAlign, 0);
      assert.ok(w.size <= limits.maxBinding, `a window of ${w.size} bytes`);
    }
    const first = (rows?.offset ?? 0) / GRAD_BYTES;
    const [lnGroups, bnGroups] = [u(d, 80), u(d, 84)];
    const out = (groups?.offset ?? 0) / GRAD_BYTES + u(d, 28);
    const accumulate = (u(d, 44) & 64) !== 0;
    if (accumulate) windows++;
    for (let g = 0; g < lnGroups + bnGroups; g++) {
      const at = g >= lnGroups ? [64, 68, 72, 76] : [48, 52, 56, 60];
      const gg = g >= lnGroups ? g - lnGroups : g;
      const [base, step, stride, count] = at.map((a) => u(d, a));
      assert.ok((u(d, 28) + g + 1) * GRAD_BYTES <= (groups?.size ?? Infinity), "out in window");
      if (!accumulate) sums[out + g].clear(); // a plain write starts the record afresh
      for (let k = 0; k < count; k++) {
        const local = base + gg * step + k * stride;
        assert.ok((local + 1) * GRAD_BYTES <= (rows?.size ?? Infinity), "member in the window");
        const row = first + local;
        sums[out + g].set(row, (sums[out + g].get(row) ?? 0) + 1);
      }
    }
  }
  return { sums, windows };
}

Deno.test(
  "a backward's per-row gradient sums above one binding are summed per sample and channel once each",
  () => {
    const limits: PlanLimits = { maxBinding: 65536, offsetAlign: 256 };
    // 1024 records in a binding, windows of 1020 rows (4 to align the group records) and at
    // most 1020 channels: C dividing the window or not; windows that cut a sample at their
    // start, their end, both, or none; more than 1024 groups; problems in one window.
    const shapes = [[2, 700], [3, 1000], [333, 5], [1000, 3], [40, 64], [7, 500], [5, 205]];
    shapes.push([1020, 4], [3, 341], [4, 256], [4000, 1], [1500, 2], [2, 1020]);
    shapes.push([1, 1000], [3, 7], [1, 1], [1, 1020], [1019, 1]);
    let windowed = 0;
    for (const [n, c] of shapes) {
      const problem: NormProblem = {
        layout: "nd",
        n,
        c,
        m: 3,
        training: true,
        usingBN: true,
        eps: 1e-5,
      };
      const mix = { meanMix: [1, 0, 0], varMix: [1, 0, 0] };
      try {
        makePlan(problem, { ...mix, update: { kind: "batchAverage" } }, limits);
      } catch (e) {
        // A forward this device refuses (here [7, 500] and [3, 1000]: 3500 and 3000 row summaries
        // of 32 bytes, and blocks of 16
        // samples of 500 rows too large for one binding) has no backward: it is refused too.
        assert.match((e as Error).message, /too many channels/);
        assert.throws(() => makeBackwardPlan(problem, mix, limits, n), /too many channels/);
        continue;
      }
      const { sums, windows } = groupMembers(problem, limits);
      if (windows > 0) windowed++;
      for (let g = 0; g < n + c; g++) {
        const want = g < n
          ? Array.from({ length: c }, (_, k) => g * c + k)
          : Array.from({ length: n }, (_, k) => k * c + (g - n));
        const got = [...sums[g].entries()].sort((a, b) => a[0] - b[0]);
        assert.deepEqual(got.map(([row]) => row), want, `[${n},${c}] group ${g}: members`);
        assert.ok(got.every(([, times]) => times === 1), `[${n},${c}] group ${g}: once each`);
      }
      const plan = makeBackwardPlan(problem, { meanMix: [1, 0, 0], varMix: [1, 0, 0] }, limits, n);
      for (const kind of ["bwdRows", "bwdCoef"]) {
        let next = 0, dots = 0;
        for (const d of plan.dispatches.filter((d) => d.kind === kind)) {
          const v = new DataView(plan.uniforms, d.slot * SLOT_BYTES, SLOT_BYTES);
          const [first, end, base] = [28, 32, 36].map((a) => v.getUint32(a, true));
          assert.equal(first, next, `${kind}: rows in order, each once`);
          if (kind === "bwdRows") {
            // A dot-product partial sum per workgroup of 64 rows, the dispatches' one after another.
            assert.equal(v.getUint32(292, true), dots, "bwdRows: dot sums in order, each once");
            assert.equal(d.workgroups, Math.ceil((end - first) / 64));
            dots += d.workgroups;
          }
          const rows = d.records!.rows!;
          assert.equal(base * GRAD_BYTES, rows.offset);
          assert.ok((end - base) * GRAD_BYTES <= rows.size);
          assert.ok(rows.size <= limits.maxBinding);
          next = end;
        }
        assert.equal(next, n * c, `${kind}: every row`);
        if (kind === "bwdRows") assert.equal(dots, plan.dotRecords, "bwdRows: every dot sum");
      }
    }
    assert.equal(windowed, 11, "problems that needed several windows");
  },
);

Deno.test("a tensor beyond the shaders' 32-bit element indices is refused by both plans", () => {
  const problem: NormProblem = {
    layout: "nd",
    n: 2,
    c: 2 ** 16,
    m: 2 ** 15,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const limits: PlanLimits = { maxBinding: 2 ** 31, offsetAlign: 256 };
  const mix = { meanMix: [1, 0, 0], varMix: [1, 0, 0] };
  assert.throws(
    () => makePlan(problem, { ...mix, update: { kind: "batchAverage" } }, limits),
    /4294967296 floats is too large for the shaders' 32-bit element indices/,
  );
  assert.throws(() => makeBackwardPlan(problem, mix, limits, 2), /32-bit element indices/);
});

Deno.test("a backward whose record buffers exceed maxBufferSize is refused with a RangeError", () => {
  // Windows lift the binding limit, not the buffer limit: 3000 rows need 192000 bytes of Grads.
  const limits: PlanLimits = { maxBinding: 65536, offsetAlign: 256, maxBuffer: 100_000 };
  const problem: NormProblem = {
    layout: "nd",
    n: 1000,
    c: 3,
    m: 2,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const mix = { meanMix: [1, 0, 0], varMix: [1, 0, 0] };
  assert.throws(
    () => makeBackwardPlan(problem, mix, limits, 1000),
    /the per-row gradient sums need a buffer of 192000 bytes, more than this device's maxBufferSize/,
  );
  makeBackwardPlan(problem, mix, { ...limits, maxBuffer: 192_000 }, 1000);
});

Deno.test("mixing weights below float32's normal range go to the shaders as a mantissa and two normal powers of two", () => {
  const f32 = Math.fround;
  // Ordinary weights: their float32 rounding, factors 1 (the shaders compute what they did).
  for (const w of [0, 1, 1 / 3, 2 ** -126, 0.7]) {
    assert.deepEqual(shaderWeight(w), { mantissa: w, f1: 1, f2: 1, exp: 0 });
  }
  for (const w of [3.7e-44, 2 ** -127, 1.2e-60, 2 ** -251 * 1.5]) {
    const s = shaderWeight(w);
    assert.ok(s.mantissa >= 0.5 && s.mantissa < 1, `mantissa of ${w}: ${s.mantissa}`);
    assert.equal(s.f1 * s.f2, 2 ** s.exp);
    for (const f of [s.f1, s.f2]) assert.ok(f >= 2 ** -126 && f <= 1 && f32(f) === f, `${w}: ${f}`);
    // The float32 mantissa times the factors is w to float32's precision, not a subnormal's.
    const got = f32(s.mantissa) * s.f1 * s.f2;
    assert.ok(Math.abs(got - w) <= 2 ** -24 * w, `${w}: ${got}`);
  }
  // Below 2^-252 a weight counts as 0 (its products are below every normal float32 result).
  assert.deepEqual(shaderWeight(2 ** -253), { mantissa: 0, f1: 1, f2: 1, exp: 0 });
});

Deno.test("the heaviest mean weight with its float32 rest is 1 less the others", () => {
  const f32 = Math.fround;
  // Softmax weights of logits like (-1e30, -25, 0): BN's float64 weight holds its distance from
  // 1 (1.4e-11) to ~2^-54 only, 4e-6 of itself; the shaders multiply that rest by an IN mean's
  // distance from the mix's (1.25e11 in partial_zero_rows_test's factor-wide rows).
  for (const logits of [[-1e30, -25, 0], [-25, -25, 0], [-20, -30, 0], [0, -40, -1], [-3, 0]]) {
    const ex = logits.map((l) => Math.exp(l - Math.max(...logits)));
    const sum = ex.reduce((a, b) => a + b);
    const w = ex.map((e) => e / sum);
    const a = w.indexOf(Math.max(...w));
    const others = w.reduce((s, v, k) => k === a ? s : s + v, 0);
    const rests = weightRests(w, true);
    // (f32(w_a) - 1) is exact; the rest as float32 is the only rounding.
    const off = (f32(w[a]) - 1) + f32(rests[a]) + others;
    assert.ok(Math.abs(off) <= 2 ** -24 * others, `${logits}: ${off} of ${others}`);
    // The lighter weights keep their own rest (exact in float64).
    for (let k = 0; k < w.length; k++) if (k !== a) assert.equal(rests[k], w[k] - f32(w[k]));
  }
});

Deno.test("every wide pass, and no other, is dispatched from the arguments its list holds", () => {
  // The wide passes read a list that a hot pass fills, and run the workgroups it asks for
  // (none while it is empty); a pass missing here would run no workgroup at all. So does the
  // refine of LN and BN groups near 0 (sn_group_refine.wgsl).
  const kinds = [...Object.keys(SOURCES), ...Object.keys(LAZY_SOURCES)];
  assert.equal(kinds.length, 28);
  for (const kind of kinds) {
    assert.equal(kind in LIST_BINDING, /wide|refine/i.test(kind), kind);
  }
  assert.deepEqual(
    LIST_BINDING,
    {
      wideStats: 4,
      wideStats1d: 3,
      groupRefine: 4,
      wideNormalize1d: 5,
      wideNormalize: 6,
      bwdWideReduce: 6,
      bwdWideReduce1d: 7,
      bwdWideDx: 6,
      bwdWideDx1d: 8,
      // The passes of eps 0 compiled on first use (LAZY_SOURCES): y's walk the wide lists too.
      wideZeroStdY: 6,
      wideZeroStdY1d: 5,
    },
  );
});

Deno.test("rows of more segments than lavapipe's loop limit lets a thread merge are refused before any work", () => {
  const row = (m: number): NormProblem => ({
    layout: "nd",
    n: 1,
    c: 1,
    m,
    training: true,
    usingBN: true,
    eps: 1e-5,
  });
  const base = { maxBinding: 2 ** 27, offsetAlign: 256, maxBuffer: 2 ** 31 - 1 };
  const limited = { ...base, loopLimit: true };
  // Segments of 4096: sn_bwd_rows loops over a row's segments up to four times in one thread.
  assert.equal(MAX_LOOPED_SEGMENTS, 16127);
  assert.equal(segments(row(16127 * 4096), limited).chunks, 16127);
  // Without the limit (a GPU), any row length.
  assert.equal(segments(row(16128 * 4096), base).chunks, 16128);
  const refused = (e: unknown) =>
    e instanceof RangeError &&
    e.message ===
      `webgpu backend: rows of ${16127 * 4096 + 1} elements (H x W x ...) are more than this ` +
        "adapter's shaders can loop over (it ends an invocation's loops after 65535 " +
        "iterations, as lavapipe does): at most 66056192 elements per row; the wasm backend " +
        "has no such limit";
  assert.throws(() => segments(row(16127 * 4096 + 1), limited), refused);
  // Both plans of such a call refuse it, before any dispatch.
  const mix = { meanMix: [1], varMix: [1] };
  const long = row(16127 * 4096 + 1);
  assert.throws(
    () => makePlan(long, { ...mix, update: { kind: "batchAverage" } }, limited),
    refused,
  );
  assert.throws(() => makeBackwardPlan(long, mix, limited, 1), refused);
});

/** A training SwitchNorm1d of [n, c]. */
const oned = (n: number, c: number): NormProblem => ({
  layout: "1d",
  n,
  c,
  m: 1,
  training: true,
  usingBN: true,
  eps: 1e-5,
});

Deno.test("SwitchNorm1d calls whose windows of x hold more samples than lavapipe's loop limit lets a workgroup sweep are refused before any work", () => {
  const base = { maxBinding: 2 ** 27, offsetAlign: 256, maxBuffer: 2 ** 31 - 1 };
  const limited = { ...base, loopLimit: true };
  assert.equal(MAX_LOOPED_WINDOW_SAMPLES, 2 ** 21);
  checkLoopedWindows(oned(2 ** 21, 2), limited);
  // Windows of 2^25 floats: 2^19 samples of 64 features each, whatever N.
  checkLoopedWindows(oned(2 ** 22, 64), limited);
  // Without the limit (a GPU), and in layout nd, nothing is refused.
  checkLoopedWindows(oned(2 ** 21 + 32, 2), base);
  checkLoopedWindows({ ...oned(2 ** 21 + 32, 2), layout: "nd", m: 4 }, limited);
  const refused = (e: unknown) =>
    e instanceof RangeError &&
    e.message ===
      `webgpu backend: N = ${2 ** 21 + 32} samples of C = 2 features put ${2 ** 21 + 32} ` +
        "samples in one binding of x, more than this adapter's shaders can loop over (it ends " +
        "an invocation's loops after 65535 iterations, as lavapipe does): at most 2097152 " +
        "there; the wasm backend has no such limit";
  assert.throws(() => checkLoopedWindows(oned(2 ** 21 + 32, 2), limited), refused);
  // Both plans of such a call refuse it, before any dispatch.
  const mix = { meanMix: [1, 1], varMix: [1, 1] };
  const big = oned(2 ** 21 + 32, 2);
  assert.throws(
    () => makePlan(big, { ...mix, update: { kind: "batchAverage" } }, limited),
    refused,
  );
  assert.throws(() => makeBackwardPlan(big, mix, limited, big.n), refused);
});

Deno.test("the group passes take 64 threads, or refuse the call, where lavapipe's loop limit would cut their loops", () => {
  const nd = (n: number, c: number): NormProblem => ({
    layout: "nd",
    n,
    c,
    m: 2,
    training: true,
    usingBN: true,
    eps: 1e-5,
  });
  const base = { maxBinding: 2 ** 27, offsetAlign: 256, groupThreads: 8 };
  // Without the limit (a GPU), the device's count whatever the size.
  assert.equal(groupThreadsFor(nd(600000, 1), base), 8);
  const limited = { ...base, loopLimit: true };
  // 4 loops of ceil(members / 8) iterations fit 65535 up to 131064 members.
  assert.equal(groupThreadsFor(nd(131000, 3), limited), 8);
  assert.equal(groupThreadsFor(nd(3, 131000), limited), 8);
  assert.equal(groupThreadsFor(nd(140000, 3), limited), 64);
  assert.equal(groupThreadsFor(nd(600000, 1), limited), 64);
  // SwitchNorm1d's groups have a tile's (32) fewer members.
  assert.equal(groupThreadsFor({ ...nd(4000000, 3), layout: "1d", m: 1 }, limited), 8);
  assert.throws(
    () => groupThreadsFor(nd(1100000, 1), limited),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message ===
        "webgpu backend: N = 1100000 and C = 1 are more than this adapter's shaders can " +
          "loop over (it ends an invocation's loops after 65535 iterations, as lavapipe does): " +
          "at most 1048192 each; the wasm backend has no such limit",
  );
  // The plans carry the choice to the dispatches.
  assert.equal(
    makePlan(
      nd(140000, 3),
      { meanMix: [1], varMix: [1], update: { kind: "batchAverage" } },
      limited,
    ).groupThreads,
    64,
  );
});

Deno.test("lnGroupSpan is the least power of two at least the members, at most the device's threads", () => {
  assert.equal(lnGroupSpan(1, 8), 1);
  assert.equal(lnGroupSpan(2, 8), 2);
  assert.equal(lnGroupSpan(3, 8), 4);
  assert.equal(lnGroupSpan(4, 64), 4);
  assert.equal(lnGroupSpan(9, 8), 8);
  assert.equal(lnGroupSpan(64, 64), 64);
  assert.equal(lnGroupSpan(65, 64), 64);
});

/** A 1d plan's group dispatches: workgroups, span and three uniform fields (Params offsets). */
type GroupDispatches = (
  problem: NormProblem,
  groupThreads: number,
  maxBinding?: number,
) => { workgroups: number; span?: number; fields: number[] }[];

function groupDispatches(
  plan: { dispatches: readonly PlannedDispatch[]; uniforms: ArrayBuffer },
  kind: string,
  offsets: number[],
) {
  return plan.dispatches.filter((d) => d.kind === kind).map((d) => {
    const v = new DataView(plan.uniforms, d.slot * SLOT_BYTES, SLOT_BYTES);
    return {
      workgroups: d.workgroups,
      span: d.span,
      fields: offsets.map((at) => v.getUint32(at, true)),
    };
  });
}

// The forward's sn_group_stats (fields groups_ln, groups_bn, chan_base: BN group c is written to
// groups[N + c]) and the backward's sn_bwd_groups (groups_ln, groups_bn, seg_first).
const passes: [string, GroupDispatches, number][] = [
  [
    "forward's group statistics (sn_group_stats)",
    (problem, groupThreads, maxBinding = 2 ** 27) =>
      groupDispatches(
        makePlan(problem, { meanMix: [1, 1], varMix: [1, 1], update: { kind: "batchAverage" } }, {
          maxBinding,
          offsetAlign: 256,
          groupThreads,
        }),
        "group",
        [80, 84, 108],
      ),
    65536,
  ],
  [
    "backward's group sums (sn_bwd_groups)",
    (problem, groupThreads, maxBinding = 2 ** 27) =>
      groupDispatches(
        makeBackwardPlan(problem, { meanMix: [1, 1], varMix: [1, 1] }, {
          maxBinding,
          offsetAlign: 256,
          groupThreads,
        }, problem.n),
        "bwdGroups",
        [80, 84, 28],
      ),
    0,
  ],
];

for (const [pass, groupsOf, bnThird] of passes) {
  Deno.test(`SwitchNorm1d's ${pass} take the LN groups in a dispatch of their own, a row on the least power of two threads that holds its tile summaries`, () => {
    // C = 64: two tile summaries per row, on two threads each, 4 rows per workgroup of 8
    // (lavapipe) and 32 per workgroup of 64 (a GPU); then the channels, a workgroup each.
    assert.deepEqual(groupsOf(oned(65536, 64), 8), [
      { workgroups: 16384, span: 2, fields: [65536, 0, 0] },
      { workgroups: 64, span: undefined, fields: [0, 64, bnThird] },
    ]);
    assert.deepEqual(groupsOf(oned(65537, 64), 64)[0], {
      workgroups: 2049,
      span: 2,
      fields: [65537, 0, 0],
    });
    // C = 100: four summaries per row; C = 2048: 64, a workgroup of 64 per row as before.
    assert.deepEqual(groupsOf(oned(10, 100), 8)[0], { workgroups: 5, span: 4, fields: [10, 0, 0] });
    assert.deepEqual(groupsOf(oned(10, 2048), 64)[0], {
      workgroups: 10,
      span: undefined,
      fields: [10, 0, 0],
    });
    // In blocks of row tiles or windows of x (more than one binding holds): each one's rows so.
    const ln = groupsOf(oned(8001, 70), 8, 2 ** 16).filter((d) => d.span !== undefined);
    assert.ok(ln.length > 1, `expected several blocks, got ${ln.length}`);
    assert.equal(ln.reduce((s, d) => s + d.fields[0], 0), 8001);
    for (const d of ln) {
      assert.equal(d.span, 4);
      assert.equal(d.workgroups, Math.ceil(d.fields[0] / 2));
    }
  });
}
