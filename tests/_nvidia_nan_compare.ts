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
 *   deno test -A --preload tests/_nvidia_nan_compare.ts tests/X_test.ts
 *
 * (it imports the flush emulation first; `--preload tests/_nvidia_division.ts` before it for
 * NVIDIA's division as well).
 *
 * @module
 */
import "./_nvidia_flush.ts";
import {
  bodyExpressions,
  functions,
  type Node,
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
  const toks = tokenize(src);
  // Each edit replaces src[s, e) with text (s = e: an insertion).
  const edits: { s: number; e: number; text: string }[] = [];
  let sites = 0;
  for (const [name, fn] of functions(src)) {
    if (name.startsWith("nv_")) continue;
    const { roots } = bodyExpressions(src, toks, fn);
    const visit = (n: Node) => {
      n.kids.forEach(visit);
      if (n.op && n.op in OPS && (isFlushCall(n.l!) || isFlushCall(n.r!))) {
        sites++;
        edits.push({ s: n.l!.s, e: n.l!.s, text: `${OPS[n.op][0]}(` });
        edits.push({ s: n.l!.e, e: n.r!.s, text: ", " });
        edits.push({ s: n.r!.e, e: n.r!.e, text: ")" });
      }
    };
    roots.forEach(visit);
  }
  // From the end, so that earlier offsets stay valid; at one offset, the later edit first (an
  // inner comparison's closing parenthesis before an outer one's).
  const order = edits.map((edit, k) => ({ edit, k })).sort((a, b) =>
    b.edit.s - a.edit.s || b.k - a.k
  );
  let code = src;
  for (const { edit } of order) code = code.slice(0, edit.s) + edit.text + code.slice(edit.e);
  return { code: NV_COMPARE_WGSL + code, sites };
}

/** Every source of the WebGPU backend with its comparisons flipped for NaN. */
export const FLIPPED: Record<string, { code: string; sites: number }> = await rewriteBackendSources(
  "fn nv_nan(",
  (_device, src) => Promise.resolve(flipNanComparisons(src)),
);
