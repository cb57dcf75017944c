/**
 * Which float32 behaviours this adapter's shader compiler gives WGSL, against IEEE 754 (what
 * lavapipe gives and what the shaders were first written for): subnormals kept or flushed, a*b+c
 * contracted to a fused multiply-add, division and sqrt rounding, infinities and NaN kept through
 * arithmetic, comparisons and select, min/max, exp2/ldexp/frexp near the subnormal range.
 *
 *   deno run tests/fuzz/adapter_float_probe.ts
 *
 * Prints one line per probe: its name, the bits the GPU gave, the IEEE answer, and "same" or
 * "DIFFERS". A diagnostic, not a test: its answers describe the adapter.
 *
 * @module
 */

/** A probe: an expression of a and b (f32, read from a buffer so the compiler cannot fold them). */
interface Probe {
  name: string;
  expr: string;
  a: number;
  b: number;
  /** The IEEE float32 answer (computed here with Math.fround), or NaN. */
  want: number;
}

const f = Math.fround;
const SUB = 2 ** -130; // a subnormal
const BIG = f(3e38);

/** a*b rounded to float32 from an exact product (the operands' product fits a double exactly). */
const mul = (a: number, b: number) => f(f(a) * f(b));

const PROBES: Probe[] = [
  { name: "subnormal load+store (a)", expr: "a", a: SUB, b: 0, want: SUB },
  { name: "subnormal a + 0", expr: "a + b", a: SUB, b: 0, want: SUB },
  { name: "subnormal a * 1", expr: "a * b", a: SUB, b: 1, want: SUB },
  {
    name: "product into subnormals 2^-100*2^-30",
    expr: "a * b",
    a: 2 ** -100,
    b: 2 ** -30,
    want: SUB,
  },
  { name: "subnormal a * 2^40", expr: "a * b", a: SUB, b: 2 ** 40, want: 2 ** -90 },
  {
    name: "2^-126 - 2^-127 (sub result)",
    expr: "a - b",
    a: 2 ** -126,
    b: 2 ** -127,
    want: 2 ** -127,
  },
  { name: "subnormal a > 0", expr: "select(0.0, 1.0, a > 0.0)", a: SUB, b: 0, want: 1 },
  {
    name: "fma contraction a*a - b (a = 1+2^-23)",
    expr: "a * a - b",
    a: 1 + 2 ** -23,
    b: 1 + 2 ** -22,
    want: 0, // unfused: a*a rounds to 1 + 2^-22; fused gives 2^-46
  },
  {
    name: "fma contraction via let p = a*a; p - b",
    expr: "fma_let(a, b)",
    a: 1 + 2 ** -23,
    b: 1 + 2 ** -22,
    want: 0,
  },
  { name: "1 / 3", expr: "a / b", a: 1, b: 3, want: f(1 / 3) },
  { name: "3e38 / 3e38", expr: "a / b", a: BIG, b: BIG, want: 1 },
  { name: "1e38 / 3e38", expr: "a / b", a: f(1e38), b: BIG, want: f(f(1e38) / BIG) },
  { name: "2^-130 / 2^-129", expr: "a / b", a: SUB, b: 2 ** -129, want: 0.5 },
  { name: "1 / 2^127", expr: "a / b", a: 1, b: 2 ** 127, want: 2 ** -127 },
  { name: "2^100 / 2^127", expr: "a / b", a: 2 ** 100, b: 2 ** 127, want: 2 ** -27 },
  { name: "7 / 2^-130", expr: "a / b", a: 7, b: SUB, want: Infinity },
  { name: "sqrt(2)", expr: "sqrt(a)", a: 2, b: 0, want: f(Math.SQRT2) },
  { name: "sqrt(2^-130)", expr: "sqrt(a)", a: SUB, b: 0, want: f(Math.sqrt(SUB)) },
  { name: "inverseSqrt(2)", expr: "inverseSqrt(a)", a: 2, b: 0, want: f(1 / Math.SQRT2) },
  { name: "3e38 + 3e38 (overflow)", expr: "a + b", a: BIG, b: BIG, want: Infinity },
  { name: "inf - inf", expr: "(a + a) - (b + b)", a: BIG, b: BIG, want: NaN },
  { name: "inf * 0", expr: "(a + a) * b", a: BIG, b: 0, want: NaN },
  {
    name: "NaN < 1 (select)",
    expr: "select(0.0, 1.0, ((a + a) - (a + a)) < b)",
    a: BIG,
    b: 1,
    want: 0,
  },
  { name: "NaN != NaN (select)", expr: "nan_ne(a)", a: BIG, b: 0, want: 1 },
  { name: "min(NaN, 1)", expr: "min((a + a) - (a + a), b)", a: BIG, b: 1, want: NaN },
  { name: "max(inf, 1)", expr: "max(a + a, b)", a: BIG, b: 1, want: Infinity },
  { name: "abs(-inf)", expr: "abs(-(a + a))", a: BIG, b: 0, want: Infinity },
  { name: "exp2(-130)", expr: "exp2(a)", a: -130, b: 0, want: SUB },
  { name: "exp2(-149)", expr: "exp2(a)", a: -149, b: 0, want: 2 ** -149 },
  { name: "exp2(127)", expr: "exp2(a)", a: 127, b: 0, want: 2 ** 127 },
  { name: "ldexp(1, -130)", expr: "ldexp(a, i32(b))", a: 1, b: -130, want: SUB },
  { name: "ldexp(2^-130, 130)", expr: "ldexp(a, i32(b))", a: SUB, b: 130, want: 1 },
  { name: "frexp(2^-130).fract", expr: "frexp(a).fract", a: SUB, b: 0, want: 0.5 },
  { name: "frexp(2^-130).exp", expr: "f32(frexp(a).exp)", a: SUB, b: 0, want: -129 },
  {
    name: "two_sum err (1e8, 1)",
    expr: "two_sum_err(a, b)",
    a: 1e8,
    b: 1,
    want: 1 - (f(1e8 + 1) - 1e8),
  },
  {
    name: "two_sum err (1e8, 1) through opaque() (shaders/common.wgsl's)",
    expr: "two_sum_opaque_err(a, b)",
    a: 1e8,
    b: 1,
    want: 1,
  },
  {
    name: "two_sum err (1, 1e8) through opaque() (b larger)",
    expr: "two_sum_opaque_err(a, b)",
    a: 1,
    b: 1e8,
    want: 1,
  },
  {
    name: "(a - b) + 1 in order (a = 2^25, b = 2^25 - 2)",
    expr: "(a - b) + 1.0",
    a: 2 ** 25,
    b: 2 ** 25 - 2,
    want: 3, // reassociated as (a + 1) - b: 2
  },
  {
    name: "(a + 1) - b in order (a = 2^25, b = 2^25 - 2)",
    expr: "(a + 1.0) - b",
    a: 2 ** 25,
    b: 2 ** 25 - 2,
    want: 2, // reassociated as (a - b) + 1: 3
  },
  {
    name: "((a - b) + lo) - lo2, pair difference order",
    expr: "((a - b) + 0.75) - 0.5",
    a: 2 ** 25,
    b: 2 ** 25 - 2,
    want: 2.25,
  },
  {
    name: "(a * b) / b overflow kept (3e38 * 4 / 4)",
    expr: "(a * b) / b",
    a: BIG,
    b: 4,
    want: Infinity,
  },
  { name: "a / a for a = 0", expr: "a / a", a: 0, b: 0, want: NaN },
  { name: "1 / 2^126", expr: "a / b", a: 1, b: 2 ** 126, want: 2 ** -126 },
  { name: "2^30 / 2^126", expr: "a / b", a: 2 ** 30, b: 2 ** 126, want: 2 ** -96 },
  {
    name: "fma across a function: mul(a, a) - b",
    expr: "mul_fn(a, a) - b",
    a: 1 + 2 ** -23,
    b: 1 + 2 ** -22,
    want: 0,
  },
  {
    name: "Dekker split product err",
    expr: "two_prod_err(a, b)",
    a: f(1 / 3),
    b: f(1 / 7),
    want: f(1 / 3) * f(1 / 7) - mul(1 / 3, 1 / 7),
  },
  {
    name: "a * (1 / b) vs a / b (7/3)",
    expr: "a / b - a * (1.0 / b)",
    a: 7,
    b: 3,
    want: f(f(7 / 3) - f(7 * f(1 / 3))),
  },
  { name: "(a + b) - a, a = 2^24", expr: "(a + b) - a", a: 2 ** 24, b: 1, want: 0 },
  { name: "x - x*1 for x = 3e38 (reassociation)", expr: "(a * b) - a", a: BIG, b: 1, want: 0 },
  // Session 52: operations the H100's probe did not ask about. PTX's neg, abs, min and max have
  // .ftz forms, and SASS negates through an FADD; tests/_nvidia_flush.ts flushes them only under
  // NVIDIA_FLUSH_SIGN_MINMAX=1, until these lines say whether NVIDIA does.
  { name: "-a, subnormal a", expr: "-a", a: SUB, b: 0, want: -SUB },
  { name: "abs(a), subnormal a < 0", expr: "abs(a)", a: -SUB, b: 0, want: SUB },
  { name: "min(a, 1), subnormal a", expr: "min(a, b)", a: SUB, b: 1, want: SUB },
  { name: "max(a, 0), subnormal a", expr: "max(a, b)", a: SUB, b: 0, want: SUB },
  { name: "clamp(a, 0, 1), subnormal a", expr: "clamp(a, b, 1.0)", a: SUB, b: 0, want: SUB },
  {
    name: "select(b, a, true), subnormal a",
    expr: "select(b, a, b == 0.0)",
    a: SUB,
    b: 0,
    want: SUB,
  },
  { name: "-(a * b), product subnormal", expr: "-(a * b)", a: 2 ** -100, b: 2 ** -30, want: -SUB },
  // Reassociated products: (a * b) * 2^-100 as a * (b * 2^-100) keeps what overflows, and
  // (a * b) * 2^100 as a * (b * 2^100) what underflows.
  {
    name: "(a * b) * 2^-100 overflow kept",
    expr: "(a * b) * 0x1p-100f",
    a: 2 ** 100,
    b: 2 ** 100,
    want: Infinity,
  },
  {
    name: "(a * b) * 2^100 underflow kept",
    expr: "(a * b) * 0x1p100f",
    a: 2 ** -100,
    b: 2 ** -100,
    want: 0,
  },
  {
    name: "(a * 2^-100) * 2^100 (a = 2^-60)",
    expr: "(a * 0x1p-100f) * 0x1p100f",
    a: 2 ** -60,
    b: 0,
    want: 0,
  },
  { name: "inverseSqrt(0)", expr: "inverseSqrt(a)", a: 0, b: 0, want: Infinity },
  { name: "a * 0 for a = inf", expr: "(a + a) * b", a: BIG, b: 0, want: NaN },
  { name: "a - a for a = NaN, in a let", expr: "nan_self_sub(a)", a: BIG, b: 0, want: NaN },
  // WGSL clamps a float's conversion to i32 to [-2^31, 2^31 - 128], the float32 values in range.
  { name: "f32(i32(3e38))", expr: "f32(i32(a))", a: BIG, b: 0, want: 2 ** 31 - 128 },
  { name: "f32(i32(-3e38))", expr: "f32(i32(-a))", a: BIG, b: 0, want: -(2 ** 31) },
  {
    name: "(a + b) * 0.25 * 4 (a = b = 3e38)",
    expr: "((a * 0.25 + b * 0.25) * 4.0)",
    a: BIG,
    b: BIG,
    want: Infinity,
  },
];

