/**
 * loadStateDict validates what it stores (float32, not float64, values; no negative variance)
 * and reads the dict's own keys only, so that nothing from a prototype or a JSON `__proto__` key
 * gets in and nothing it accepts makes the layer's own stateDict() unloadable.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";

function goodState() {
  return {
    weight: [1, 0.5],
    bias: [0, 0.25],
    mean_weight: [0.1, 0.2, 0.3],
    var_weight: [0.3, 0.2, 0.1],
    running_mean: [0.5, -0.5],
    running_var: [1, 2],
  };
}

/** Asserts that loading `dict` throws matching `pattern` and leaves the layer's state as it was. */
function assertRefused(dict: unknown, pattern: RegExp): void {
  const sn = new SwitchNorm2d(2);
  sn.loadStateDict(goodState());
  const before = JSON.stringify(sn.stateDict(), (_, v) => v instanceof Float32Array ? [...v] : v);
  assert.throws(() => sn.loadStateDict(dict as Record<string, unknown>), pattern);
  const after = JSON.stringify(sn.stateDict(), (_, v) => v instanceof Float32Array ? [...v] : v);
  assert.equal(after, before, "the state changed");
}

Deno.test("values finite in float64 but not in float32 are refused, naming the key and index", () => {
  assertRefused(
    { ...goodState(), mean_weight: [1e39, 0, 0] },
    /"mean_weight"\[0\] is 1e\+39.*float32/,
  );
  assertRefused({ ...goodState(), weight: [1, -3.5e38] }, /"weight"\[1\] is -3\.5e\+38.*float32/);
  assertRefused(
    { ...goodState(), running_mean: new Float64Array([0, 1e300]) },
    /"running_mean"\[1\] is 1e\+300.*float32/,
  );
});

Deno.test("the largest float32 loads, and the layer's own stateDict() loads back", () => {
  const sn = new SwitchNorm1d(2);
  const dict = {
    weight: [3.4028234663852886e38, 1],
    bias: [0, 0],
    mean_weight: [0, 0],
    var_weight: [0, 0],
    running_mean: [0, 0],
    running_var: [1, 1],
  };
  sn.loadStateDict(dict);
  assert.equal(sn.weight[0], 3.4028234663852886e38);
  new SwitchNorm1d(2).loadStateDict(sn.stateDict() as unknown as Record<string, unknown>);
});

Deno.test("a negative running_var is refused, naming the key", () => {
  assertRefused(
    { ...goodState(), running_var: [1, -0.5] },
    /"running_var"\[1\] is -0\.5.*negative/,
  );
});

Deno.test("keys named like Object.prototype members, from JSON or not, are unexpected keys", () => {
  for (const key of ["constructor", "toString", "hasOwnProperty", "valueOf", "__proto__"]) {
    const json = JSON.stringify(goodState()).replace(/^\{/, `{"${key}": [1, 2],`);
    const parsed = JSON.parse(json);
    assert.ok(Object.hasOwn(parsed, key));
    assertRefused(parsed, new RegExp(`unexpected key "${key}"`));
  }
});

Deno.test("a required key found only on the dict's prototype counts as missing", () => {
  const { running_var, ...own } = goodState();
  const dict = Object.assign(Object.create({ running_var }), own);
  assert.equal(dict.running_var, running_var);
  assertRefused(dict, /missing key "running_var"/);
});
