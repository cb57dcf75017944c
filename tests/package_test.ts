/**
 * What a user of the published package gets: the files, the API documentation (`deno doc`, which
 * JSR shows) and the text of every message. The package ships what runs plus its licence and
 * docs; its documented API names no type it does not export; and nothing a user reads points at
 * a file the package leaves out (benchmarks, tests, the Rust and WGSL sources, build scripts).
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

async function deno(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: root, stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno ${args.join(" ")} failed:\n${text}`);
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** Paths (relative to the root) that `deno publish` would upload. */
async function publishedFiles(): Promise<string[]> {
  const text = await deno("publish", "--dry-run", "--allow-dirty");
  return [...text.matchAll(/^\s+(file:\/\/\S+) \(/gm)]
    .map((m) => decodeURIComponent(m[1].slice(root.href.length))).sort();
}

Deno.test("the published package is mod.ts's module graph plus README, LICENSE and deno.json", async () => {
  const graph = JSON.parse(await deno("info", "--json", "mod.ts")) as {
    modules: { specifier: string }[];
  };
  const modules = graph.modules.map((m) => m.specifier.slice(root.href.length));
  const expected = [...modules, "README.md", "LICENSE", "deno.json"].sort();
  assert.deepEqual(await publishedFiles(), expected);
});

Deno.test("the documented API refers only to types that mod.ts exports", async () => {
  const doc = JSON.parse(await deno("doc", "--json", "mod.ts"));
  const mod = doc.nodes[new URL("mod.ts", root).href];
  const exported = new Set<string>(mod.symbols.map((s: { name: string }) => s.name));
  const hidden = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (typeof v !== "object" || v === null) return;
    const node = v as Record<string, unknown>;
    for (const p of (node.typeParams ?? []) as { name: string }[]) exported.add(p.name);
    if (node.kind === "typeRef") {
      const ref = node.value as { typeName: string; resolution?: unknown };
      // Only types declared in the package resolve to a file; globals (Float32Array, GPUBuffer)
      // do not. Type parameters are declared before use, so the walk has seen them.
      if (ref.resolution !== undefined && !exported.has(ref.typeName)) hidden.add(ref.typeName);
    }
    Object.values(node).forEach(walk);
  };
  walk(mod);
  assert.deepEqual([...hidden], [], "types in the documented API that a user cannot import");
  const text = JSON.stringify(mod);
  assert.doesNotMatch(text, /@internal/);
});

/** References to what the package does not ship. */
const UNSHIPPED = /\b(bench|tests|examples|\.ci|wasm\/src)\/|\.wgsl\b|\.rs\b|build\.sh|deno task/;

Deno.test("no message or public doc names a file the published package leaves out", async () => {
  const doc = await deno("doc", "--json", "mod.ts");
  const docs = [...doc.matchAll(/"doc":\s*"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  assert.deepEqual(docs.filter((d) => UNSHIPPED.test(d)), [], "public docs");
  for (const path of await publishedFiles()) {
    if (!path.endsWith(".ts") || path === "shaders/_wgsl.ts") continue; // _wgsl.ts: shader text
    const source = await Deno.readTextFile(new URL(path, root));
    // Code only: comments are for whoever reads the sources, who has them all.
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|\s)\/\/.*$/gm, "$1");
    const hits = code.split("\n").filter((line) => UNSHIPPED.test(line));
    assert.deepEqual(hits, [], `${path}: strings naming files the package does not ship`);
  }
});
