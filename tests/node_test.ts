/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in Node, on the
 * backends Node has (reference and WASM; Node has no WebGPU), the library being the same browser
 * bundle of mod.ts that the Chromium test loads (tests/_runtimes.ts). Node is the machine's `node`
 * (CI has it: Deno itself comes from npm there).
 */
import assert from "node:assert/strict";
import {
  findTool,
  NODE_BACKEND_PROBE,
  NODE_RUNNER,
  serveSuite,
  testSuiteInRuntime,
  testWithTool,
} from "./_runtimes.ts";

const node = await findTool("node", /^v\d+\./, "install Node.js 20 or later");

testSuiteInRuntime(
  node,
  "Node",
  ["reference", "wasm"],
  (origin, backend) => ["--input-type=module", "--eval", NODE_RUNNER, origin, backend],
  60_000,
);

testWithTool(
  node,
  'Node: the browser bundle rejects "webgpu" naming the missing navigator.gpu, and auto uses wasm',
  async () => {
    const server = await serveSuite();
    try {
      const out = await new Deno.Command(node.command, {
        args: ["--input-type=module", "--eval", NODE_BACKEND_PROBE, server.origin],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const got = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.equal(
        got.webgpu,
        'backend "webgpu" is not available: this runtime has no WebGPU (navigator.gpu is undefined)',
      );
      assert.equal(got.auto.backend, "wasm", got.auto.reason);
    } finally {
      await server.close();
    }
  },
);
