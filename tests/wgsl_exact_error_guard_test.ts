/**
 * The shaders' exact-error formulas (two_sum and its inlined copies) must not be written so that
 * a shader compiler may fold them away. Compilers rewrite float arithmetic as if it were exact:
 * lavapipe's turns (a + b) - a into b, and NVIDIA's Vulkan driver (an H200, driver 580, measured
 * with tests/fuzz/adapter_float_probe.ts) turns s - (s - a) into a, which made two_sum's error 0
 * or wrong there: 261 WebGPU range tests failed on that GPU (y 400x off on rows of std 1e-7 beside
 * rows of 1e5, `grads.mean_weight` 6e13x off), 38 after every intermediate went through opaque()
 * (shaders/common.wgsl). lavapipe, which CI runs, does not make the second rewrite, so no test
 * run there can see it; this test reads the WGSL instead: no float expression x - (y - z) may
 * appear outside opaque(), the form that the rewrite s - (s - a) -> a matches.
 *
 * @module
 */
import assert from "node:assert/strict";

/** x - (y - z) with names or fields for x, y and z, not followed by a division (integer halves). */
const REWRITABLE =
  /([A-Za-z_][\w.]*(?:\[[^\]]*\])?)\s*-\s*\(\s*([A-Za-z_][\w.]*)\s*-\s*([A-Za-z_][\w.]*)\s*\)(?!\s*\/)/g;

/** The offending expressions of one WGSL source, comments dropped, with their line numbers. */
export function rewritableDifferences(source: string): string[] {
  const found: string[] = [];
  source.split("\n").forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, "");
    for (const m of code.matchAll(REWRITABLE)) found.push(`line ${i + 1}: ${m[0].trim()}`);
  });
  return found;
}

Deno.test("the pattern finds two_sum's error written plainly and passes it written through opaque()", () => {
  assert.deepEqual(rewritableDifferences("  return vec2<f32>(s, (a - (s - bb)) + (b - bb));"), [
    "line 1: a - (s - bb)",
  ]);
  assert.deepEqual(rewritableDifferences("  let e = (p.hi - (s - bb)) + (q.hi - bb);"), [
    "line 1: p.hi - (s - bb)",
  ]);
  assert.deepEqual(
    rewritableDifferences("  return vec2<f32>(s, opaque(a - opaque(s - bb)) + (b - bb));"),
    [],
  );
  assert.deepEqual(
    rewritableDifferences("  let h = pow2(ep - e - (ep - e) / 2); // a - (b - c)"),
    [],
  );
});

Deno.test("no shader writes an exact error as x - (y - z) outside opaque()", async () => {
  const dir = new URL("../shaders/", import.meta.url);
  const offending: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".wgsl")) continue;
    const source = await Deno.readTextFile(new URL(entry.name, dir));
    for (const hit of rewritableDifferences(source)) offending.push(`${entry.name} ${hit}`);
  }
  assert.deepEqual(offending.sort(), []);
});