/** Random x/y and sqrt: the largest error in ulps over many pairs. */
const ULP_SAMPLES = 4096;

const HELPERS = `
fn fma_let(a: f32, b: f32) -> f32 { let p = a * a; return p - b; }
fn nan_ne(a: f32) -> f32 { let n = (a + a) - (a + a); return select(0.0, 1.0, n != n); }
fn two_sum_err(a: f32, b: f32) -> f32 { let s = a + b; let bb = s - a; return (a - (s - bb)) + (b - bb); }
// shaders/common.wgsl's opaque() and two_sum, against a uniform word as the library's P.inf_bits.
fn opaque(v: f32) -> f32 { return bitcast<f32>(bitcast<u32>(v) ^ (U.x ^ 0x7f800000u)); }
fn two_sum_opaque_err(a: f32, b: f32) -> f32 {
  let s = opaque(a + b); let bb = opaque(s - a);
  return opaque(a - opaque(s - bb)) + (b - bb);
}
fn mul_fn(a: f32, b: f32) -> f32 { return a * b; }
fn nan_self_sub(a: f32) -> f32 { let n = (a + a) * 0.0; let m = n - n; return m; }
fn split(a: f32) -> vec2<f32> { let c = 4097.0 * a; let hi = c - (c - a); return vec2(hi, a - hi); }
fn two_prod_err(a: f32, b: f32) -> f32 {
  let p = a * b; let x = split(a); let y = split(b);
  return ((x.x * y.x - p) + x.x * y.y + x.y * y.x) + x.y * y.y;
}
`;

