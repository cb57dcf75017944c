/**
 * NVIDIA's contraction of float32 a * b + c into one fused multiply-add, for CPU adapters (a
 * test-only hook; the library's API is untouched).
 *
 * NVIDIA's Vulkan driver (an H200, driver 580; tests/fuzz/adapter_float_probe.ts) computes
 * `a * b - c` as fma(a, b, -c), one rounding, also where the product was bound by a `let` and
 * used elsewhere (its compiler sees SSA values). lavapipe and SwiftShader round the product
 * first. This module rewrites the WGSL of the WebGPU backend (backends/_webgpu_pipelines.ts
 * SOURCES / LAZY_SOURCES) so that every float32 (scalar or vecN<f32>) `a * b + c`, `c + a * b`,
 * `a * b - c`, `c - a * b` and `x += a * b` / `x -= a * b`, the product written in place or
 * bound by a `let` of the same function, is computed fused: by `nv_fma*`, an exact fused
 * multiply-add in float32 arithmetic (lavapipe's and SwiftShader's own fma() are not fused: they
 * round the product, fma(a, a, -b) = 0 for a = 1 + 2^-23, b = 1 + 2^-22, where a fused one gives
 * 2^-46). A product passed to a function of the module (two_sum(p.shift * f, -centre),
 * sum_add(&s, h * h)) meets the callee's additions once NVIDIA's compiler inlines it: such calls
 * go to a copy of the callee whose parameter is a `let` of the product's two operands
 * (`inlineProducts`, repeated for the copies' own calls). Products behind opaque() or a bitcast
 * are left alone, as NVIDIA's compiler leaves them; so are a vector times a scalar (WGSL's fma()
 * takes operands of one type) and products bound by a `var`.
 *
 * Types: WGSL's products include integer index arithmetic. Every candidate is rewritten, the
 * module compiled (createShaderModule under an error scope), and the site the compiler's error
 * points at is taken back (first with WGSL's fma(), which takes any float type, then with the
 * emulation's functions, widened f32 -> vec2 -> vec3 -> vec4 until it compiles), until the module
 * compiles; the result is kept per source. That takes ~14 s of lavapipe's compiler per process
 * (28 passes, ~30 to 50 fused sites each), and the fused passes compile far slower on
 * SwiftShader (one test file's did not finish in 8 minutes), so lavapipe is where this runs.
 *
 *   deno test -A --preload tests/_nvidia_fma.ts tests/X_test.ts
 *
 * (NVIDIA_FMA_SUBSET=SEED: a random half of the sites per pass, see keptShare.) It composes
 * with tests/_nvidia_division.ts, preloaded first (`--preload tests/_nvidia_division.ts
 * --preload tests/_nvidia_fma.ts`): the copies the inlining makes of div_f32 then divide as
 * NVIDIA does too.
 *
 * @module
 */
import { seededRandom } from "../examples/_data.ts";
import {
  compileError,
  errorPositions,
  type FnDecl,
  functions,
  KEYWORDS,
  type Node as ParseNode,
  Parser,
  rewriteBackendSources,
  settleSites,
  strip,
  tokenize,
} from "./_wgsl_parse.ts";

/** A candidate: node = (product) op c, or a compound `lhs op= product`. */
interface Site {
  id: number;
  node: Node;
  a: (base: number) => string;
  b: (base: number) => string;
  c: (base: number) => string;
  negA: boolean; // c - a * b
  negC: boolean; // a * b - c
  compoundLhs?: string;
  /** 0: off, 1: WGSL fma (type probe); 2..5: nv_fma, nv_fma2, nv_fma3, nv_fma4. */
  state: number;
  lets?: LetProduct;
}

interface LetProduct {
  name: string;
  node: Node; // the let's product
  root: Node; // the let's initialiser, as parsed
  used: boolean;
}

type Node = ParseNode<Site>;

