/**
 * A/B of two checkouts of this module in one process, calls interleaved (A B, then B A, ...), so
 * that the machine's drift hits both alike: per bench shape, a resident training forward (timed
 * to its read-back) then a backward (likewise), on one WASM thread or on WebGPU.
 *
 *   deno run --allow-read --allow-env bench/ab.ts OLD_DIR NEW_DIR [wasm|webgpu] [calls]
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
  if (!dirA || !dirB || !["wasm", "webgpu"].includes(backend)) {
    console.error("usage: bench/ab.ts OLD_DIR NEW_DIR [wasm|webgpu] [calls]");
    Deno.exit(2);
  }
  const calls = Number(callsArg ?? (backend === "webgpu" ? 40 : 300));
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
      const side = {
        layer,
        x: await layer.upload(x, shape),
        dy: await layer.upload(dyData, shape),
      };
      if (evaluation) {
        (await layer.forward(side.x)).dispose(); // the running buffers of a step on x
        layer.train(false);
      }
      return side;
    }));
    const fwd: number[][] = [[], []], bwd: number[][] = [[], []];
    for (let i = 0; i < calls; i++) {
      for (const s of i % 2 ? [1, 0] : [0, 1]) {
        const { layer, x, dy } = sides[s];
        let t0 = performance.now();
        const y = await layer.forward(
          x,
          evaluation && !inference ? { keepForBackward: true } : undefined,
        );
        await y.read();
        fwd[s].push(performance.now() - t0);
        if (inference) {
          y.dispose();
          continue;
        }
        t0 = performance.now();
        const dx = await layer.backward(dy);
        await dx.read();
        bwd[s].push(performance.now() - t0);
        y.dispose();
        dx.dispose();
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
