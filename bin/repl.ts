import os from "node:os";
import { loadConfigOrExit, type Config } from "../lib/config";
import { startDemoFeed } from "../app/demo-feed";
import { createNode } from "../app/node";
import { replCommands } from "../app/repl-commands";

/**
 * `npm run repl`: with NATS_URL, joins the running cluster as a service-less node and opens
 * moleculer-repl with the cluster commands (actors, actor, partitions, snapshot, lag). Without
 * NATS_URL there is no cluster to join, so it runs the embedded system in this process, exactly
 * like `npm start`, with the REPL attached.
 */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const joining = Boolean(config.natsUrl);
  const nodeConfig: Config = joining
    ? {
        ...config,
        services: [],
        nodeID: `repl-${os.hostname()}-${process.pid}`,
        metricsPort: 0,
        logLevel: "warn",
      }
    : config;
  const { broker } = createNode(nodeConfig, {
    replOptions: { customCommands: replCommands(), delimiter: "stock $" },
  });
  await broker.start();
  if (joining) {
    // Give discovery a moment so the first command already sees the other nodes.
    await broker.waitForServices(["actors"], 5000).catch(() => undefined);
  } else {
    startDemoFeed(config, broker);
  }
  broker.repl();
}

main().catch(err => {
  console.error(`repl failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
