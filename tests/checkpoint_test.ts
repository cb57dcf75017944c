/**
 * A real model's checkpoint both ways: PyTorch's (tests/vectors/checkpoint/, the ports of the
 * authors' modules with random parameters and buffers) loads into the library's layers by prefix
 * and gives PyTorch's evaluation outputs on every backend; what the layers write back loads into
 * the same PyTorch model with load_state_dict(strict=True) and gives the same tensors and outputs.
 * Also: loadStateDict's prefix, "module." and strict: false, stateDict's prefix and shapes, and
 * editing one parameter on a layer whose parameters live on the GPU.
 */
import assert from "node:assert/strict";
import {
  readSafetensors,
  type SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
  type SwitchNormNdOptions,
  writeSafetensors,
} from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { backendsHere, STRICT, testEachBackend } from "./_backends.ts";
import { Y } from "./_tolerances.ts";
import { webgpuTest } from "./_webgpu.ts";

const DIR = new URL("./vectors/checkpoint/", import.meta.url);
const checkpoint = readSafetensors(await Deno.readFile(new URL("model.safetensors", DIR)));
const vectors = JSON.parse(await Deno.readTextFile(new URL("model.json", DIR))) as {
  layers: {
    prefix: string;
    layer: "SwitchNorm1d" | "SwitchNorm2d" | "SwitchNorm3d";
    options: SwitchNormNdOptions;
    shape: number[];
    x: number[];
    y: number[];
  }[];
};

function makeLayer(v: (typeof vectors.layers)[number], backend: BackendName): SwitchNorm {
  const c = v.shape[1];
  if (v.layer === "SwitchNorm1d") return new SwitchNorm1d(c, { ...v.options, backend });
  if (v.layer === "SwitchNorm2d") return new SwitchNorm2d(c, { ...v.options, backend });
  return new SwitchNorm3d(c, { ...v.options, backend });
}

/** The model's SN layers on `backend`, loaded from the PyTorch checkpoint by prefix. */
function loadedLayers(backend: BackendName): SwitchNorm[] {
  return vectors.layers.map((v) => {
    const layer = makeLayer(v, backend).eval();
    const report = layer.loadStateDict(checkpoint, { prefix: v.prefix });
    assert.deepEqual(report, { missingKeys: [], unexpectedKeys: [] });
    return layer;
  });
}

await testEachBackend(
  "a PyTorch checkpoint loads by prefix and gives the authors' evaluation outputs",
  async (backend) => {
    const layers = loadedLayers(backend);
    for (const [i, v] of vectors.layers.entries()) {
      const y = await layers[i].forward(new Float32Array(v.x), v.shape);
      assertClose(y, v.y, Y, `${v.prefix} on ${backend}: y`);
    }
    // The sparse layer kept SSN2d's buffers: the variance mixing fixed to LN, the radius.
    const sparse = layers[vectors.layers.findIndex((v) => v.prefix === "sparse.")];
    assert.deepEqual(sparse.frozenTo, { var: 1 });
    assert.equal(sparse.radius, 0.25);
  },
);

