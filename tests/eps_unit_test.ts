/**
 * Issue 10, point 1: a large eps beside data far below its root. SwitchNorm2d, training, eps 1e10
 * (std ~1e5), x ~1e-37: xhat ~1e-42 and dgamma = sum(dy xhat) ~1e-4 under dy ~1e37. WebGPU took
 * the mix's unit no lower than sqrt(eps)'s (2^16), where x was flushed: dgamma -5.0e-6 for 4.0e-5
 * (attack helper-71's shrunk case). eps now sets the std's unit alone, as running buffers do
 * (shaders/common.wgsl wide_map), and the mix's unit lies at most 2^62 below it.
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/** `n` values of `scale` times a fixed linear congruential noise in (-1, 1). */
function noise(n: number, scale: number): Float32Array {
  let z = 12345;
  return Float32Array.from({ length: n }, () => {
    z = (z * 1103515245 + 12345) % 2147483648;
    return (z / 2147483648 * 2 - 1) * scale;
  });
}

function largeEps(dy: Float32Array): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 16],
    options: { eps: 1e10 },
    state: {
      weight: Float32Array.of(1),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(0, -1e30, -1e30),
      var_weight: Float32Array.of(0, -1e30, -1e30),
    },
    partial: true,
    training: true,
    x: noise(16, 1e-37),
    dy,
    scales: true,
  };
}

rangeTests("SwitchNorm2d: data far below sqrt(eps) keeps its dgamma", async (backend) => {
  for (const dy of [noise(16, 1e37), new Float32Array(16).fill(3e38)]) {
    const call = largeEps(dy);
    const { want, got } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  }
});