/** The WGSL of `src` with its candidates as `sites` say, and where each site's text landed. */
class Rewrite {
  sites: Site[] = [];
  roots: Node[] = [];
  lets: { let: LetProduct; declS: number; nameE: number; semi: number }[] = [];
  spans = new Map<number, [number, number]>();
  probe = false;
  calls: {
    node: Node;
    name: string;
    args: ({ a: string; b: string } | { lp: LetProduct } | undefined)[];
  }[] = [];
  constructor(readonly src: string) {
    this.parse();
  }

  parse() {
    const toks = tokenize(this.src);
    const p = new Parser<Site>(toks, this.src);
    // Scopes of let-bound products: a stack of blocks, each a map name -> product.
    const scopes: Map<string, LetProduct>[] = [new Map()];
    const lookup = (name: string) => {
      for (let k = scopes.length - 1; k >= 0; k--) {
        const v = scopes[k].get(name);
        if (v) return v;
        if (scopes[k].has(name)) return undefined;
      }
      return undefined;
    };
    let stmtStart = true;
    while (p.pos < toks.length) {
      const t = p.peek()!;
      if (t.t === "{") {
        scopes.push(new Map());
        p.pos++;
        stmtStart = true;
        continue;
      }
      if (t.t === "}") {
        scopes.pop();
        if (scopes.length === 0) scopes.push(new Map());
        p.pos++;
        stmtStart = true;
        continue;
      }
      if (t.t === ";") {
        p.pos++;
        stmtStart = true;
        continue;
      }
      const inFn = scopes.length > 1;
      // let NAME (: T)? = EXPR
      if (inFn && (t.t === "let" || t.t === "var" || t.t === "const")) {
        const name = p.peek(1)!.t;
        p.pos += 2;
        while (p.peek() && p.peek()!.t !== "=" && p.peek()!.t !== ";") p.pos++;
        if (p.peek()?.t === "=") {
          p.pos++;
          const node = this.root(p, lookup);
          const top = strip(node);
          const semi = p.peek()!;
          if (t.t === "let" && top.op === "*") {
            const lp: LetProduct = { name, node: top, root: node, used: false };
            scopes[scopes.length - 1].set(name, lp);
            this.lets.push({
              let: lp,
              declS: t.s,
              nameE: toks[toks.indexOf(t) + 1].e,
              semi: semi.s,
            });
          } else scopes[scopes.length - 1].set(name, undefined as unknown as LetProduct);
        }
        stmtStart = false;
        continue;
      }
      if (inFn && (t.t === "return" || t.t === "if" || t.t === "while" || t.t === "switch")) {
        p.pos++;
        const n = p.peek();
        if (n && n.t !== ";" && n.t !== "{") this.root(p, lookup);
        stmtStart = false;
        continue;
      }
      if (inFn && stmtStart && t.kind === "id" && !KEYWORDS.has(t.t)) {
        // An assignment, a compound assignment or a call statement.
        const lhs = this.root(p, lookup);
        const op = p.peek();
        if (op && ["=", "+=", "-=", "*=", "|=", "&=", "^=", "%="].includes(op.t)) {
          p.pos++;
          const rhs = this.root(p, lookup);
          if (op.t === "+=" || op.t === "-=") {
            const prod = this.product(rhs, lookup);
            if (prod) {
              const lhsText = this.src.slice(lhs.s, lhs.e);
              const site: Site = {
                id: this.sites.length,
                node: { s: lhs.s, e: rhs.e, kids: [rhs] },
                a: prod.a,
                b: prod.b,
                c: () => lhsText,
                negA: op.t === "-=",
                negC: false,
                compoundLhs: lhsText,
                state: 1,
                lets: prod.lets,
              };
              site.node.site = site;
              this.sites.push(site);
              this.roots.push(site.node);
              this.roots.splice(this.roots.indexOf(rhs), 1);
              this.roots.splice(this.roots.indexOf(lhs), 1);
            }
          }
        }
        stmtStart = false;
        continue;
      }
      p.pos++;
      stmtStart = false;
    }
  }

