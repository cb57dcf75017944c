/**
 * The engine of the test-only WGSL rewrites that wrap float32 operations (tests/_nvidia_flush.ts,
 * tests/_gpu_opaque.ts): it finds the sites of a source (every binary + - * / and x op= y with
 * its operands, the operands of comparisons, calls of sqrt, inverseSqrt, fma and nv_fma*, and
 * optionally abs, min, max, clamp and unary minus), and passes each float one through a wrapper
 * function of its width.
 *
 * Types: WGSL's arithmetic includes integer index arithmetic. A small inference (declared types,
 * literals, struct fields, builtins) tells most sites apart; every other candidate is wrapped in
 * floor() (which takes only float types), the module compiled, and the site the compiler's error
 * points at dropped, until the module compiles; then the widths (f32, vec2..4) are found the same
 * way (tests/_nvidia_fma.ts's trick). The states are kept per function text, so a function shared
 * by several passes (shaders/common.wgsl's) is probed once per process. The bodies of functions
 * named nv_* (the emulations' own helpers) are left alone.
 *
 * @module
 */
import {
  functions,
  KEYWORDS,
  type Node as ParseNode,
  Parser,
  settleSites,
  strip,
  tokenize,
} from "./_wgsl_parse.ts";

type Node = ParseNode<never>;

/** The binary float operators whose operands and result are sites. */
export const ARITH: ReadonlySet<string> = new Set(["+", "-", "*", "/"]);
/** The comparisons, whose operands are sites. */
export const COMPARE: ReadonlySet<string> = new Set(["<", ">", "<=", ">=", "==", "!="]);
/** With signMinMax: these calls and unary minus too. */
const SIGN_MINMAX_CALLS = ["abs", "min", "max", "clamp"];
/** Calls whose operands and result are sites (besides + - * /). */
const RESULT_CALLS = new Set([
  "sqrt",
  "inverseSqrt",
  "fma",
  "nv_fma",
  "nv_fma2",
  "nv_fma3",
  "nv_fma4",
]);
/** 0: off; 1..4: the wrapper for f32, vec2..4<f32>; PROBE: floor() (float or not). */
const PROBE = 9;

interface FSite {
  id: number;
  node: Node;
  state: number;
  tries: number;
  fn: string; // the enclosing function's text: the cache's key
  index: number; // the site's index within that function
}

/** A compound assignment `lhs op= rhs` (op one of + - * /), as a node of its own. */
interface Compound extends Node {
  compound: string;
}

type Types = Map<string, string>;

const norm = (t: string) => t.replace(/\s+/g, "");

/** A type's kind: "f1".."f4" (f32, vecN<f32>), "int" (integers, bools), else the type itself. */
function kindOf(t: string | undefined): string | undefined {
  if (!t) return undefined;
  t = norm(t);
  if (t.startsWith("ptr<")) t = t.slice(4, -1).split(",").slice(1).join(",");
  if (t === "f32" || t === "absfloat") return "f1";
  const v = /^vec([234])<(\w+)>$/.exec(t) ?? /^vec([234])([fiu])$/.exec(t);
  if (v) return v[2] === "f32" || v[2] === "f" ? `f${v[1]}` : "int";
  if (/^(u32|i32|bool|absint|atomic<.*>)$/.test(t)) return "int";
  return t;
}

/** The module's structs (field -> type) and its globals' types. */
function moduleTypes(src: string): { structs: Map<string, Types>; globals: Types } {
  const structs = new Map<string, Types>();
  for (const m of src.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}/g)) {
    const fields: Types = new Map();
    for (
      const f of m[2].replace(/\/\/[^\n]*/g, "").matchAll(
        /(?:@\w+(?:\([^)]*\))?\s*)*(\w+)\s*:\s*([^,]+?)\s*(?:,|$)/g,
      )
    ) {
      fields.set(f[1], norm(f[2]));
    }
    structs.set(m[1], fields);
  }
  const globals: Types = new Map();
  for (
    const m of src.matchAll(
      /^\s*(?:var(?:<[^>]*>)?|const|override|let)\s+(\w+)\s*:\s*([^=;]+?)\s*[=;]/gm,
    )
  ) {
    globals.set(m[1], norm(m[2]));
  }
  for (const m of src.matchAll(/^(?:const|override)\s+(\w+)\s*=\s*([^;]+);/gm)) {
    if (globals.has(m[1])) continue;
    const v = m[2].trim();
    globals.set(
      m[1],
      /^\d+[ui]$/.test(v)
        ? "u32"
        : /^[\d.]+(e[+-]?\d+)?f?$/.test(v) && /[.ef]/.test(v)
        ? "f32"
        : "",
    );
  }
  return { structs, globals };
}