const PYTHON = "/usr/bin/python3";
const torchHere = (() => {
  try {
    return Deno.statSync(PYTHON).isFile &&
      Deno.statSync("/usr/lib/python3/dist-packages/torch/__init__.py").isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "a checkpoint written from every backend's layers loads strictly into PyTorch and matches" +
    (torchHere || STRICT ? "" : " (skipped: no /usr/bin/python3 with torch)"),
  ignore: !torchHere && !STRICT,
  async fn() {
    assert.ok(torchHere, `CI=true needs ${PYTHON} with python3-torch for the round trip`);
    // The files go to PyTorch on stdin (8-byte length, then the bytes): no file is written.
    const files: Uint8Array[] = [];
    for (const { backend, missing } of await backendsHere()) {
      if (missing !== undefined) continue;
      const layers = loadedLayers(backend.name);
      for (const [i, v] of vectors.layers.entries()) {
        await layers[i].forward(new Float32Array(v.x), v.shape); // eval: changes nothing
      }
      // The model's other modules (the stem conv) are carried over from the checkpoint.
      const dict = Object.fromEntries(
        Object.entries(checkpoint).filter(([k]) => k.startsWith("stem.")),
      );
      for (const [i, v] of vectors.layers.entries()) {
        Object.assign(dict, layers[i].stateDict({ prefix: v.prefix, shapes: "pytorch" }));
      }
      const bytes = writeSafetensors(dict);
      const size = new Uint8Array(8);
      new DataView(size.buffer).setBigUint64(0, BigInt(bytes.length), true);
      files.push(size, bytes);
    }
    const child = new Deno.Command(PYTHON, {
      args: [new URL("./vectors/checkpoint.py", import.meta.url).pathname, "verify"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    for (const f of files) await writer.write(f);
    await writer.close();
    const run = await child.output();
    const out = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, `PyTorch refused the checkpoint:\n${out}`);
    assert.equal(out.match(/loaded strictly/g)?.length, files.length / 2, out);
  },
});

Deno.test("loadStateDict with a prefix ignores keys outside it and reads 'module.' checkpoints", () => {
  const ref = new SwitchNorm2d(3).eval();
  ref.loadStateDict(checkpoint, { prefix: "layer1.0." });
  const parallel = Object.fromEntries(
    Object.entries(checkpoint).map(([k, v]) => [`module.${k}`, v]),
  );
  const sn = new SwitchNorm2d(3);
  assert.deepEqual(sn.loadStateDict(parallel, { prefix: "layer1.0." }), {
    missingKeys: [],
    unexpectedKeys: [],
  });
  assert.deepEqual(sn.stateDict(), ref.stateDict());
  // A key under the prefix that is not the layer's is unexpected; strict names it.
  assert.throws(
    () => new SwitchNorm2d(3).loadStateDict(checkpoint, { prefix: "layer1." }),
    /unexpected key "layer1\.0\.bias" under prefix "layer1\." \(expected weight, bias/,
  );
  assert.throws(
    () => new SwitchNorm2d(3).loadStateDict(checkpoint, { prefix: "nothing." }),
    /missing key "nothing\.weight" \(and 5 more\)/,
  );
});

Deno.test("loadStateDict strict: false loads a subset, leaves the rest, reports the keys", () => {
  const sn = new SwitchNorm2d(3, { backend: "reference" });
  const before = sn.stateDict();
  const report = sn.loadStateDict(
    { "bn.weight": [1, 2, 3], "bn.num_batches_tracked": { dtype: "I64", shape: [], data: [5n] } },
    { prefix: "bn.", strict: false },
  );
  assert.deepEqual(report, {
    missingKeys: [
      "bn.bias",
      "bn.mean_weight",
      "bn.var_weight",
      "bn.running_mean",
      "bn.running_var",
    ],
    unexpectedKeys: ["bn.num_batches_tracked"],
  });
  assert.deepEqual([...sn.weight], [1, 2, 3]);
  assert.deepEqual({ ...sn.stateDict(), weight: before.weight }, before);
  // A bad value throws even with strict: false, and changes nothing.
  assert.throws(
    () => sn.loadStateDict({ bias: [1, 2], weight: [7, 7, 7] }, { strict: false }),
    /"bias" has shape \[2\], expected \[3\]/,
  );
  assert.deepEqual([...sn.weight], [1, 2, 3]);
  assert.throws(
    () => sn.loadStateDict({}, { strict: "no" as unknown as boolean }),
    /strict must be/,
  );
  assert.throws(() => sn.loadStateDict({}, { prefx: "a." } as object), /unknown option "prefx"/);
});

Deno.test("loadStateDict converts safetensors tensors to float32 and refuses what does not fit", () => {
  const sn = new SwitchNorm1d(2, { sparse: true });
  const i64 = (v: bigint) => ({ dtype: "I64", shape: [1], data: BigInt64Array.of(v) });
  // (A fixed mixing's logits are its weights: one-hot here.)
  sn.loadStateDict(
    {
      mean_fixed: i64(1n),
      mean_weight: { shape: [2], data: Float64Array.of(0, 1) },
      weight: { shape: [1, 2], data: Float64Array.of(2, 3) },
    },
    { strict: false },
  );
  assert.deepEqual(sn.frozenTo, { mean: 1 });
  assert.deepEqual([...sn.weight], [2, 3]);
  const before = sn.stateDict();
  assert.throws(
    () => sn.loadStateDict({ bias: Float64Array.of(1, 1e39) }, { strict: false }),
    /"bias"\[1\] is 1e\+39, beyond float32's range/,
  );
  assert.throws(
    () => sn.loadStateDict({ var_fixed: i64(2n ** 60n) }, { strict: false }),
    /"var_fixed"\[0\] is 1152921504606846976, beyond 2\^53/,
  );
  assert.deepEqual(sn.stateDict(), before);
});

Deno.test("stateDict with a prefix and shapes: 'pytorch' gives the authors' keys and shapes", () => {
  const shapes = (d: Record<string, { shape: number[] }>) =>
    Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.shape]));
  assert.deepEqual(
    shapes(new SwitchNorm2d(3, { sparse: true }).stateDict({ prefix: "a.", shapes: "pytorch" })),
    {
      "a.weight": [1, 3, 1, 1],
      "a.bias": [1, 3, 1, 1],
      "a.mean_weight": [3],
      "a.var_weight": [3],
      "a.running_mean": [1, 3, 1],
      "a.running_var": [1, 3, 1],
      "a.mean_fixed": [1],
      "a.var_fixed": [1],
      "a.radius": [1],
    },
  );
  assert.deepEqual(shapes(new SwitchNorm1d(2).stateDict({ shapes: "pytorch" })), {
    weight: [1, 2],
    bias: [1, 2],
    mean_weight: [2],
    var_weight: [2],
    running_mean: [1, 2],
    running_var: [1, 2],
  });
  assert.deepEqual(
    Object.keys(new SwitchNorm3d(2, { usingBN: false }).stateDict({ prefix: "v." })),
    ["v.weight", "v.bias", "v.mean_weight", "v.var_weight"],
  );
  const flat = new SwitchNorm3d(2).stateDict({ prefix: "v." });
  assert.ok(flat["v.weight"] instanceof Float32Array);
  assert.throws(
    () => new SwitchNorm2d(1).stateDict({ shapes: "torch" as "pytorch" }),
    /shapes must be "flat" or "pytorch", got "torch"/,
  );
});

webgpuTest(
  "editing one parameter with strict: false reaches the GPU's copy of the parameters",
  async () => {
    const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i) * 2);
    const shape = [2, 3, 2, 2];
    const gpu = new SwitchNorm2d(3, { backend: "webgpu" }).eval();
    const cpu = new SwitchNorm2d(3, { backend: "reference" }).eval();
    const state = { ...cpu.stateDict(), running_var: [1, 2, 3] };
    gpu.loadStateDict(state);
    cpu.loadStateDict(state);
    await gpu.forward(x, shape); // uploads the parameters to the device
    const weight = gpu.weight;
    weight[1] = 5; // a copy: nothing changes until it is loaded back
    assertClose(await gpu.forward(x, shape), await cpu.forward(x, shape), Y, "before the load");
    gpu.loadStateDict({ weight }, { strict: false });
    cpu.loadStateDict({ weight }, { strict: false });
    const y = await gpu.forward(x, shape);
    assertClose(y, await cpu.forward(x, shape), Y, "after the load");
    assert.equal(gpu.backendInfo?.backend, "webgpu");
  },
);