  /** The operands' texts of a product node, or of the let-bound product `n` names. */
  product(
    n: Node,
    lookup: (name: string) => LetProduct | undefined,
  ): { a: (base: number) => string; b: (base: number) => string; lets?: LetProduct } | undefined {
    const m = strip(n);
    if (m.op === "*") {
      return { a: (base) => this.emit(m.l!, base), b: (base) => this.emit(m.r!, base) };
    }
    if (m.ident) {
      const lp = lookup(m.ident);
      // A let of two operands the inlining below named (name__fa * name__fb): no split needed.
      const l = strip(lp?.node.l ?? n).ident;
      const r = strip(lp?.node.r ?? n).ident;
      if (lp && l?.endsWith("__fa") && r?.endsWith("__fb")) return { a: () => l, b: () => r };
      if (lp) return { a: () => `${lp.name}__fa`, b: () => `${lp.name}__fb`, lets: lp };
    }
    return undefined;
  }

  /** Parses an expression at p, registers its candidate sites and keeps it as a root. */
  root(p: Parser<Site>, lookup: (name: string) => LetProduct | undefined): Node {
    const node = p.expr();
    const visit = (n: Node) => {
      n.kids.forEach(visit);
      if (n.call) {
        const args = n.kids.map((k) => {
          const m = strip(k);
          if (m.op === "*") {
            return { a: this.src.slice(m.l!.s, m.l!.e), b: this.src.slice(m.r!.s, m.r!.e) };
          }
          const lp = m.ident ? lookup(m.ident) : undefined;
          return lp ? { lp } : undefined;
        });
        if (args.some((a) => a)) this.calls.push({ node: n, name: n.call, args });
      }
      if (n.op === "+" || n.op === "-") {
        const left = this.product(n.l!, lookup);
        const right = left ? undefined : this.product(n.r!, lookup);
        const prod = left ?? right;
        if (!prod) return;
        const other = left ? n.r! : n.l!;
        const site: Site = {
          id: this.sites.length,
          node: n,
          a: prod.a,
          b: prod.b,
          c: (base) => this.emit(other, base),
          negA: !left && n.op === "-",
          negC: !!left && n.op === "-",
          state: 1,
          lets: prod.lets,
        };
        n.site = site;
        this.sites.push(site);
      }
    };
    visit(node);
    this.roots.push(node);
    return node;
  }

  /** n's text with its enabled sites rewritten, placed at output offset `base` (spans recorded). */
  emit(n: Node, base: number): string {
    const site = n.site;
    if (site && site.state > 0) {
      // While probing a site's width, fma(nv_probeN(a), b, c): a's type checked, the result's kept.
      const fn = this.probe
        ? "fma"
        : ["", "fma", "nv_fma", "nv_fma2", "nv_fma3", "nv_fma4"][site.state];
      const probe = this.probe && site.state > 1 ? `nv_probe${site.state - 1}(` : "(";
      let out = site.compoundLhs ? `${site.compoundLhs} = ` : "";
      out += `${fn}(${site.negA ? "-" : ""}${probe}`;
      out += site.a(base + out.length) + "), (";
      out += site.b(base + out.length) + `), ${site.negC ? "-(" : "("}`;
      out += site.c(base + out.length) + "))";
      this.spans.set(site.id, [base, base + out.length]);
      return out;
    }
    let out = "";
    let at = n.s;
    for (const k of n.kids) {
      out += this.src.slice(at, k.s);
      out += this.emit(k, base + out.length);
      at = k.e;
    }
    return out + this.src.slice(at, n.e);
  }

  /** The whole source: sites enabled as their states say, used let-products split in two lets. */
  text(): string {
    this.spans.clear();
    const used = new Set(this.sites.filter((s) => s.state > 0 && s.lets).map((s) => s.lets!));
    type Edit = { s: number; e: number; text: (base: number) => string };
    const edits: Edit[] = this.roots.map((r) => {
      const lp = this.lets.find((l) => l.let.root === r);
      if (lp && used.has(lp.let)) {
        const name = lp.let.name;
        return { s: r.s, e: r.e, text: () => `${name}__fa * ${name}__fb` };
      }
      return { s: r.s, e: r.e, text: (base: number) => this.emit(r, base) };
    });
    for (const l of this.lets) {
      if (!used.has(l.let)) continue;
      const n = l.let.node;
      const name = l.let.name;
      edits.push({
        s: l.declS,
        e: l.declS,
        text: (base: number) => {
          let out = `let ${name}__fa = `;
          out += this.emit(n.l!, base + out.length) + `; let ${name}__fb = `;
          out += this.emit(n.r!, base + out.length) + "; ";
          return out;
        },
      });
    }
    edits.sort((x, y) => x.s - y.s || x.e - y.e);
    let code = "";
    let at = 0;
    for (const ed of edits) {
      code += this.src.slice(at, ed.s);
      code += ed.text(code.length);
      at = ed.e;
    }
    return code + this.src.slice(at);
  }
}