/** Every float32 site of `src`, the text with their states, and where each one's text landed. */
class FloatSiteRewrite {
  sites: FSite[] = [];
  byNode = new Map<Node, FSite>();
  roots: Node[] = [];
  spans = new Map<number, [number, number]>();
  fns: { name: string; s: number; e: number; text: string; ret: string; counter: number }[] = [];
  private structs: Map<string, Types>;
  private globals: Types;
  private rets = new Map<string, string>();
  private locals: Types = new Map();
  private decls: ReturnType<typeof functions>;

  private calls: Set<string>;
  private ops: ReadonlySet<string>;
  readonly signMinMax: boolean;
  /** The wrappers' names: prefix (f32), prefix2..4 (vecN<f32>). */
  readonly wrappers: string[];

  constructor(readonly src: string, options: FloatSiteOptions) {
    this.signMinMax = options.signMinMax ?? false;
    this.ops = options.ops ?? new Set([...ARITH, ...COMPARE]);
    this.calls = new Set([
      ...(options.calls ?? true ? RESULT_CALLS : []),
      ...(this.signMinMax ? SIGN_MINMAX_CALLS : []),
    ]);
    const prefix = options.wrapper.prefix;
    this.wrappers = ["", prefix, `${prefix}2`, `${prefix}3`, `${prefix}4`];
    const m = moduleTypes(src);
    this.structs = m.structs;
    this.globals = m.globals;
    this.decls = functions(src);
    for (const [name, f] of this.decls) {
      const ret = norm(f.ret.replace(/^\s*->\s*/, "").replace(/@\w+(\([^)]*\))?/g, ""));
      this.rets.set(name, ret);
      this.fns.push({
        name,
        s: f.headerS,
        e: f.bodyE,
        text: src.slice(f.headerS, f.bodyE),
        ret,
        counter: 0,
      });
    }
    this.parse();
  }

  /** A node's type ("f32", "vec3<f32>", "u32", a struct's name...), or undefined. */
  typeOf(n: Node): string | undefined {
    const c = n as Compound;
    if (c.compound) return this.typeOf(c.l!);
    if (n.paren) return this.typeOf(n.paren);
    const text = this.src.slice(n.s, n.e);
    if (n.op) {
      if (COMPARE.has(n.op) || n.op === "&&" || n.op === "||") return "bool";
      if (!ARITH.has(n.op) && n.op !== "%") return this.typeOf(n.l!) ?? this.typeOf(n.r!);
      const l = this.typeOf(n.l!);
      const r = this.typeOf(n.r!);
      const kl = kindOf(l);
      const kr = kindOf(r);
      if (kl === "int" && l !== "absint") return l;
      if (kr === "int" && r !== "absint") return r;
      for (const t of [l, r]) if (kindOf(t) && /^f[234]$/.test(kindOf(t)!)) return t;
      if (l === "f32" || r === "f32") return "f32";
      if (l === "absint" && r === "absint") return "absint";
      if (l === "absfloat" || r === "absfloat") {
        return l === "absint" || r === "absint" ? "absfloat" : l ?? r;
      }
      return undefined;
    }
    if (n.ident) return this.locals.get(n.ident) ?? this.globals.get(n.ident);
    if (n.call) {
      const name = n.call;
      const args = n.kids;
      if (name === "f32") return "f32";
      if (
        [
          "u32",
          "i32",
          "bool",
          "arrayLength",
          "countOneBits",
          "firstLeadingBit",
          "firstTrailingBit",
          "extractBits",
          "insertBits",
          "reverseBits",
          "all",
          "any",
        ].includes(name)
      ) return "u32";
      if (name.startsWith("atomic")) return "u32";
      const tm = /^(vec[234]|bitcast|array)<(.*)>$/.exec(
        norm(this.src.slice(n.s, this.src.indexOf("(", n.s))),
      );
      if (tm) {
        return tm[1] === "bitcast"
          ? tm[2]
          : tm[1] === "array"
          ? `array<${tm[2]}>`
          : `${tm[1]}<${tm[2]}>`;
      }
      if (/^vec[234][fiu]$/.test(name)) return name;
      if (name === "nv_fma") return "f32";
      if (/^nv_fma[234]$/.test(name)) return `vec${name.slice(6)}<f32>`;
      if (["dot", "length", "distance"].includes(name)) return "f32";
      if (name === "select") return this.typeOf(args[0]) ?? this.typeOf(args[1]);
      if (this.rets.has(name)) return this.rets.get(name) || undefined;
      if (this.structs.has(name)) return name;
      // Builtins of their arguments' type (min, max, abs, clamp, sqrt, floor, exp2...).
      for (const a of args) {
        const t = this.typeOf(a);
        if (t && t !== "absint" && t !== "absfloat") return t;
      }
      return undefined;
    }
    if (n.kids.length === 0) {
      if (/^0[xX]/.test(text)) return /[ui]$/.test(text) ? "u32" : "absint";
      if (/[ui]$/.test(text)) return "u32";
      if (/[fh]$/.test(text)) return "f32";
      return /[.eE]/.test(text) ? "absfloat" : "absint";
    }
    // Unary, member access, index.
    const base = n.kids[0];
    if (n.kids.length === 2) {
      let t = this.typeOf(base);
      if (!t) return undefined;
      if (t.startsWith("ptr<")) t = t.slice(4, -1).split(",").slice(1).join(",");
      const a = /^array<(.*?)(,[^,<>]*)?>$/.exec(t);
      if (a) return a[1];
      const v = /^vec[234]<(\w+)>$/.exec(t);
      if (v) return v[1];
      return undefined;
    }
    const unary = n.s < base.s;
    if (unary && text[0] === "!") return "bool";
    if (unary && text[0] === "&") return undefined;
    if (unary && (text[0] === "-" || text[0] === "~")) return this.typeOf(base);
    if (unary && text[0] === "*") {
      const t = this.typeOf(base);
      return t?.startsWith("ptr<") ? t.slice(4, -1).split(",").slice(1).join(",") : undefined;
    }
    // Member access: base.field.
    const field = this.src.slice(this.src.lastIndexOf(".", n.e - 1) + 1, n.e).trim();
    let t = this.typeOf(base);
    if (!t) return undefined;
    if (t.startsWith("ptr<")) t = t.slice(4, -1).split(",").slice(1).join(",");
    const v = /^vec[234]<(\w+)>$/.exec(t);
    if (v) {
      if (!/^[xyzwrgba]+$/.test(field)) return undefined;
      return field.length === 1 ? v[1] : `vec${field.length}<${v[1]}>`;
    }
    return this.structs.get(t)?.get(field);
  }

  /** The function around offset `at`, or undefined. */
  fnAt(at: number) {
    return this.fns.find((f) => f.s <= at && at < f.e);
  }

  addSite(n: Node) {
    if (this.byNode.has(n)) return;
    const fn = this.fnAt(n.s);
    if (!fn || fn.name.startsWith("nv_")) return;
    const kind = kindOf(this.typeOf(n));
    if (kind === "int" || (kind && !/^f[1-4]$/.test(kind) && !kind.startsWith("abs"))) return;
    const site: FSite = {
      id: this.sites.length,
      node: n,
      state: PROBE,
      tries: 0,
      fn: fn.text,
      index: fn.counter++,
    };
    if (kind && /^f[1-4]$/.test(kind)) site.state = -Number(kind[1]); // a known width, probed later
    this.byNode.set(n, site);
    this.sites.push(site);
  }

  /** An operand is flushed unless it is a flushed site itself or a literal. */
  addOperand(n: Node) {
    const m = strip(n);
    if (m.kids.length === 0 && !m.ident) return;
    if (this.isResultSite(m)) return;
    this.addSite(n);
  }

  isResultSite(n: Node): boolean {
    return !!(n.op && ARITH.has(n.op) && this.ops.has(n.op)) ||
      !!(n.call && this.calls.has(n.call)) ||
      (!!(n as Compound).compound && this.ops.has(n.op!)) || this.isNegation(n);
  }

  /** A unary minus of a non-literal, with signMinMax. */
  isNegation(n: Node): boolean {
    if (!this.signMinMax || n.op || n.call || n.kids.length !== 1 || n.s >= n.kids[0].s) {
      return false;
    }
    if (this.src[n.s] !== "-") return false;
    const k = strip(n.kids[0]);
    return k.kids.length > 0 || !!k.ident;
  }

  visit(n: Node) {
    n.kids.forEach((k) => this.visit(k));
    if (n.op && (ARITH.has(n.op) || COMPARE.has(n.op)) && this.ops.has(n.op)) {
      // Operands first: a site's type may depend on them only through typeOf.
      this.addOperand(n.l!);
      this.addOperand(n.r!);
      if (ARITH.has(n.op)) this.addSite(n);
    } else if (n.call && this.calls.has(n.call)) {
      n.kids.forEach((k) => this.addOperand(k));
      this.addSite(n);
    } else if (this.isNegation(n)) {
      // Its result only: flushing -x flushes x as well.
      this.addSite(n);
    }
  }

  root(p: Parser<never>): Node {
    const node = p.expr();
    this.visit(node);
    this.roots.push(node);
    return node;
  }

  parse() {
    const toks = tokenize(this.src);
    const p = new Parser<never>(toks, this.src);
    let depth = 0;
    let stmtStart = true;
    while (p.pos < toks.length) {
      const t = p.peek()!;
      if (t.t === "{" || t.t === "}" || t.t === ";") {
        if (t.t === "{") depth++;
        if (t.t === "}") depth = Math.max(0, depth - 1);
        if (t.t === "}" && depth === 0) this.locals = new Map();
        p.pos++;
        stmtStart = true;
        continue;
      }
      const inFn = depth > 0;
      if (!inFn && t.t === "fn") {
        // The parameters' types.
        const f = this.decls.get(p.peek(1)!.t);
        this.locals = new Map(f?.params.map((q) => [q.name, q.type]) ?? []);
      }
      if (inFn && (t.t === "let" || t.t === "var" || t.t === "const")) {
        const name = p.peek(1)!.t;
        p.pos += 2;
        let declared: string | undefined;
        if (p.peek()?.t === ":") {
          const s = p.peek(1)!.s;
          while (p.peek() && p.peek()!.t !== "=" && p.peek()!.t !== ";") p.pos++;
          declared = norm(this.src.slice(s, p.peek()!.s));
        }
        while (p.peek() && p.peek()!.t !== "=" && p.peek()!.t !== ";") p.pos++;
        if (p.peek()?.t === "=") {
          p.pos++;
          const node = this.root(p);
          const t0 = this.typeOf(node);
          declared ??= t0 === "absint"
            ? (t.t === "const" ? "absint" : "i32")
            : t0 === "absfloat"
            ? "f32"
            : t0;
        }
        if (declared) this.locals.set(name, declared);
        else this.locals.delete(name);
        stmtStart = false;
        continue;
      }
      if (inFn && (t.t === "return" || t.t === "if" || t.t === "while" || t.t === "switch")) {
        p.pos++;
        const n = p.peek();
        if (n && n.t !== ";" && n.t !== "{") this.root(p);
        stmtStart = false;
        continue;
      }
      if (inFn && stmtStart && t.kind === "id" && !KEYWORDS.has(t.t)) {
        const lhs = p.expr();
        const op = p.peek();
        if (op && ["+=", "-=", "*=", "/="].includes(op.t)) {
          p.pos++;
          const rhs = p.expr();
          const node: Compound = {
            s: lhs.s,
            e: rhs.e,
            kids: [lhs, rhs],
            op: op.t[0],
            l: lhs,
            r: rhs,
            compound: op.t[0],
          };
          this.visit(node);
          this.roots.push(node);
        } else if (op && ["=", "|=", "&=", "^=", "%="].includes(op.t)) {
          this.visit(lhs);
          this.roots.push(lhs);
          p.pos++;
          this.root(p);
        } else {
          this.visit(lhs);
          this.roots.push(lhs);
        }
        stmtStart = false;
        continue;
      }
      p.pos++;
      stmtStart = false;
    }
  }

  /** n's text with its sites as their states say, placed at output offset `base`. */
  emit(n: Node, base: number): string {
    const site = this.byNode.get(n);
    const c = n as Compound;
    const on = site && site.state > 0;
    const wrap = !on ? "" : site!.state === PROBE ? "floor" : this.wrappers[site!.state];
    if (c.compound && on) {
      // lhs = flush(flush(lhs) op flush((rhs)))
      let out = `${this.src.slice(c.l!.s, c.l!.e)} = `;
      const s = base + out.length;
      out += `${wrap}(`;
      out += this.emit(c.l!, base + out.length) + ` ${c.compound} (`;
      out += this.emit(c.r!, base + out.length) + "))";
      this.spans.set(site!.id, [s, base + out.length]);
      return out;
    }
    let out = on ? `${wrap}(` : "";
    let at = n.s;
    for (const k of n.kids) {
      out += this.src.slice(at, k.s);
      out += this.emit(k, base + out.length);
      at = k.e;
    }
    out += this.src.slice(at, n.e);
    if (on) {
      out += ")";
      this.spans.set(site!.id, [base, base + out.length]);
    }
    return out;
  }

  text(): string {
    this.spans.clear();
    const roots = [...this.roots].sort((x, y) => x.s - y.s);
    let code = "";
    let at = 0;
    for (const r of roots) {
      if (r.s < at) continue;
      code += this.src.slice(at, r.s);
      code += this.emit(r, code.length);
      at = r.e;
    }
    return code + this.src.slice(at);
  }
}

