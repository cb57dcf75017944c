/**
 * A tokenizer and expression parser for the shaders' WGSL, and the compiler's error positions:
 * what the test-only rewrites tests/_nvidia_fma.ts and tests/_nvidia_flush.ts share (importing
 * this module installs nothing; rewriteBackendSources installs what it is given).
 *
 * @module
 */
import { LAZY_SOURCES, SOURCES } from "../backends/_webgpu_pipelines.ts";
import { withDevice } from "./_run_shader.ts";

/**
 * Rewrites every source of the WebGPU backend (SOURCES and LAZY_SOURCES, before any pipeline
 * compiles them) with `rewrite`, on a device of its own; sources that already hold `marker` (a
 * function the rewrite adds) are left as they are. Returns what the rewrite reported per kind.
 */
export async function rewriteBackendSources<T extends { code: string }>(
  marker: string,
  rewrite: (device: GPUDevice, src: string) => Promise<T>,
): Promise<Record<string, T>> {
  const report: Record<string, T> = {};
  await withDevice(async (device) => {
    for (const record of [SOURCES, LAZY_SOURCES] as Record<string, string>[]) {
      for (const key of Object.keys(record)) {
        if (record[key].includes(marker)) continue;
        report[key] = await rewrite(device, record[key]);
        record[key] = report[key].code;
      }
    }
  });
  return report;
}

/** A rewrite's site: its id keys its output span, state 0 (or below) leaves it as written. */
export interface RewriteSite {
  id: number;
  state: number;
}

/**
 * Compiles `text()` until the compiler accepts it: the site whose output span (spans) is the
 * smallest that holds a position the compiler's error points at is advanced (`advance`, which
 * sets its next state); an error no enabled site explains, or more than `rounds`, throws.
 */
export async function settleSites<S extends RewriteSite>(
  device: GPUDevice,
  text: () => string,
  sites: S[],
  spans: Map<number, [number, number]>,
  advance: (site: S) => void,
  who: string,
  rounds: number,
): Promise<string> {
  for (let round = 0;; round++) {
    const code = text();
    const message = await compileError(device, code);
    if (message === undefined) return code;
    const positions = errorPositions(message, code);
    let best: S | undefined;
    let size = Infinity;
    for (const site of sites) {
      const span = spans.get(site.id);
      if (!span || site.state <= 0) continue;
      if (positions.some((q) => q >= span[0] && q < span[1]) && span[1] - span[0] < size) {
        best = site;
        size = span[1] - span[0];
      }
    }
    if (!best || round > rounds) {
      throw new Error(`${who}: a compile error no site explains:\n${message}`);
    }
    advance(best);
  }
}

export interface Token {
  t: string;
  s: number;
  e: number;
  kind: "id" | "num" | "p";
}

const PUNCT3 = ["<<=", ">>="];
const PUNCT2 = [
  "->",
  "<=",
  ">=",
  "==",
  "!=",
  "&&",
  "||",
  "<<",
  "+=",
  "-=",
  "*=",
  "/=",
  "%=",
  "&=",
  "|=",
  "^=",
  "++",
  "--",
];

export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (src.startsWith("//", i)) {
      const j = src.indexOf("\n", i);
      i = j < 0 ? src.length : j;
      continue;
    }
    if (src.startsWith("/*", i)) {
      const j = src.indexOf("*/", i + 2);
      i = j < 0 ? src.length : j + 2;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i, i + 200));
    if (id) {
      out.push({ t: id[0], s: i, e: i + id[0].length, kind: "id" });
      i += id[0].length;
      continue;
    }
    const num =
      /^(0[xX][0-9a-fA-F]*(\.[0-9a-fA-F]*)?([pP][+-]?\d+)?[iufh]?|(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?[iufh]?)/
        .exec(
          src.slice(i, i + 100),
        );
    if (num && /[\d.]/.test(c) && num[0] !== ".") {
      out.push({ t: num[0], s: i, e: i + num[0].length, kind: "num" });
      i += num[0].length;
      continue;
    }
    const p = PUNCT3.find((q) => src.startsWith(q, i)) ?? PUNCT2.find((q) =>
      src.startsWith(q, i)
    ) ??
      c;
    out.push({ t: p, s: i, e: i + p.length, kind: "p" });
    i += p.length;
  }
  return out;
}

/** A parsed expression: its span in the source and the sub-expressions inside it. */
export interface Node<S = unknown> {
  s: number;
  e: number;
  kids: Node<S>[];
  op?: string; // a binary operator
  l?: Node<S>;
  r?: Node<S>;
  paren?: Node<S>; // ( inner )
  ident?: string; // a lone identifier
  call?: string; // a call's function (its arguments are kids)
  site?: S;
}

