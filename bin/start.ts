import path from "node:path";
import { IN_MEMORY } from "../adapters/resources";
import { loadConfigOrExit, type Config } from "../lib/config";
import { startDemoFeed } from "../app/demo-feed";
import { createNode } from "../app/node";

function describe(config: Config): string[] {
  const lines = [`node ${config.nodeID} running: ${config.services.join(", ")}`];
  const mode = (set: unknown, real: string, embedded: string) => (set ? real : embedded);
  lines.push(
    `  log       ${mode(config.kafka.brokers, `Kafka ${config.kafka.brokers?.join(",")} topic "${config.kafka.topic}"`, `embedded (${config.kafka.partitions} partitions)`)}`,
    `  database  ${mode(config.databaseUrl, "Postgres (DATABASE_URL)", `embedded PGlite (${path.basename(config.dataDir) === IN_MEMORY ? "in memory" : config.dataDir})`)}`,
    `  snapshots ${mode(config.redisUrl, "Redis (REDIS_URL)", "in memory")}`,
    `  cluster   ${mode(config.natsUrl, `NATS ${config.natsUrl}`, "single process (no NATS_URL)")}`,
  );
  if (config.services.includes("gateway")) {
    const base = `http://localhost:${config.port}`;
    lines.push(
      `  dashboard ${base}/`,
      `  ingest    POST ${base}/ingest (${config.ingest.token ? "bearer token required" : `open: no token (INGEST_AUTH=${config.ingest.auth})`})`,
      `  API       ${base}/api/symbols`,
      `  health    ${base}/readyz`,
    );
  }
  if (config.metricsPort > 0) lines.push(`  metrics   http://localhost:${config.metricsPort}/metrics`);
  if (config.demoFeed.enabled && config.services.includes("gateway")) {
    lines.push(`  demo feed on (${config.demoFeed.rate} msg/s, walk model); DEMO_FEED=0 turns it off`);
  }
  return lines;
}

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const node = createNode(config);
  const { broker } = node;

  let demoFeed: ReturnType<typeof startDemoFeed> = null;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    broker.logger.info(`${signal}: stopping (grace ${config.actors.shutdownGraceMs} ms)`);
    const deadline = setTimeout(() => {
      broker.logger.error(`shutdown took longer than ${config.actors.shutdownGraceMs} ms; exiting`);
      process.exit(1);
    }, config.actors.shutdownGraceMs + 2000);
    deadline.unref();
    try {
      demoFeed?.stop();
      await demoFeed?.done;
      await broker.stop();
      process.exit(0);
    } catch (err) {
      broker.logger.error("shutdown failed", err);
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));

  await broker.start();
  for (const line of describe(config)) broker.logger.info(line);
  demoFeed = startDemoFeed(config, broker);
}

main().catch(err => {
  console.error(`start-up failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