/** Compiles until no error: the site an error points at takes its next state. */
function settle(device: GPUDevice, rw: FloatSiteRewrite, helpers: string): Promise<string> {
  const advance = (site: FSite) => {
    if (site.state === PROBE || ++site.tries >= 4) site.state = 0;
    else site.state = site.state % 4 + 1;
  };
  const text = () => rw.text() + helpers;
  return settleSites(device, text, rw.sites, rw.spans, advance, "float sites", 50000);
}

/** Final states per function text (its sites in order): shared functions are probed once. */
const fnCache = new Map<string, number[]>();
const cache = new Map<string, FloatSites>();

/** What rewriteFloatSites made of a source. */
export interface FloatSites {
  code: string;
  sites: number;
  candidates: number;
  compiles: number;
}

let compiles = 0;

/** Which float32 sites rewriteFloatSites wraps, and in what. */
export interface FloatSiteOptions {
  /** abs, min, max, clamp and unary minus as well. Default false. */
  signMinMax?: boolean;
  /**
   * The operators whose operands (and, for + - * /, results) are wrapped. Default: + - * / and
   * the comparisons.
   */
  ops?: ReadonlySet<string>;
  /** sqrt, inverseSqrt, fma and nv_fma* as well. Default true. */
  calls?: boolean;
  /**
   * The wrappers: `prefix` for f32, `prefix2` to `prefix4` for vecN<f32>, defined by `wgsl`
   * (appended to the source).
   */
  wrapper: { prefix: string; wgsl: string };
}

