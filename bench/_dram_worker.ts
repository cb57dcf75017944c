/**
 * Worker of bench/dram_control.ts: one single-threaded WASM SwitchNorm2d forward on its own
 * [32,256,56,56] tensor (98 MiB), `n` calls per message, answering the milliseconds they took.
 *
 * @module
 */
import { setNumThreads, SwitchNorm2d } from "../mod.ts";

setNumThreads(1);
const shape = [32, 256, 56, 56];
const layer = new SwitchNorm2d(256, { backend: "wasm" });
const x = await layer.upload(new Float32Array(32 * 256 * 56 * 56).map(Math.random), shape);
const scope = self as unknown as {
  onmessage: (e: MessageEvent<number>) => void;
  postMessage: (v: unknown) => void;
};
scope.onmessage = async (e) => {
  const t0 = performance.now();
  for (let i = 0; i < e.data; i++) (await layer.forward(x)).dispose();
  scope.postMessage(performance.now() - t0);
};
scope.postMessage("ready");
