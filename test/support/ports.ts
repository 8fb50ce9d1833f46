import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { StockNode } from "../../app/node";

export { freePort } from "../../lib/net";

/**
 * The port the gateway of a node in this process listens on. Start the node with PORT=0 and ask
 * it afterwards: a port picked beforehand is free only until something else takes it.
 */
export function gatewayPort(node: StockNode): number {
  const gateway = node.broker.getLocalService("gateway") as unknown as { server?: Server } | undefined;
  const address = gateway?.server?.address();
  if (!address || typeof address === "string") throw new Error("the node's gateway does not listen");
  return (address as AddressInfo).port;
}

/**
 * Waits until `GET {base}/readyz` answers 200. A node's services may finish starting after
 * `broker.start()` resolves (and answer 503 until then): a test's first request waits for this.
 */
export async function waitUntilReady(base: string, timeoutMs = 90000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(30000) });
      if (res.status === 200) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${base} not ready after ${timeoutMs} ms: ${last}`);
    await new Promise(r => setTimeout(r, 200));
  }
}