function shader(): string {
  const cases = PROBES.map((p, i) => `    case ${i}u: { out[i] = bitcast<u32>(${p.expr}); }`).join(
    "\n",
  );
  return `${HELPERS}
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> U: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let n = ${PROBES.length}u;
  if (i < n) {
    let a = inp[2u * i];
    let b = inp[2u * i + 1u];
    switch i {
${cases}
      default: {}
    }
  } else if (i < n + ${ULP_SAMPLES}u) {
    let a = inp[2u * i];
    let b = inp[2u * i + 1u];
    out[i] = bitcast<u32>(a / b);
  } else if (i < n + ${2 * ULP_SAMPLES}u) {
    out[i] = bitcast<u32>(sqrt(inp[2u * i]));
  }
}`;
}

function ulps(got: number, want: number): number {
  const g = new Float32Array([got]);
  const w = new Float32Array([want]);
  const gi = new Int32Array(g.buffer)[0];
  const wi = new Int32Array(w.buffer)[0];
  return Math.abs(gi - wi);
}

/**
 * Runs the probes on `gpu`'s high-performance adapter and returns the report's lines (the
 * adapter, then one line per probe, then division's and sqrt's largest errors in ulps). Runs in
 * Deno and in a browser page alike.
 */
export async function probeFloatBehaviour(gpu: GPU): Promise<string[]> {
  const lines: string[] = [];
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("no WebGPU adapter");
  const info = adapter.info;
  lines.push(`adapter: ${info.vendor} ${info.architecture} ${info.device} ${info.description}`);
  const device = await adapter.requestDevice();
  const n = PROBES.length + 2 * ULP_SAMPLES;
  const input = new Float32Array(2 * n);
  PROBES.forEach((p, i) => {
    input[2 * i] = p.a;
    input[2 * i + 1] = p.b;
  });
  let s = 12345;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  for (let i = PROBES.length; i < n; i++) {
    input[2 * i] = (rnd() + 0.5) * 2 ** Math.floor(rnd() * 200 - 100);
    input[2 * i + 1] = (rnd() + 0.5) * 2 ** Math.floor(rnd() * 200 - 100);
  }
  const inBuf = device.createBuffer({
    size: input.byteLength,
    usage: GPUBufferUsage.STORAGE,
    mappedAtCreation: true,
  });
  new Float32Array(inBuf.getMappedRange()).set(input);
  inBuf.unmap();
  const outBuf = device.createBuffer({
    size: 4 * n,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const uni = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM,
    mappedAtCreation: true,
  });
  new Uint32Array(uni.getMappedRange()).set([0x7f800000, 0, 0, 0]);
  uni.unmap();
  const readBuf = device.createBuffer({
    size: 4 * n,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code: shader() }), entryPoint: "main" },
  });
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: inBuf } },
      { binding: 1, resource: { buffer: outBuf } },
      { binding: 2, resource: { buffer: uni } },
    ],
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(Math.ceil(n / 64));
  pass.end();
  enc.copyBufferToBuffer(outBuf, 0, readBuf, 0, 4 * n);
  device.queue.submit([enc.finish()]);
  await readBuf.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(readBuf.getMappedRange().slice(0));
  PROBES.forEach((p, i) => {
    const g = got[i];
    const same = Object.is(g, f(p.want)) || (Number.isNaN(g) && Number.isNaN(p.want)) ||
      (g === 0 && p.want === 0);
    lines.push(`${same ? "same   " : "DIFFERS"} ${p.name}: got ${g}, IEEE ${f(p.want)}`);
  });
  let divMax = 0, sqrtMax = 0, divWorst = "";
  for (let k = 0; k < ULP_SAMPLES; k++) {
    const i = PROBES.length + k;
    const a = input[2 * i], b = input[2 * i + 1];
    const u = ulps(got[i], f(a / b));
    if (u > divMax) [divMax, divWorst] = [u, `${a}/${b} = ${got[i]} (IEEE ${f(a / b)})`];
    const j = PROBES.length + ULP_SAMPLES + k;
    sqrtMax = Math.max(sqrtMax, ulps(got[j], f(Math.sqrt(input[2 * j]))));
  }
  lines.push(`division: max ${divMax} ulps over ${ULP_SAMPLES} pairs (worst ${divWorst})`);
  lines.push(`sqrt: max ${sqrtMax} ulps over ${ULP_SAMPLES} values`);
  device.destroy();
  return lines;
}

if (import.meta.main) {
  for (const line of await probeFloatBehaviour(navigator.gpu)) console.log(line);
}
