/**
 * A/B of two checkouts of this module in one process, calls interleaved (A B, then B A, ...), so
 * that the machine's drift hits both alike: per bench shape, a resident training forward (timed
 * to its read-back) then a backward (likewise), on one WASM thread, on WebGPU or on the float64
 * reference (the tests' judge: its cost is the test suite's, so a change to backends/reference.ts
 * is timed here too).
 *
 *   deno run --allow-read --allow-env bench/ab.ts OLD_DIR NEW_DIR [wasm|webgpu|reference] [calls]
 *
 * OLD_DIR and NEW_DIR hold a mod.ts each (for example `git archive REV | tar -x -C DIR`).
 * Prints per shape the p10 (and median) times and NEW/OLD ratios; swap the two to see the
 * order's own effect (self against self gives ~0.98-1.02 on the 2-core CI VM when quiet).
 * SHAPE='[64,512,7,7]' runs one shape instead of the four; a shape of two ([N, C], for example
 * SHAPE='[65536,64]') runs a SwitchNorm1d. MODE=eval times evaluation forwards with
 * keepForBackward (and their backwards) on the running buffers one untimed training step with
 * momentum 0 on the same x left (the batch's statistics), where the IN statistics lie near the
 * running ones (the inputs are alike row to row). MODE=infer times those evaluation forwards alone
 * (no keepForBackward, no backward): the path of a model served for inference, where WASM's
 * forward re-sums rows and groups near 0 itself (`refine_near_zero_groups` in wasm/src/nd.rs). VAR_WEIGHT='[0,-1e30,-1e30]' loads those
 * variance logits first (mixings whose LN or BN variance weight is tiny beside its mean weight:
 * the case `refine_wide_groups` in wasm/src/nd.rs checks row by row).
 */

import { inputs, loadCheckout, type Module, quantile } from "./_ab.ts";

/** The shapes of the benchmarks: [N, C, H, W]. */
const SHAPES = [[8, 64, 56, 56], [32, 256, 14, 14], [2, 32, 128, 128], [64, 512, 7, 7]];

if (import.meta.main) {
  const [dirA, dirB, backend = "wasm", callsArg] = Deno.args;
  if (!dirA || !dirB || !["wasm", "webgpu", "reference"].includes(backend)) {
    console.error("usage: bench/ab.ts OLD_DIR NEW_DIR [wasm|webgpu|reference] [calls]");
    Deno.exit(2);
  }
  const calls = Number(callsArg ?? { wasm: 300, webgpu: 40, reference: 8 }[backend]);
  const mods: Module[] = [await loadCheckout(dirA), await loadCheckout(dirB)];
  // One thread on both sides (a checkout from before threads has no setNumThreads).
  for (const m of mods) m.setNumThreads?.(1);
  const only = Deno.env.get("SHAPE");
  const inference = Deno.env.get("MODE") === "infer";
  const evaluation = inference || Deno.env.get("MODE") === "eval";
  for (const shape of only ? [JSON.parse(only) as number[]] : SHAPES) {
    const n = shape.reduce((a, b) => a * b);
    const { x, dy: dyData } = inputs(n);
    // MODE=eval: momentum 0, so that the step leaves the batch's own statistics.
    const options = evaluation ? { backend, momentum: 0 } : { backend };
    const sides = await Promise.all(mods.map(async (m) => {
      const layer = shape.length === 2
        ? new m.SwitchNorm1d(shape[1], options)
        : new m.SwitchNorm2d(shape[1], options);
      const varWeight = Deno.env.get("VAR_WEIGHT");
      if (varWeight) {
        layer.loadStateDict({ var_weight: Float32Array.from(JSON.parse(varWeight)) }, {
          strict: false,
        });
      }
      // Resident tensors, each call timed to its read-back; the reference holds none: it takes
      // and gives Float32Arrays.
      const resident = backend !== "reference";
      const rx = resident ? await layer.upload(x, shape) : undefined;
      const rdy = resident ? await layer.upload(dyData, shape) : undefined;
      const keep = evaluation && !inference ? { keepForBackward: true } : undefined;
      const side = {
        forward: async () => {
          if (!rx) return void await layer.forward(x, shape, keep);
          const y = await layer.forward(rx, keep);
          await y.read();
          y.dispose();
        },
        backward: async () => {
          if (!rdy) return void await layer.backward(dyData);
          const dx = await layer.backward(rdy);
          await dx.read();
          dx.dispose();
        },
      };
      if (evaluation) {
        await side.forward(); // the running buffers of a step on x
        layer.train(false);
      }
      return side;
    }));
    const fwd: number[][] = [[], []], bwd: number[][] = [[], []];
    for (let i = 0; i < calls; i++) {
      for (const s of i % 2 ? [1, 0] : [0, 1]) {
        let t0 = performance.now();
        await sides[s].forward();
        fwd[s].push(performance.now() - t0);
        if (inference) continue;
        t0 = performance.now();
        await sides[s].backward();
        bwd[s].push(performance.now() - t0);
      }
    }
    const line = (name: string, t: number[][]) => {
      if (!t[0].length) return `${name} not timed`;
      const [a, b] = [quantile(t[0], 0.1), quantile(t[1], 0.1)];
      const med = quantile(t[1], 0.5) / quantile(t[0], 0.5);
      return `${name} ${a.toFixed(2)} -> ${b.toFixed(2)} ms (p10 ${(b / a).toFixed(3)}x, ` +
        `median ${med.toFixed(3)}x)`;
    };
    console.log(
      `${backend}${inference ? " infer" : evaluation ? " eval" : ""} ${JSON.stringify(shape)}: ${
        line("forward", fwd)
      }; ${line("backward", bwd)}`,
    );
  }
  Deno.exit(0);
}