const TEMPLATED = new Set([
  "vec2",
  "vec3",
  "vec4",
  "mat2x2",
  "mat3x3",
  "mat4x4",
  "array",
  "bitcast",
  "ptr",
  "atomic",
]);
export const KEYWORDS = new Set([
  "let",
  "var",
  "const",
  "return",
  "if",
  "else",
  "for",
  "while",
  "loop",
  "break",
  "continue",
  "continuing",
  "switch",
  "case",
  "default",
  "fn",
  "struct",
  "override",
  "discard",
]);
const PREC: Record<string, number> = {
  "||": 1,
  "&&": 2,
  "|": 3,
  "^": 4,
  "&": 5,
  "==": 6,
  "!=": 6,
  "<": 7,
  ">": 7,
  "<=": 7,
  ">=": 7,
  "<<": 8,
  ">>": 8,
  "+": 9,
  "-": 9,
  "*": 10,
  "/": 10,
  "%": 10,
};

export class Parser<S = unknown> {
  pos = 0;
  constructor(readonly toks: Token[], readonly src: string) {}
  peek(k = 0): Token | undefined {
    return this.toks[this.pos + k];
  }
  /** The binary operator at pos (">" ">" adjacent is ">>"), or undefined. */
  binop(): string | undefined {
    const t = this.peek();
    if (!t || t.kind !== "p") return undefined;
    if (t.t === ">") {
      const n = this.peek(1);
      if (n && n.s === t.e && n.t === ">") return ">>";
      if (n && n.s === t.e && n.t === "=") return ">=";
    }
    return t.t in PREC ? t.t : undefined;
  }
  expr(min = 1): Node<S> {
    let left = this.unary();
    for (;;) {
      const op = this.binop();
      if (!op || PREC[op] < min) return left;
      this.pos += op === ">>" || (op === ">=" && this.peek()!.t === ">") ? 2 : 1;
      const right = this.expr(PREC[op] + 1);
      left = { s: left.s, e: right.e, kids: [left, right], op, l: left, r: right };
    }
  }
  unary(): Node<S> {
    const t = this.peek();
    if (t && t.kind === "p" && ["-", "!", "~", "*", "&"].includes(t.t)) {
      this.pos++;
      const inner = this.unary();
      return { s: t.s, e: inner.e, kids: [inner] };
    }
    return this.postfix(this.primary());
  }
  primary(): Node<S> {
    const t = this.peek();
    if (!t) throw new Error("unexpected end");
    if (t.t === "(") {
      this.pos++;
      const inner = this.expr();
      const close = this.expect(")");
      return { s: t.s, e: close.e, kids: [inner], paren: inner };
    }
    if (t.kind === "num") {
      this.pos++;
      return { s: t.s, e: t.e, kids: [] };
    }
    if (t.kind === "id") {
      this.pos++;
      let e = t.e;
      if (TEMPLATED.has(t.t) && this.peek()?.t === "<") {
        let depth = 0;
        do {
          const q = this.peek()!;
          if (q.t === "<") depth++;
          if (q.t === ">") depth--;
          e = q.e;
          this.pos++;
        } while (depth > 0);
      }
      if (this.peek()?.t === "(") {
        this.pos++;
        const kids: Node<S>[] = [];
        while (this.peek()?.t !== ")") {
          kids.push(this.expr());
          if (this.peek()?.t === ",") this.pos++;
        }
        const close = this.expect(")");
        return { s: t.s, e: close.e, kids, call: t.t };
      }
      return { s: t.s, e, kids: [], ident: t.t };
    }
    throw new Error(`unexpected ${t.t} at ${t.s}`);
  }
  postfix(n: Node<S>): Node<S> {
    for (;;) {
      const t = this.peek();
      if (t?.t === ".") {
        this.pos += 2;
        n = { s: n.s, e: this.toks[this.pos - 1].e, kids: [n] };
      } else if (t?.t === "[") {
        this.pos++;
        const idx = this.expr();
        const close = this.expect("]");
        n = { s: n.s, e: close.e, kids: [n, idx] };
      } else return n;
    }
  }
  expect(s: string): Token {
    const t = this.peek();
    if (t?.t !== s) {
      throw new Error(`expected ${s} at ${t?.s}: ${this.src.slice(t?.s, (t?.s ?? 0) + 40)}`);
    }
    this.pos++;
    return t;
  }
}

export const strip = <S>(n: Node<S>): Node<S> => n.paren ? strip(n.paren) : n;

