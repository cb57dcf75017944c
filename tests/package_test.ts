/**
 * What a user of the published package gets: the files, the API documentation (`deno doc`, which
 * JSR shows) and the text of every message. The package ships what runs plus its licence and
 * docs; its documented API names no type it does not export; and nothing a user reads points at
 * a file the package leaves out (benchmarks, tests, the Rust and WGSL sources, build scripts).
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

async function deno(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno ${args.join(" ")} failed:\n${text}`);
  return text;
}

/** Paths (relative to the root) that `deno publish` would upload. */
async function publishedFiles(): Promise<string[]> {
  const text = await deno("publish", "--dry-run", "--allow-dirty");
  return [...text.matchAll(/^\s+(file:\/\/\S+) \(/gm)]
    .map((m) => decodeURIComponent(m[1].slice(root.href.length))).sort();
}

Deno.test("the published package is mod.ts's module graph plus README, NUMERICS.md, bench/RESULTS.md, LICENSE and deno.json", async () => {
  const graph = JSON.parse(await deno("info", "--json", "mod.ts")) as {
    modules: { specifier: string }[];
  };
  const modules = graph.modules.map((m) => m.specifier.slice(root.href.length));
  const expected = [
    ...modules,
    "README.md",
    "NUMERICS.md",
    "bench/RESULTS.md", // the README's benchmark record: its links would 404 on jsr.io without it
    "LICENSE",
    "deno.json",
  ].sort();
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
      const ref = node.value as { typeName: string; resolution?: { kind: string } };
      // Only types declared in the package resolve to a file (import, local); globals such as
      // Float32Array or GPUBuffer do not. Type parameters seen so far count as declared too.
      const declared = ref.resolution?.kind === "import" || ref.resolution?.kind === "local";
      if (declared && !exported.has(ref.typeName)) hidden.add(ref.typeName);
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

/** Public members that can throw (or reject): their docs must say so with @throws. */
const THROWING = [
  "SwitchNorm.train",
  "SwitchNorm.running_mean",
  "SwitchNorm.running_var",
  "SwitchNorm.radius",
  "SwitchNorm.loadStateDict",
  "SwitchNorm.stateDict",
  "SwitchNorm.finalizeBatchAverage",
  "SwitchNorm.sync",
  "SwitchNorm.forward",
  "SwitchNorm.backward",
  "SwitchNorm.upload",
  "SwitchNorm1d.constructor",
  "SwitchNorm2d.constructor",
  "SwitchNorm3d.constructor",
  "GpuTensor.buffer",
  "GpuTensor.read",
  "webgpuDevice",
  "wrapGpuBuffer",
];

Deno.test("public methods have an @example, and those that can throw say what with @throws", async () => {
  const doc = JSON.parse(await deno("doc", "--json", "mod.ts"));
  const mod = doc.nodes[new URL("mod.ts", root).href];
  type Documented = { name?: string; kind?: string; jsDoc?: { tags?: { kind: string }[] } };
  /** Tags per member name, over all its declarations (overloads, getter and setter). */
  const tags = new Map<string, Set<string>>();
  const methods = new Set<string>();
  const add = (name: string, d: Documented) => {
    const set = tags.get(name) ?? new Set<string>();
    for (const t of d.jsDoc?.tags ?? []) set.add(t.kind);
    tags.set(name, set);
  };
  type ClassDef = { extends?: string; methods?: Documented[]; constructors?: Documented[] };
  const classes = new Map<string, ClassDef>();
  for (const sym of mod.symbols) {
    for (const decl of sym.declarations) if (decl.kind === "class") classes.set(sym.name, decl.def);
  }
  /** A class's methods with those it inherits from a class of the package (e.g. SwitchNormState). */
  const methodsOf = (def: ClassDef): Documented[] => [
    ...(def.methods ?? []),
    ...(def.extends && classes.has(def.extends) ? methodsOf(classes.get(def.extends)!) : []),
  ];
  for (const sym of mod.symbols) {
    for (const decl of sym.declarations) {
      if (decl.kind === "function") {
        add(sym.name, decl);
        methods.add(sym.name);
      }
      if (decl.kind !== "class") continue;
      for (const m of methodsOf(decl.def)) {
        add(`${sym.name}.${m.name}`, m);
        // Methods proper need an example; getters and `[Symbol.dispose]` may rely on others'.
        if (m.kind === "method" && !String(m.name).startsWith("[")) {
          methods.add(`${sym.name}.${m.name}`);
        }
      }
      for (const c of (decl.def.constructors ?? []) as Documented[]) {
        add(`${sym.name}.constructor`, c);
      }
    }
  }
  const missing = [
    ...THROWING.filter((name) => !tags.get(name)?.has("throws")).map((n) => `${n}: @throws`),
    ...[...methods].filter((name) => !tags.get(name)?.has("example")).map((n) => `${n}: @example`),
  ];
  assert.deepEqual(missing, []);
});
