/**
 * The demo's digits (examples/_digits.ts): the held-out split is balanced and shares no digit with
 * the training split, and the shrinking keeps each digit's ink.
 */
import assert from "node:assert/strict";
import { DIGITS, loadDigits, RAW } from "../examples/_digits.ts";

const { train, test } = loadDigits(160);

Deno.test("the demo's digits split into 8,400 training and 1,600 balanced held-out digits", () => {
  assert.equal(train.count + test.count, 10000);
  assert.equal(test.count, 1600);
  for (let label = 0; label < DIGITS.length; label++) {
    assert.equal(test.labels.filter((l) => l === label).length, 160, `digit ${label}`);
  }
});

Deno.test("no held-out digit appears in the training split", () => {
  const m = train.size * train.size;
  const key = (d: typeof train, i: number) => d.images.subarray(i * m, (i + 1) * m).join(",");
  const seen = new Set(Array.from({ length: train.count }, (_, i) => key(train, i)));
  const shared = Array.from({ length: test.count }, (_, i) => key(test, i)).filter((k) =>
    seen.has(k)
  );
  assert.equal(shared.length, 0);
});

Deno.test("a shrunk digit keeps its ink: pixel sum / 4, inside a 1-pixel empty border", () => {
  const raw = RAW[3];
  const first = raw.slice(0, 28 * 28).reduce((a, b) => a + b, 0);
  const at = train.labels.indexOf(3), m = train.size * train.size;
  const img = train.images.subarray(at * m, (at + 1) * m);
  const sum = img.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - first / 4) < 1e-3, `${sum} vs ${first / 4}`);
  for (let j = 0; j < train.size; j++) {
    for (const p of [j, (train.size - 1) * train.size + j, j * train.size, j * train.size + 15]) {
      assert.equal(img[p], 0);
    }
  }
});