/** The output positions (offsets in `code`) a compiler error's labels point at. */
export function errorPositions(message: string, code: string): number[] {
  const starts = [0];
  for (let i = 0; i < code.length; i++) if (code[i] === "\n") starts.push(i + 1);
  const out: number[] = [];
  let line = -1;
  for (const text of message.split("\n")) {
    const loc = /wgsl:(\d+):(\d+)/.exec(text);
    if (loc) out.push(starts[Number(loc[1]) - 1] + Number(loc[2]) - 1);
    const src = /^\s*(\d+) │ /.exec(text);
    if (src) {
      line = Number(src[1]);
      continue;
    }
    const bar = text.indexOf("│");
    if (bar >= 0 && line > 0 && /^[\s│]*[\^-]/.test(text.slice(bar + 1))) {
      for (const m of text.slice(bar + 2).matchAll(/\^+|-+/g)) {
        out.push(starts[line - 1] + m.index!);
      }
    }
  }
  return out;
}

/** The compiler's message for `code`, or undefined where it compiles. */
export async function compileError(device: GPUDevice, code: string): Promise<string | undefined> {
  device.pushErrorScope("validation");
  device.createShaderModule({ code });
  const err = await device.popErrorScope();
  return err?.message;
}

/** A function's parameters (name, type), its header's end and its body's closing brace. */
export interface FnDecl {
  params: { name: string; type: string }[];
  headerS: number;
  bodyS: number; // just after `{`
  bodyE: number; // the closing `}`
  ret: string;
}

export function functions(src: string): Map<string, FnDecl> {
  const toks = tokenize(src);
  const out = new Map<string, FnDecl>();
  for (let i = 0; i < toks.length; i++) {
    if (toks[i].t !== "fn" || toks[i + 2]?.t !== "(") continue;
    const name = toks[i + 1].t;
    let j = i + 3;
    let depth = 0;
    const params: { name: string; type: string }[] = [];
    let cur: Token[] = [];
    const flush = () => {
      if (cur.length) {
        params.push({
          name: cur[0].t,
          type: src.slice(cur[2].s, cur[cur.length - 1].e).replace(/\s+/g, ""),
        });
      }
      cur = [];
    };
    for (; toks[j].t !== ")" || depth > 0; j++) {
      const t = toks[j];
      if (t.t === "<") depth++;
      if (t.t === ">") depth--;
      if (t.t === "," && depth === 0) flush();
      else cur.push(t);
    }
    flush();
    let k = j;
    while (toks[k].t !== "{") k++;
    const ret = src.slice(toks[j].e, toks[k].s);
    let braces = 0;
    let m = k;
    for (; m < toks.length; m++) {
      if (toks[m].t === "{") braces++;
      if (toks[m].t === "}" && --braces === 0) break;
    }
    out.set(name, { params, headerS: toks[i].s, bodyS: toks[k].e, bodyE: toks[m].s, ret });
  }
  return out;
}

/** Where an expression starts inside a function body: just after one of these tokens. */
const EXPRESSION_STARTS = new Set(["=", "+=", "-=", "*=", "return", "if", "while", "(", ","]);

/**
 * The expressions of function `fn`'s body in `src` (`toks`, its tokens): the outermost one after
 * each `=`, compound assignment, `return`, `if`, `while`, `(` or `,` (a call statement's arguments),
 * and the expression each `let` or `const` binds (a `var` may change later: not listed).
 * Offsets are `src`'s. Tokens this parser cannot read as an expression (a type, an attribute)
 * start none.
 */
export function bodyExpressions(
  src: string,
  toks: Token[],
  fn: FnDecl,
): { roots: Node[]; lets: Map<string, Node> } {
  const body = toks.filter((t) => t.s >= fn.bodyS && t.e <= fn.bodyE);
  const roots: Node[] = [];
  const lets = new Map<string, Node>();
  let bound: string | undefined; // the name a let or const is declaring, until its `=`
  for (let i = 0; i < body.length; i++) {
    const t = body[i].t;
    if (t === "let" || t === "const") bound = body[i + 1]?.t;
    if (t === "var" || t === ";") bound = undefined;
    if (!EXPRESSION_STARTS.has(t)) continue;
    let node: Node;
    try {
      node = new Parser(body.slice(i + 1), src).expr();
    } catch {
      continue;
    }
    if (t === "=" && bound !== undefined) lets.set(bound, node);
    bound = undefined;
    if (!roots.some((r) => r.s <= node.s && node.e <= r.e)) roots.push(node);
  }
  return { roots, lets };
}
