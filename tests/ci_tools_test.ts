/**
 * .ci/check_tools is what stops a tool that exists only by accident (installed by hand, or as a
 * Recommends that `--no-install-recommends` skips on a fresh machine) from passing CI. These tests
 * pose a tool from nowhere first on PATH and check that the script fails, naming the tool and the
 * package .ci/run should have installed it from.
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

/** Runs .ci/check_tools with executables named `fakes` (from no package) first on PATH. */
async function checkTools(fakes: string[]): Promise<{ code: number; stderr: string }> {
  // The fakes are made by the subprocess, so the test needs no write permission.
  const script = `d=$(mktemp -d) && for f in "$@"; do printf '#!/bin/sh\\n' >"$d/$f"; ` +
    `chmod +x "$d/$f"; done; PATH="$d:$PATH" bash .ci/check_tools; rc=$?; rm -rf "$d"; exit $rc`;
  const { code, stderr } = await new Deno.Command("bash", {
    args: ["-c", script, "check", ...fakes],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

Deno.test("check_tools fails, naming rust-lld and lld-14, when rust-lld comes from no package", async () => {
  const { code, stderr } = await checkTools(["rust-lld"]);
  assert.notEqual(code, 0);
  assert.match(stderr, /rust-lld: .* not by lld-14/);
});

Deno.test("check_tools fails, naming deno and its npm package, when deno is not the npm one", async () => {
  const { code, stderr } = await checkTools(["deno"]);
  assert.notEqual(code, 0);
  assert.match(stderr, /deno: .* not into \.\/node_modules\/deno from npm package deno@2\.9\.6/);
});

Deno.test("README's Development section names every package in .ci/packages", async () => {
  const list = await Deno.readTextFile(new URL(".ci/packages", root));
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const development = readme.slice(readme.indexOf("## Development"));
  const packages = list.split("\n").filter((l) => l.trim() && !l.startsWith("#"))
    .map((l) => l.split(/\s+/)[0].replace(/^npm:/, ""));
  assert.ok(packages.includes("lld-14"), "lld-14 must be listed (rust-lld)");
  const missing = packages.filter((p) => !development.includes(`\`${p}\``));
  assert.deepEqual(
    missing,
    [],
    "packages .ci/run installs that README's Development section omits",
  );
});

/** The lines of a demo run that .ci/check_demo_figures.ts reads (seed 7 at 250d42c). */
const DEMO_OUTPUT = `
batch  2: train acc  95.5% (2048 samples), held-out test acc  92.7%  (4096 steps, 5.9 s, SN layers on wasm)
batch 32: train acc  94.1% (2048 samples), held-out test acc  92.9%  (256 steps, 4.2 s, SN layers on wasm)

learned importance weights (SN1d has no IN):
                      means                variances
layer          batch     IN     LN     BN       IN     LN     BN
conv1 -> SN2d      2  0.426  0.171  0.404    0.279  0.451  0.270
                  32  0.432  0.180  0.388    0.439  0.308  0.253
conv2 -> SN2d      2  0.416  0.101  0.483    0.331  0.400  0.269
                  32  0.443  0.134  0.423    0.474  0.201  0.324
fc1 -> SN1d        2      -  0.857  0.143        -  0.950  0.050
                  32      -  0.107  0.893        -  0.368  0.632

BN importance, averaged over the 6 mixings (means and variances of 3 SN layers): 0.270 at batch 2, 0.486 at batch 32 (0.389 at initialisation); lower at batch 2 in 3 of 6 mixings.
`;

Deno.test("check_demo_figures reads every figure of the demo's output as the README words it", async () => {
  const { demoFigures, FIGURES } = await import("../.ci/check_demo_figures.ts");
  assert.deepEqual(demoFigures(DEMO_OUTPUT).map((f) => f.text), [
    "92.7% (2)",
    "92.9% (32)",
    "means 0.857, variances 0.950",
    "means 0.893, variances 0.632",
    "every weight between 0.101 and 0.483",
    "0.270 at batch 2 against 0.486 at batch 32",
    "in 3 of the 6 mixings",
  ]);
  assert.equal(FIGURES, 7);
});

Deno.test("check_demo_figures names a figure the README quotes stale, and passes on a line break", async () => {
  const { staleFigures } = await import("../.ci/check_demo_figures.ts");
  const readme = "reach 92.7% (2) and 92.9% (32); LN (means 0.857, variances\n0.950), BN (means " +
    "0.893, variances 0.632), every weight between 0.101 and 0.483, 0.270 at batch 2 against " +
    "0.486 at batch 32, lower in 3 of the 6 mixings";
  assert.deepEqual(staleFigures(DEMO_OUTPUT, readme), []);
  const stale = staleFigures(DEMO_OUTPUT, readme.replace("0.270 at batch 2", "0.261 at batch 2"));
  assert.deepEqual(stale.map((f) => f.what), ["the average BN importance"]);
});
