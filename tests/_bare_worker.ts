/**
 * A Worker that runs tests/_bare_probe.ts on the requests it is sent and posts the report back.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { probe } from "./_bare_probe.ts";
import type { BackendRequest } from "../mod.ts";

self.onmessage = async (e: MessageEvent<BackendRequest[]>) => {
  self.postMessage(await probe(e.data));
};
