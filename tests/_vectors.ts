/**
 * Reads the shared reference vectors of tests/vectors/ (format described in
 * tests/vectors/README.md).
 *
 * @module
 */

/** Numbers as stored: JSON numbers, or "NaN" / "Infinity" / "-Infinity". */
type Stored = number | "NaN" | "Infinity" | "-Infinity";

/** One forward step of a case. */
export interface ForwardStep {
  readonly op: "forward";
  readonly mode: "train" | "eval";
  /** Sparse SN: the radius to set before this forward (absent: keep the layer's). */
  readonly radius?: number;
  readonly shape: number[];
  readonly x: Float32Array;
  /** dL/dy for the backward check (loss = sum(y * dy)). */
  readonly dy: Float32Array;
  readonly expect: {
    readonly y: Float64Array;
    readonly running_mean?: Float64Array;
    readonly running_var?: Float64Array;
    /** dL/dx from PyTorch autograd. */
    readonly dx: Float64Array;
    /** dL/d(parameter) of this step alone, PyTorch's names. */
    readonly grads: Record<"weight" | "bias" | "mean_weight" | "var_weight", Float64Array>;
    /** Sparse SN: the logits and the fixed flags after the step (a freeze changes them). */
    readonly mean_weight?: Float64Array;
    readonly var_weight?: Float64Array;
    readonly mean_fixed?: Float64Array;
    readonly var_fixed?: Float64Array;
  };
}

/** The end of a batch average. */
export interface FinalizeStep {
  readonly op: "finalizeBatchAverage";
  readonly expect: { readonly running_mean: Float64Array; readonly running_var: Float64Array };
}

/** One case: a layer, its state, and the steps to run on it in order. */
export interface VectorCase {
  readonly name: string;
  readonly description: string;
  readonly layer: "SwitchNorm1d" | "SwitchNorm2d" | "SwitchNorm3d";
  readonly numFeatures: number;
  readonly options: Record<string, number | boolean>;
  readonly state: Record<string, Float32Array>;
  readonly steps: (ForwardStep | FinalizeStep)[];
}

function decode(v: Stored): number {
  return typeof v === "number" ? v : Number(v);
}

function f64(values: Stored[]): Float64Array {
  return Float64Array.from(values, decode);
}

function f32(values: Stored[]): Float32Array {
  const out = Float32Array.from(values, decode);
  for (let i = 0; i < out.length; i++) {
    const v = decode(values[i]);
    if (out[i] !== v && !Number.isNaN(v)) {
      throw new Error(`vector input [${i}] = ${v} is not a float32 value`);
    }
  }
  return out;
}

type Raw = Record<string, unknown> & { [k: string]: Stored[] };

/** One case from its parsed JSON (a file of tests/vectors/), checked and decoded. */
export function parseCase(raw: Record<string, unknown>): VectorCase {
  if (raw.format !== 1) throw new Error(`unknown vector format ${String(raw.format)}`);
  const state: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(raw.state as Raw)) state[k] = f32(v);
  const steps = (raw.steps as Record<string, unknown>[]).map((s) => {
    const expect = s.expect as Record<string, Stored[] | Record<string, Stored[]>>;
    const e: Record<string, Float64Array | Record<string, Float64Array>> = {};
    for (const [k, v] of Object.entries(expect)) {
      e[k] = Array.isArray(v)
        ? f64(v)
        : Object.fromEntries(Object.entries(v).map(([g, a]) => [g, f64(a)]));
    }
    if (s.op === "forward") {
      return {
        op: "forward",
        mode: s.mode,
        radius: s.radius,
        shape: s.shape,
        x: f32(s.x as Stored[]),
        dy: f32(s.dy as Stored[]),
        expect: e,
      } as ForwardStep;
    }
    if (s.op === "finalizeBatchAverage") return { op: s.op, expect: e } as FinalizeStep;
    throw new Error(`unknown step op ${String(s.op)}`);
  });
  return {
    name: raw.name as string,
    description: raw.description as string,
    layer: raw.layer as VectorCase["layer"],
    numFeatures: raw.numFeatures as number,
    options: raw.options as Record<string, number | boolean>,
    state,
    steps,
  };
}

/** Every case in tests/vectors/, sorted by name. */
export function loadVectors(): VectorCase[] {
  const dir = new URL("./vectors/", import.meta.url);
  const names = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.endsWith(".json"))
    .map((e) => e.name)
    .sort();
  return names.map((n) => parseCase(JSON.parse(Deno.readTextFileSync(new URL(n, dir)))));
}
