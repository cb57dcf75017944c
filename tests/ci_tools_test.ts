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
