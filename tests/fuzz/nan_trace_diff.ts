/**
 * Compares two traces of one seed by tests/fuzz/nan_trace.ts (a GPU's against lavapipe's, say):
 * dispatch by dispatch, in order, the words each leaves in the buffers it binds. Prints, per
 * dispatch, the buffers whose words differ (how many, and how many are NaN on one side alone, with
 * the first such positions and both values), up to the first dispatch where a NaN appears on one
 * side alone and at most LIMIT (default 3) after it. Traces whose dispatch labels part (plans
 * that differ by adapter limits) are compared up to that point.
 *
 *   deno run --allow-read tests/fuzz/nan_trace_diff.ts GPU.json LAVAPIPE.json [LIMIT]
 *
 * @module
 */

interface Trace {
  seed: number;
  outcome: string;
  adapter: string;
  dispatches: {
    label: string;
    grid: string;
    buffers: { group: number; binding: number; before: number[]; after: number[] }[];
  }[];
}

const isNaNBits = (w: number) => (w & 0x7f800000) === 0x7f800000 && (w & 0x7fffff) !== 0;
const asFloat = (w: number) => new Float32Array(new Uint32Array([w]).buffer)[0];

if (import.meta.main) {
  const [pathA, pathB] = Deno.args;
  if (!pathA || !pathB) {
    console.error("usage: tests/fuzz/nan_trace_diff.ts A.json B.json");
    Deno.exit(2);
  }
  const [a, b]: Trace[] = [pathA, pathB].map((p) => JSON.parse(Deno.readTextFileSync(p)));
  console.log(`A ${a.adapter}: ${a.outcome}\nB ${b.adapter}: ${b.outcome}`);
  let after = -1;
  const limit = Number(Deno.args[2] ?? 3);
  for (let i = 0; i < Math.min(a.dispatches.length, b.dispatches.length); i++) {
    const [da, db] = [a.dispatches[i], b.dispatches[i]];
    if (da.label !== db.label) {
      console.log(`#${i}: the plans part (A ${da.label}, B ${db.label})`);
      break;
    }
    const lines: string[] = [];
    let nanAlone = false;
    for (const ba of da.buffers) {
      const bb = db.buffers.find((x) => x.group === ba.group && x.binding === ba.binding);
      if (!bb) continue;
      const n = Math.min(ba.after.length, bb.after.length);
      const differ: number[] = [], nanOne: number[] = [];
      for (let k = 0; k < n; k++) {
        if (ba.after[k] === bb.after[k]) continue;
        differ.push(k);
        if (isNaNBits(ba.after[k]) !== isNaNBits(bb.after[k])) nanOne.push(k);
      }
      if (!differ.length) continue;
      nanAlone ||= nanOne.length > 0;
      const show = (nanOne.length ? nanOne : differ).slice(0, 6).map((k) =>
        `[${k}] ${asFloat(ba.after[k])} (0x${ba.after[k].toString(16)}) vs ${
          asFloat(bb.after[k])
        } (0x${bb.after[k].toString(16)})`
      );
      lines.push(
        `  @binding(${ba.binding}): ${differ.length} of ${n} words differ, ${nanOne.length} NaN on one side; ${
          show.join(", ")
        }`,
      );
    }
    if (lines.length) {
      console.log(`#${i} ${da.label} [A ${da.grid}, B ${db.grid}]\n${lines.join("\n")}`);
    }
    if (nanAlone && after < 0) after = i;
    if (after >= 0 && i >= after + limit) break;
  }
}