/** Identities of each float32 width: a site's operand's type, checked without changing it. */
const NV_PROBE_WGSL = `
fn nv_probe1(a: f32) -> f32 { return a; }
fn nv_probe2(a: vec2<f32>) -> vec2<f32> { return a; }
fn nv_probe3(a: vec3<f32>) -> vec3<f32> { return a; }
fn nv_probe4(a: vec4<f32>) -> vec4<f32> { return a; }
`;

/** The emulation's fused multiply-add: exact products (12-bit parts) summed with c compensated. */
export const NV_FMA_WGSL = `
// A zero the compiler cannot see (workgroup memory, zeroed at the dispatch's start): Mesa's NIR
// (lavapipe) otherwise simplifies two_sum's error to 0, as the shaders' opaque() prevents.
var<workgroup> nv_fma_zero: u32;
fn nv_fma_opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ nv_fma_zero);
}
fn nv_fma_two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = nv_fma_opaque(a + b);
  let bb = nv_fma_opaque(s - a);
  return vec2<f32>(s, nv_fma_opaque(a - nv_fma_opaque(s - bb)) + (b - bb));
}
fn nv_fma(a: f32, b: f32, c: f32) -> f32 {
  let p = a * b;
  let plain = p + c;
  let finite = (bitcast<u32>(a) & 0x7f800000u) != 0x7f800000u &&
    (bitcast<u32>(b) & 0x7f800000u) != 0x7f800000u && (bitcast<u32>(c) & 0x7f800000u) != 0x7f800000u &&
    (bitcast<u32>(plain) & 0x7f800000u) != 0x7f800000u;
  if (!finite) {
    return plain;
  }
  let ah = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  let bh = bitcast<f32>(bitcast<u32>(b) & 0xfffff000u);
  let al = a - ah;
  let bl = b - bh;
  // The exact product's four parts and c, summed by three sweeps of two_sum (each carrying its
  // errors down: t4 the sum, t0..t3 what is left), then the rest added to t4.
  var t0 = ah * bh;
  var t1 = ah * bl;
  var t2 = al * bh;
  var t3 = al * bl;
  var t4 = c;
  for (var sweep = 0u; sweep < 3u; sweep++) {
    var q = nv_fma_two_sum(t1, t0);
    t1 = q.x;
    t0 = q.y;
    q = nv_fma_two_sum(t2, t1);
    t2 = q.x;
    t1 = q.y;
    q = nv_fma_two_sum(t3, t2);
    t3 = q.x;
    t2 = q.y;
    q = nv_fma_two_sum(t4, t3);
    t4 = q.x;
    t3 = q.y;
  }
  return t4 + (((t0 + t1) + t2) + t3);
}
fn nv_fma2(a: vec2<f32>, b: vec2<f32>, c: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(nv_fma(a.x, b.x, c.x), nv_fma(a.y, b.y, c.y));
}
fn nv_fma3(a: vec3<f32>, b: vec3<f32>, c: vec3<f32>) -> vec3<f32> {
  return vec3<f32>(nv_fma(a.x, b.x, c.x), nv_fma(a.y, b.y, c.y), nv_fma(a.z, b.z, c.z));
}
fn nv_fma4(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(
    nv_fma(a.x, b.x, c.x), nv_fma(a.y, b.y, c.y), nv_fma(a.z, b.z, c.z), nv_fma(a.w, b.w, c.w),
  );
}
`;

