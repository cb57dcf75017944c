/**
 * Float comparisons that take NaN the other way round, for CPU adapters (a test-only hook, run
 * after tests/_nvidia_flush.ts, whose rewrite marks the float comparisons: their operands pass
 * nv_ftz). A compiler that assumes no NaN (NVIDIA's Vulkan driver folds x - x to 0 and x != x to
 * false, tests/fuzz/adapter_float_probe.ts) may also turn !(a < b) into a >= b, so that a
 * comparison with a NaN operand gives true where IEEE gives false. This rewrite makes every
 * scalar float comparison give the opposite of IEEE's answer where an operand is NaN (true for
 * < > <= >= ==, false for !=), elsewhere IEEE's: a shader whose result depends on how a NaN
 * compares changes under it; one that keeps NaN out of its decisions (by bits, or by select()
 * after the comparison) does not.
 *
 *   deno test -A --preload tests/_nvidia_flush.ts --preload tests/_nvidia_nan_compare.ts \
 *     tests/X_test.ts
 *
 * @module
 */
import "./_nvidia_flush.ts";
import {
  functions,
  type Node,
  Parser,
  rewriteBackendSources,
  strip,
  tokenize,
} from "./_wgsl_parse.ts";

const OPS: Record<string, [string, boolean]> = {
  "<": ["nv_lt", true],
  ">": ["nv_gt", true],
  "<=": ["nv_le", true],
  ">=": ["nv_ge", true],
  "==": ["nv_eq", true],
  "!=": ["nv_ne", false],
};

/** The comparisons: IEEE's answer, the opposite where a or b is NaN (by its bits). */
export const NV_COMPARE_WGSL = `
fn nv_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}
` + Object.entries(OPS).map(([op, [name, flip]]) =>
  `fn ${name}(a: f32, b: f32) -> bool {
  return select(a ${op} b, ${flip}, nv_nan(a) || nv_nan(b));
}
`
).join("");

const isFlushCall = (n: Node) => strip(n).call === "nv_ftz";

/** `src` (flushed) with its scalar float comparisons replaced; how many. */
export function flipNanComparisons(src: string): { code: string; sites: number } {
  const edits: [number, number, string][] = [];
  for (const [name, fn] of functions(src)) {
    if (name.startsWith("nv_")) continue;
    const toks = tokenize(src).filter((t) => t.s >= fn.bodyS && t.e <= fn.bodyE);
    const taken: Node[] = [];
    for (let i = 0; i < toks.length; i++) {
      if (!["=", "return", "if", "while", "+=", "-=", "*=", "("].includes(toks[i].t)) continue;
      let node: Node;
      try {
        node = new Parser(toks.slice(i + 1), src).expr();
      } catch {
        continue;
      }
      if (taken.some((t) => t.s <= node.s && node.e <= t.e)) continue;
      taken.push(node);
    }
    const visit = (n: Node) => {
      n.kids.forEach(visit);
      if (n.op && n.op in OPS && (isFlushCall(n.l!) || isFlushCall(n.r!))) {
        edits.push([n.l!.s, n.l!.e, `${OPS[n.op][0]}(`]);
        edits.push([n.l!.e, n.r!.s, ", "]);
        edits.push([n.r!.e, n.r!.e, ")"]);
      }
    };
    taken.forEach(visit);
  }
  // Apply from the end: an edit at [s, e) with text; the first of each triple keeps the left
  // operand (its text is prefixed), the second replaces the operator, the third closes.
  const sorted = edits.map((e, k) => ({ e, k })).sort((a, b) => b.e[0] - a.e[0] || b.k - a.k);
  let code = src;
  for (const { e: [s, e, text] } of sorted) {
    code = text.endsWith("(")
      ? code.slice(0, s) + text + code.slice(s)
      : code.slice(0, s) + text + code.slice(e);
  }
  return { code: NV_COMPARE_WGSL + code, sites: edits.length / 3 };
}

/** Every source of the WebGPU backend with its comparisons flipped for NaN. */
export const FLIPPED: Record<string, { code: string; sites: number }> = await rewriteBackendSources(
  "fn nv_nan(",
  (_device, src) => Promise.resolve(flipNanComparisons(src)),
);
