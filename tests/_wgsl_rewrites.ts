/**
 * The algebraic rewrites shader compilers make as if float arithmetic were exact, found in WGSL
 * source through `let` bindings (the compilers see through them): NVIDIA's Vulkan driver turns
 * (a + b) - a into b, s - (s - a) into a, a / a into 1 (also for a = 0) and (a * b) / b into a
 * (tests/fuzz/adapter_float_probe.ts, an H100 and an H200); lavapipe the first. Where a formula
 * depends on the rounding of such an expression (two_sum's error, a bound, a guard against
 * overflow), the rewrite changes the result on that GPU only, which no CPU adapter shows. The
 * shaders write every such intermediate through opaque() (shaders/common.wgsl), whose result is
 * a call, not a sum, so these forms do not match it. Test-only (wgsl_exact_error_guard_test.ts).
 *
 * @module
 */
import { bodyExpressions, functions, type Node, strip, tokenize } from "./_wgsl_parse.ts";

const DIVISIONS = new Set(["fdiv", "fdiv_n", "div_f32"]);
const compact = (s: string) => s.replace(/\s+/g, "");

/**
 * The sites of one WGSL source where a compiler's exact-arithmetic rewrite applies: each as
 * `line N, fn NAME: FORM: EXPR`, EXPR the matched expression without spaces. Operands are
 * compared as text, after following `let` and `const` names (two levels) within the function;
 * a division is `/` or a call of the shaders' division functions. Integer expressions match too
 * (their arithmetic is exact, so a rewrite changes nothing): callers list those they accept.
 */
export function rewriteSites(source: string): string[] {
  const found: string[] = [];
  const toks = tokenize(source);
  for (const [name, fn] of functions(source)) {
    const { roots, lets } = bodyExpressions(source, toks, fn);
    const text = (n: Node) => compact(source.slice(n.s, n.e));
    const follow = (n: Node, depth = 2): Node => {
      n = strip(n);
      const bound = n.ident === undefined ? undefined : lets.get(n.ident);
      return bound && depth > 0 ? follow(bound, depth - 1) : n;
    };
    const same = (a: Node, b: Node) =>
      text(strip(a)) === text(strip(b)) || text(follow(a)) === text(follow(b));
    const forms = (n: Node): string[] => {
      const out: string[] = [];
      if (n.op === "-" || n.op === "+") {
        const l = follow(n.l!);
        const r = follow(n.r!);
        if (n.op === "-") {
          if (l.op === "+" && (same(l.l!, n.r!) || same(l.r!, n.r!))) out.push("(P+Q)-P");
          if (r.op === "-" && same(r.l!, n.l!)) out.push("P-(P-Q)");
          if (r.op === "+" && (same(r.l!, n.l!) || same(r.r!, n.l!))) out.push("P-(P+Q)");
          if (l.op === "-" && same(l.l!, n.r!)) out.push("(P-Q)-P");
        } else {
          if (l.op === "-" && same(l.r!, n.r!)) out.push("(P-Q)+Q");
          if (r.op === "-" && same(r.r!, n.l!)) out.push("Q+(P-Q)");
        }
      }
      const call = n.call !== undefined && DIVISIONS.has(n.call) && n.kids.length === 2;
      if (n.op === "/" || call) {
        const [a, b] = n.op === "/" ? [n.l!, n.r!] : n.kids;
        const product = follow(a);
        if (same(a, b)) out.push("a/a");
        if (product.op === "*" && (same(product.l!, b) || same(product.r!, b))) {
          out.push("(a*b)/b");
        }
      }
      return out;
    };
    const walk = (n: Node) => {
      for (const form of forms(n)) {
        const line = source.slice(0, n.s).split("\n").length;
        found.push(`line ${line}, fn ${name}: ${form}: ${text(n)}`);
      }
      for (const kid of n.kids) walk(kid);
    };
    for (const root of roots) walk(root);
  }
  return found;
}