/** What fuse() made of a source: the WGSL, and how many sites were fused. */
export interface Fused {
  code: string;
  sites: number;
  candidates: number;
}

/** Site states in the order the type probe tries them: fma() (any float), then nv_fma..nv_fma4. */
function settle(
  device: GPUDevice,
  rw: Rewrite,
  suffix: string,
  next: (state: number) => number,
): Promise<string> {
  const advance = (site: Site) => site.state = next(site.state);
  return settleSites(
    device,
    () => rw.text() + suffix,
    rw.sites,
    rw.spans,
    advance,
    "_nvidia_fma",
    20000,
  );
}

const FLOAT_TYPE = /^(f32|vec[234]<f32>)$/;
const NOT_INLINED = new Set(["opaque", "nv_fma", "nv_fma2", "nv_fma3", "nv_fma4", "nv_fma_opaque"]);

/**
 * `src` with every call that passes a float product (in place or bound by a let) to a function
 * of the module replaced by a call of a copy of that function whose parameter is that product
 * bound by a let of its two operands, passed as two parameters: what NVIDIA's compiler sees
 * after inlining, where the product meets the callee's additions. Repeated for the copies' calls.
 */
export async function inlineProducts(device: GPUDevice, src: string): Promise<string> {
  for (let round = 0; round < 8; round++) {
    const fns = functions(src);
    const rw = new Rewrite(src);
    const banned = new Set<number>();
    for (;;) {
      const out = inlineRound(src, fns, rw, banned);
      if (out.code === src) return src;
      const message = await compileError(device, out.code);
      if (message === undefined) {
        src = out.code;
        break;
      }
      // The call whose copy does not take its operands' types (a vector times a scalar).
      const positions = errorPositions(message, out.code);
      const hit = out.spans.filter(([_, s, e]) => positions.some((q) => q >= s && q < e))
        .sort((x, y) => (x[2] - x[1]) - (y[2] - y[1]))[0];
      if (!hit) {
        throw new Error(`_nvidia_fma: a compile error no inlined call explains:\n${message}`);
      }
      banned.add(hit[0]);
    }
  }
  return src;
}

/** One round of inlineProducts: the calls at `banned` left alone; where each call landed. */
function inlineRound(
  src: string,
  fns: Map<string, FnDecl>,
  rw: Rewrite,
  banned: Set<number>,
): { code: string; spans: [number, number, number][] } {
  {
    type Edit = { s: number; e: number; text: string; call?: number };
    const edits: Edit[] = [];
    const added = new Map<string, string>();
    const split = new Set<LetProduct>();
    for (const call of rw.calls) {
      const fn = fns.get(call.name);
      if (!fn || NOT_INLINED.has(call.name) || fn.params.length !== call.args.length) continue;
      if (banned.has(call.node.s)) continue;
      const mask = call.args.map((a, i) => a !== undefined && FLOAT_TYPE.test(fn.params[i].type));
      if (!mask.some((m) => m)) continue;
      // Calls inside another such call's arguments wait for the next round.
      if (edits.some((e) => call.node.s < e.e && e.s < call.node.e)) continue;
      const spec = `${call.name}__f${mask.map((m) => m ? 1 : 0).join("")}`;
      if (!fns.has(spec) && !added.has(spec)) {
        const params = fn.params.flatMap((p, i) =>
          mask[i]
            ? [`${p.name}__fa: ${p.type}`, `${p.name}__fb: ${p.type}`]
            : [`${p.name}: ${p.type}`]
        );
        const lets = fn.params.filter((_, i) => mask[i]).map((p) =>
          `\n  let ${p.name} = ${p.name}__fa * ${p.name}__fb;`
        ).join("");
        added.set(
          spec,
          `\nfn ${spec}(${params.join(", ")})${fn.ret}{${lets}${src.slice(fn.bodyS, fn.bodyE)}}\n`,
        );
      }
      const args = call.node.kids.map((k, i) => {
        const a = call.args[i];
        if (!mask[i] || !a) return src.slice(k.s, k.e);
        if ("lp" in a) {
          split.add(a.lp);
          return `${a.lp.name}__fa, ${a.lp.name}__fb`;
        }
        return `${a.a}, ${a.b}`;
      });
      edits.push({
        s: call.node.s,
        e: call.node.e,
        text: `${spec}(${args.join(", ")})`,
        call: call.node.s,
      });
    }
    for (const l of rw.lets) {
      if (!split.has(l.let)) continue;
      const n = l.let.node;
      if (strip(n.l!).ident?.endsWith("__fa")) continue;
      const name = l.let.name;
      edits.push({
        s: l.declS,
        e: l.declS,
        text: `let ${name}__fa = ${src.slice(n.l!.s, n.l!.e)}; let ${name}__fb = ${
          src.slice(n.r!.s, n.r!.e)
        }; `,
      });
      edits.push({ s: l.let.root.s, e: l.let.root.e, text: `${name}__fa * ${name}__fb` });
    }
    if (edits.length === 0) return { code: src, spans: [] };
    edits.sort((x, y) => x.s - y.s || x.e - y.e);
    let out = "";
    let at = 0;
    const spans: [number, number, number][] = [];
    for (const ed of edits) {
      if (ed.s < at) continue; // overlapping: the next round
      out += src.slice(at, ed.s);
      if (ed.call !== undefined) spans.push([ed.call, out.length, out.length + ed.text.length]);
      out += ed.text;
      at = ed.e;
    }
    return { code: out + src.slice(at) + [...added.values()].join(""), spans };
  }
}

