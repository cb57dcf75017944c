/**
 * NVIDIA's flushing of float32 subnormals, for CPU adapters (a test-only hook; the library's API
 * is untouched).
 *
 * NVIDIA's Vulkan driver (an H100 and an H200; tests/fuzz/adapter_float_probe.ts) flushes a
 * subnormal operand of a float32 + - * / (and of sqrt, comparisons) to 0 of its sign, and a
 * subnormal result as well: 2^-130 * 1 = 0, 2^-126 - 2^-127 = 2^-126 (its "sub result"),
 * 2^-130 > 0 is false. Loads, stores, bitcasts and select() keep the bits. lavapipe keeps
 * subnormals; SwiftShader flushes them but cannot run tests/_nvidia_fma.ts's rewrite. This
 * module rewrites the WGSL of the WebGPU backend (backends/_webgpu_pipelines.ts SOURCES /
 * LAZY_SOURCES) so that every float32 (scalar or vecN<f32>) binary + - * / (and x op= y), every
 * call of sqrt, inverseSqrt, fma and nv_fma* has its operands and its result passed through
 * `nv_ftz*` (0 of the same sign where the exponent bits are 0), and the operands of float
 * comparisons too. Unary minus, abs, min, max and clamp are left alone unless
 * NVIDIA_FLUSH_SIGN_MINMAX=1 (below); exp2, log2, dot and the other builtins always are; so
 * are the bodies of the emulations' own helpers (nv_fma*, nv_probe*): their arguments and results
 * are flushed at the call instead. div_f32's body is flushed as any other.
 *
 * Types: WGSL's arithmetic includes integer index arithmetic. A small inference (declared types,
 * literals, struct fields, builtins) tells most sites apart; every other candidate is wrapped in
 * floor() (which takes only float types), the module compiled, and the site the compiler's error
 * points at dropped, until the module compiles; then the widths (f32, vec2..4) are found the same
 * way (tests/_nvidia_fma.ts's trick). The states are kept per function text, so a function shared
 * by several passes (shaders/common.wgsl's) is probed once per process.
 *
 *   deno test -A --preload tests/_nvidia_flush.ts tests/X_test.ts
 *   deno test -A --preload tests/_nvidia_division.ts --preload tests/_nvidia_fma.ts \
 *     --preload tests/_nvidia_flush.ts tests/X_test.ts
 *
 * (this one last: it flushes the fused multiply-adds' and div_f32's arguments and results).
 *
 * @module
 */
import {
  functions,
  KEYWORDS,
  type Node as ParseNode,
  Parser,
  rewriteBackendSources,
  settleSites,
  strip,
  tokenize,
} from "./_wgsl_parse.ts";

type Node = ParseNode<never>;

/** The flushes: 0 of the same sign where the exponent bits are 0 (subnormals and zeros). */
export const NV_FTZ_WGSL = `
fn nv_ftz(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  return select(v, bitcast<f32>(b & 0x80000000u), (b & 0x7f800000u) == 0u);
}
fn nv_ftz2(v: vec2<f32>) -> vec2<f32> {
  let b = bitcast<vec2<u32>>(v);
  return select(v, bitcast<vec2<f32>>(b & vec2<u32>(0x80000000u)), (b & vec2<u32>(0x7f800000u)) == vec2<u32>(0u));
}
fn nv_ftz3(v: vec3<f32>) -> vec3<f32> {
  let b = bitcast<vec3<u32>>(v);
  return select(v, bitcast<vec3<f32>>(b & vec3<u32>(0x80000000u)), (b & vec3<u32>(0x7f800000u)) == vec3<u32>(0u));
}
fn nv_ftz4(v: vec4<f32>) -> vec4<f32> {
  let b = bitcast<vec4<u32>>(v);
  return select(v, bitcast<vec4<f32>>(b & vec4<u32>(0x80000000u)), (b & vec4<u32>(0x7f800000u)) == vec4<u32>(0u));
}
`;

const ARITH = new Set(["+", "-", "*", "/"]);
const COMPARE = new Set(["<", ">", "<=", ">=", "==", "!="]);
/**
 * NVIDIA_FLUSH_SIGN_MINMAX=1: abs, min, max, clamp and unary minus flushed as well (operands and
 * result). PTX's abs.ftz, neg.ftz, min.ftz and max.ftz flush subnormals, and SASS forms a float
 * negation or absolute value as an FADD with operand modifiers, which flushes under FTZ; whether
 * NVIDIA's Vulkan compiler emits them so is not measured (tests/fuzz/adapter_float_probe.ts now
 * asks). Off by default: the default emulates only what the H200's and H100's probes measured.
 */
