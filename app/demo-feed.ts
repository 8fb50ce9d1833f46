import { startGenerator, type RunningGenerator } from "../generator/run";
import type { ServiceBroker } from "moleculer";
import type { Config } from "../lib/config";

/**
 * The built-in demo feed: our generator in `walk` model posting to this node's own gateway,
 * through the same HTTP path as any external feed, so a first `npm start` shows indicators and
 * signals within a minute. On by default in embedded mode; DEMO_FEED=0 turns it off.
 */
export function startDemoFeed(config: Config, broker: ServiceBroker): RunningGenerator | null {
  if (!config.demoFeed.enabled || !config.services.includes("gateway")) return null;
  const logger = broker.getLogger("demo-feed");
  return startGenerator({
    url: `http://127.0.0.1:${config.port}/ingest`,
    model: "walk",
    rate: config.demoFeed.rate,
    token: config.ingest.token,
    quiet: true,
    log: line => logger.info(line),
  });
}