const cache = new Map<string, Fused>();

/**
 * NVIDIA_FMA_SUBSET=SEED: each fused site kept with probability 1/2, drawn per source (a pass's
 * WGSL) from SEED and the source's text, so that a function shared by several passes is fused in
 * some and not in others. NVIDIA's compiler decides contraction per compiled pass and per use
 * after inlining, so one formula evaluated in two passes (a row's decision in sn_mix and in
 * sn_wide_normalize) may round one way in one and the other way in the other; fusing every site
 * (the default) makes them agree. Undefined (fuse every site) without it.
 */
function keptShare(src: string): (() => boolean) | undefined {
  const seed = Deno.env.get("NVIDIA_FMA_SUBSET");
  if (seed === undefined) return undefined;
  // The pass's text folded into the seed (FNV-1a), then the demo's generator.
  let h = Number(seed) >>> 0;
  for (let i = 0; i < src.length; i++) h = Math.imul(h ^ src.charCodeAt(i), 0x01000193) >>> 0;
  const r = seededRandom(h);
  return () => r() < 0.5;
}

/** `src` with every float32 product-plus-sum fused (see the module's comment). */
export async function fuse(device: GPUDevice, src: string): Promise<Fused> {
  const hit = cache.get(src);
  if (hit) return hit;
  const rw = new Rewrite(await inlineProducts(device, src));
  await settle(device, rw, "", () => 0);
  for (const site of rw.sites) if (site.state === 1) site.state = 2;
  rw.probe = true;
  await settle(device, rw, NV_PROBE_WGSL, (s) => s === 5 ? 0 : s + 1);
  rw.probe = false;
  const keep = keptShare(src);
  if (keep) { for (const site of rw.sites) if (site.state > 0 && !keep()) site.state = 0; }
  const code = rw.text() + NV_FMA_WGSL;
  const message = await compileError(device, code);
  if (message !== undefined) {
    throw new Error(`_nvidia_fma: the fused source does not compile:\n${message}`);
  }
  const fused = {
    code,
    sites: rw.sites.filter((s) => s.state > 0).length,
    candidates: rw.sites.length,
  };
  cache.set(src, fused);
  return fused;
}

/** Every source of the WebGPU backend fused; the counts of fused sites per kind. */
export function installNvidiaFma(): Promise<Record<string, Fused>> {
  return rewriteBackendSources("fn nv_fma(", fuse);
}

/** What the install on import fused, per pipeline kind. */
export const FUSED: Record<string, Fused> = await installNvidiaFma();