const SIGN_MINMAX = Deno.env.get("NVIDIA_FLUSH_SIGN_MINMAX") === "1";
const SIGN_MINMAX_CALLS = ["abs", "min", "max", "clamp"];
const FLUSHED_CALLS = new Set([
  "sqrt",
  "inverseSqrt",
  "fma",
  "nv_fma",
  "nv_fma2",
  "nv_fma3",
  "nv_fma4",
]);
/** 0: off; 1..4: nv_ftz, nv_ftz2..4; PROBE: floor() (float or not). */
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

/** Every flushed site of `src`, the text with their states, and where each one's text landed. */
class FlushRewrite {
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

  constructor(readonly src: string, readonly signMinMax = false) {
    this.calls = new Set([...FLUSHED_CALLS, ...(signMinMax ? SIGN_MINMAX_CALLS : [])]);
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
    return !!(n.op && ARITH.has(n.op)) || !!(n.call && this.calls.has(n.call)) ||
      !!(n as Compound).compound || this.isNegation(n);
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
    if (n.op && (ARITH.has(n.op) || COMPARE.has(n.op))) {
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
    const wrap = !on
      ? ""
      : site!.state === PROBE
      ? "floor"
      : ["", "nv_ftz", "nv_ftz2", "nv_ftz3", "nv_ftz4"][site!.state];
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
function settle(device: GPUDevice, rw: FlushRewrite): Promise<string> {
  const advance = (site: FSite) => {
    if (site.state === PROBE || ++site.tries >= 4) site.state = 0;
    else site.state = site.state % 4 + 1;
  };
  const text = () => rw.text() + NV_FTZ_WGSL;
  return settleSites(device, text, rw.sites, rw.spans, advance, "_nvidia_flush", 50000);
}

/** Final states per function text (its sites in order): shared functions are probed once. */
const fnCache = new Map<string, number[]>();
const cache = new Map<string, Flushed>();

/** What flush() made of a source. */
export interface Flushed {
  code: string;
  sites: number;
  candidates: number;
  compiles: number;
}

let compiles = 0;

/**
 * `src` with every float32 operation's operands and result flushed (see the module's comment);
 * with `signMinMax` (default: NVIDIA_FLUSH_SIGN_MINMAX=1), abs, min, max, clamp and unary minus
 * too.
 */
export async function flush(
  device: GPUDevice,
  src: string,
  signMinMax = SIGN_MINMAX,
): Promise<Flushed> {
  const key = `${signMinMax}\n${src}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const before = compiles;
  const rw = new FlushRewrite(src, signMinMax);
  for (const site of rw.sites) {
    const known = fnCache.get(`${signMinMax}\n${site.fn}`);
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
  let code = await settleCounted(device, rw);
  // Phase 2: the widths.
  for (const site of rw.sites) {
    if (site.state === PROBE) site.state = widths.get(site) ?? 1;
  }
  code = await settleCounted(device, rw);
  const byFn = new Map<string, number[]>();
  for (const site of rw.sites) {
    const a = byFn.get(site.fn) ?? [];
    a[site.index] = site.state;
    byFn.set(site.fn, a);
  }
  for (const [k, v] of byFn) fnCache.set(`${signMinMax}\n${k}`, v);
  const out = {
    code,
    sites: rw.sites.filter((s) => s.state > 0).length,
    candidates: rw.sites.length,
    compiles: compiles - before,
  };
  cache.set(key, out);
  return out;
}

async function settleCounted(device: GPUDevice, rw: FlushRewrite): Promise<string> {
  const orig = device.createShaderModule.bind(device);
  let n = 0;
  (device as { createShaderModule: typeof orig }).createShaderModule = (d) => {
    n++;
    return orig(d);
  };
  try {
    return await settle(device, rw);
  } finally {
    (device as { createShaderModule: typeof orig }).createShaderModule = orig;
    compiles += n;
  }
}

/** Every source of the WebGPU backend flushed; what was flushed per pipeline kind. */
export function installNvidiaFlush(): Promise<Record<string, Flushed>> {
  return rewriteBackendSources("fn nv_ftz(", flush);
}

/** What the install on import flushed, per pipeline kind. */
export const FLUSHED: Record<string, Flushed> = await installNvidiaFlush();