/** `src` with the float32 sites `options` names passed through its wrapper. */
export async function rewriteFloatSites(
  device: GPUDevice,
  src: string,
  options: FloatSiteOptions,
): Promise<FloatSites> {
  const mode = JSON.stringify([
    options.signMinMax ?? false,
    [...(options.ops ?? [])].sort(),
    options.calls ?? true,
    options.wrapper.prefix,
  ]);
  const key = `${mode}\n${src}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const before = compiles;
  const rw = new FloatSiteRewrite(src, options);
  const helpers = options.wrapper.wgsl;
  for (const site of rw.sites) {
    const known = fnCache.get(`${mode}\n${site.fn}`);
    if (known && known.length === rw.sites.filter((s) => s.fn === site.fn).length) {
      site.state = known[site.index];
    }
  }
  // Phase 1: float or not (floor), known widths off meanwhile.
  const widths = new Map<FSite, number>();
  for (const site of rw.sites) {
    if (site.state < 0) {
      widths.set(site, -site.state);
      site.state = PROBE;
    }
  }
  let code = await settleCounted(device, rw, helpers);
  // Phase 2: the widths.
  for (const site of rw.sites) {
    if (site.state === PROBE) site.state = widths.get(site) ?? 1;
  }
  code = await settleCounted(device, rw, helpers);
  const byFn = new Map<string, number[]>();
  for (const site of rw.sites) {
    const a = byFn.get(site.fn) ?? [];
    a[site.index] = site.state;
    byFn.set(site.fn, a);
  }
  for (const [k, v] of byFn) fnCache.set(`${mode}\n${k}`, v);
  const out = {
    code,
    sites: rw.sites.filter((s) => s.state > 0).length,
    candidates: rw.sites.length,
    compiles: compiles - before,
  };
  cache.set(key, out);
  return out;
}

async function settleCounted(
  device: GPUDevice,
  rw: FloatSiteRewrite,
  helpers: string,
): Promise<string> {
  const orig = device.createShaderModule.bind(device);
  let n = 0;
  (device as { createShaderModule: typeof orig }).createShaderModule = (d) => {
    n++;
    return orig(d);
  };
  try {
    return await settle(device, rw, helpers);
  } finally {
    (device as { createShaderModule: typeof orig }).createShaderModule = orig;
    compiles += n;
  }
}
