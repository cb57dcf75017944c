/**
 * The shaders' exact-error formulas (two_sum and its inlined copies) must not be written so that
 * a shader compiler may fold them away. Compilers rewrite float arithmetic as if it were exact:
 * lavapipe's turns (a + b) - a into b, and NVIDIA's Vulkan driver (an H200, driver 580, measured
 * with tests/fuzz/adapter_float_probe.ts) turns s - (s - a) into a, which made two_sum's error 0
 * or wrong there: 261 WebGPU range tests failed on that GPU (y 400x off on rows of std 1e-7 beside
 * rows of 1e5, `grads.mean_weight` 6e13x off), 38 after every intermediate went through opaque()
 * (shaders/common.wgsl). lavapipe, which CI runs, does not make the second rewrite, so no test
 * run there can see it; this test reads the WGSL instead: no float expression x - (y - z) may
 * appear outside opaque(), the form that the rewrite s - (s - a) -> a matches. And, through
 * `let` bindings as the compilers see them (tests/_wgsl_rewrites.ts), none of the other forms
 * the probe found rewritten: (a + b) - a, a / a, (a * b) / b and their mirror images (session
 * 51: none in the shaders; one integer site, exact either way).
 *
 * @module
 */
import assert from "node:assert/strict";
import { rewriteSites } from "./_wgsl_rewrites.ts";

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

/** Every WGSL file of shaders/ as [name, source]. */
async function shaderFiles(): Promise<[string, string][]> {
  const dir = new URL("../shaders/", import.meta.url);
  const out: [string, string][] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".wgsl")) continue;
    out.push([entry.name, await Deno.readTextFile(new URL(entry.name, dir))]);
  }
  return out;
}

Deno.test("no shader writes an exact error as x - (y - z) outside opaque()", async () => {
  const offending = (await shaderFiles()).flatMap(([name, source]) =>
    rewritableDifferences(source).map((hit) => `${name} ${hit}`)
  );
  assert.deepEqual(offending.sort(), []);
});

/**
 * Integer sites rewriteSites matches whose rewrite changes nothing (integer arithmetic is exact),
 * as `FILE fn NAME: FORM: EXPR`.
 */
const EXACT_INTEGER_SITES = [
  // es - ex with ex = norm_exp(xc) + o + es: i32 exponents
  "sn1d_bwd_element.wgsl fn wide_element: P-(P+Q): es-ex",
];

Deno.test("the rewrite finder sees each form through let bindings and division calls, and not through opaque()", () => {
  const plain = [
    "fn two_sum_plain(a: f32, b: f32) -> vec2<f32> {",
    "  let s = a + b;",
    "  let bb = s - a;",
    "  return vec2<f32>(s, (a - (s - bb)) + (b - bb));",
    "}",
    "fn more(a: f32, b: f32) -> f32 {",
    "  let d = a - b;",
    "  let e = (d + b) + (b + (a - b)) + ((a - b) - a) + (a - (a + b));",
    "  let p = a * b;",
    "  return fdiv_n(p, b) + fdiv(a, a) + (a * b) / a;",
    "}",
  ].join("\n");
  assert.deepEqual(
    rewriteSites(plain).sort(),
    [
      "line 3, fn two_sum_plain: (P+Q)-P: s-a",
      "line 4, fn two_sum_plain: P-(P-Q): s-bb",
      "line 8, fn more: (P-Q)+Q: d+b",
      "line 8, fn more: (P-Q)-P: (a-b)-a",
      "line 8, fn more: P-(P+Q): a-(a+b)",
      "line 8, fn more: Q+(P-Q): b+(a-b)",
      "line 10, fn more: (a*b)/b: (a*b)/a",
      "line 10, fn more: (a*b)/b: fdiv_n(p,b)",
      "line 10, fn more: a/a: fdiv(a,a)",
    ].sort(),
  );
  const guarded = [
    "fn two_sum(a: f32, b: f32) -> vec2<f32> {",
    "  let s = opaque(a + b);",
    "  let bb = opaque(s - a);",
    "  return vec2<f32>(s, opaque(a - opaque(s - bb)) + (b - bb));",
    "}",
  ].join("\n");
  assert.deepEqual(rewriteSites(guarded), []);
});

Deno.test("no shader leaves a float expression that a compiler may rewrite as exact outside opaque()", async () => {
  const found = (await shaderFiles()).flatMap(([name, source]) =>
    rewriteSites(source).map((site) => `${name} ${site.replace(/^line \d+, /, "")}`)
  );
  assert.deepEqual(found.sort(), [...EXACT_INTEGER_SITES].sort());
});
