/**
 * Every float32 division of the shaders goes through div_f32 (shaders/common.wgsl), by fdiv or
 * fdiv_n: NVIDIA's Vulkan driver divides as a times an approximate reciprocal, 0 for |b| above
 * 2^126 and a subnormal b flushed (tests/fuzz/adapter_float_probe.ts), which lavapipe and
 * SwiftShader do not, so a raw float `/` could divide wrongly there unseen by any test here;
 * through div_f32, tests/_nvidia_division.ts emulates it on any adapter.
 *
 * WGSL gives `/` to floats and integers alike, and the source does not say which an operand is;
 * the shader compiler does. For each `/` of each .wgsl file (comments dropped) this test compiles
 * a shader that includes the file with the left operand multiplied by 1u, and again by 1i
 * (`x / y` becomes `x * 1u / y`, a valid multiplicative chain whose left part keeps its type):
 * one of them compiles only where the division is of u32 or i32 operands. Any other `/` is a
 * float division and fails the test (div_f32's own excepted).
 *
 * @module
 */
import assert from "node:assert/strict";
import { SHADERS } from "../shaders/_build.ts";
import { DIV_F32 } from "./_nvidia_division.ts";
import { webgpuTest } from "./_webgpu.ts";
import { withDevice } from "./_run_shader.ts";

const dir = new URL("../shaders/", import.meta.url);

/** The .wgsl files of shaders/, by name. */
async function readShaders(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".wgsl")) {
      files.set(entry.name, await Deno.readTextFile(new URL(entry.name, dir)));
    }
  }
  return files;
}

/** `file`'s text with its `//!include` lines expanded (as shaders/_build.ts does). */
function expand(files: ReadonlyMap<string, string>, file: string): string {
  const text = files.get(file);
  if (text === undefined) throw new Error(`no shader file ${file}`);
  return text.split("\n").map((line) => {
    const m = line.match(/^\/\/!include (\S+)$/);
    return m ? expand(files, m[1]) : line;
  }).join("\n");
}

/** The files `file` includes, itself among them. */
function closure(files: ReadonlyMap<string, string>, file: string): Set<string> {
  const out = new Set([file]);
  for (const m of (files.get(file) ?? "").matchAll(/^\/\/!include (\S+)$/gm)) {
    for (const f of closure(files, m[1])) out.add(f);
  }
  return out;
}

/** The offsets of the division operators (`/` and `/=`) of a WGSL text, comments dropped. */
export function divisions(text: string): number[] {
  const code = text.replace(/\/\/[^\n]*/g, (c) => " ".repeat(c.length));
  return [...code.matchAll(/\//g)].map((m) => m.index!);
}

/** `text` with the division at `at` made to require `ty` (u32 or i32) operands. */
export function probe(text: string, at: number, ty: "1u" | "1i"): string {
  return text[at + 1] === "="
    ? text.slice(0, at + 2) + ` ${ty} *` + text.slice(at + 2)
    : text.slice(0, at) + `* ${ty} ` + text.slice(at);
}

async function compiles(device: GPUDevice, code: string): Promise<boolean> {
  device.pushErrorScope("validation");
  device.createShaderModule({ code });
  return (await device.popErrorScope()) === null;
}

/** Whether the division at `at` of `text` (a whole module) divides integers. */
async function isIntegerDivision(device: GPUDevice, text: string, at: number): Promise<boolean> {
  return await compiles(device, probe(text, at, "1u")) ||
    await compiles(device, probe(text, at, "1i"));
}

Deno.test("div_f32 holds the shaders' one raw float division, as tests/_nvidia_division.ts replaces it", async () => {
  const common = await Deno.readTextFile(new URL("common.wgsl", dir));
  assert.equal(common.split(DIV_F32).length, 2);
  assert.equal(divisions(DIV_F32).length, 1);
});

webgpuTest("the probe tells float divisions from integer ones", async () => {
  await withDevice(async (device) => {
    const module = [
      "fn f(a: f32, b: f32, c: f32) -> f32 { return a * b / c; }",
      "fn g(a: u32, b: u32) -> u32 { return (a + 1u) / b; }",
      "fn h(a: vec3<i32>) -> vec3<i32> { return -a / i32(2); }",
      "fn k(a: vec2<f32>) -> vec2<f32> { var v = a; v /= 2.0; return v / 3; }",
      "fn m(a: u32) -> u32 { var v = a; v /= 2u; return v; }",
    ].join("\n");
    assert(await compiles(device, module));
    const found = [];
    for (const at of divisions(module)) found.push(await isIntegerDivision(device, module, at));
    assert.deepEqual(found, [false, true, true, false, false, true]);
  });
});

webgpuTest("every float division of the shaders goes through div_f32 (fdiv, fdiv_n)", async () => {
  const files = await readShaders();
  const hosts = Object.values(SHADERS);
  const floats: string[] = [];
  await withDevice(async (device) => {
    for (const [file, text] of [...files].sort()) {
      const host = hosts.find((h) => files.has(h) && closure(files, h).has(file));
      const ats = divisions(text);
      if (ats.length === 0) continue;
      assert(host, `${file} is in no shader`);
      const own = file === "common.wgsl" ? text.indexOf(DIV_F32) : -1;
      assert(await compiles(device, expand(files, host)), `${host} compiles`);
      for (const at of ats) {
        if (own >= 0 && at > own && at < own + DIV_F32.length) continue;
        const probed = new Map(files).set(file, probe(text, at, "1u"));
        const probedI = new Map(files).set(file, probe(text, at, "1i"));
        if (
          await compiles(device, expand(probed, host)) ||
          await compiles(device, expand(probedI, host))
        ) continue;
        const line = text.slice(0, at).split("\n").length;
        floats.push(`${file}:${line}: ${text.split("\n")[line - 1].trim()}`);
      }
    }
  });
  assert.deepEqual(floats, []);
});
