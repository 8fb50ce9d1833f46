import { ServiceBroker, type BrokerOptions, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { Resources } from "../adapters/resources";
import type { Config, ServiceName } from "../lib/config";
import createActorsService from "../services/actors.service";
import type { ServiceDeps } from "../services/contracts";
import createGatewayService from "../services/gateway.service";
import createIngestService from "../services/ingest.service";
import createNotifierService from "../services/notifier.service";
import createQueryService from "../services/query.service";

export interface StockNode {
  broker: ServiceBroker;
  resources: Resources;
  config: Config;
}

/** One factory per `SERVICES` name; each returns a Moleculer service schema. */
export const SERVICE_FACTORIES: Record<ServiceName, (deps: ServiceDeps) => ServiceSchema> = {
  actors: createActorsService,
  gateway: createGatewayService,
  ingest: createIngestService,
  query: createQueryService,
  notifier: createNotifierService,
};

/**
 * The composition root: a broker with the services `config.services` names, sharing one set of
 * adapters chosen by the config. Not started.
 */
export function createNode(config: Config, extra: Partial<BrokerOptions> = {}): StockNode {
  const broker = new ServiceBroker({ ...brokerOptions(config), ...extra });
  const resources = new Resources(config, broker.getLogger("resources"));
  for (const name of config.services) {
    broker.createService(SERVICE_FACTORIES[name]({ config, resources }));
  }
  if (config.services.includes("gateway") && config.ingest.auth === "off") {
    broker.logger.warn(
      `INGEST_AUTH=off: POST /ingest is open, it accepts every caller without a token${
        config.ingest.tokenIgnored ? " (INGEST_TOKEN is set, and ignored)" : ""
      }`,
    );
  }
  return { broker, resources, config };
}
