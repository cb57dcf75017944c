/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in Node, on the
 * backends Node has (reference and WASM; Node has no WebGPU), the library being the same browser
 * bundle of mod.ts that the Chromium test loads (tests/_runtimes.ts). Node is the machine's `node`
 * (CI has it: Deno itself comes from npm there).
 */
import {
  assertReportPassed,
  findTool,
  NODE_RUNNER,
  runAndReport,
  serveSuite,
  testInRuntime,
} from "./_runtimes.ts";

const node = await findTool("node", "install Node.js 20 or later");

testInRuntime(
  node,
  ["reference", "wasm"],
  (b) =>
    `Node: the browser bundle matches PyTorch on the shared vectors (forward, running buffers, backward) on ${b}`,
  async (backend) => {
    const server = await serveSuite();
    try {
      const args = ["--input-type=module", "--eval", NODE_RUNNER, server.origin, backend];
      assertReportPassed(await runAndReport(server, node.command, args, 60_000), backend);
    } finally {
      await server.close();
    }
  },
);
