import type { ServiceSchema } from "moleculer";
import type { Resources } from "../adapters/resources";
import type { Config, ServiceName } from "../lib/config";
import createActorsService from "./actors.service";
import createGatewayService from "./gateway.service";
import createIngestService from "./ingest.service";
import createNotifierService from "./notifier.service";
import createQueryService from "./query.service";

export interface ServiceDeps {
  config: Config;
  resources: Resources;
}

/** One factory per `SERVICES` name; each returns a Moleculer service schema. */
export const SERVICE_FACTORIES: Record<ServiceName, (deps: ServiceDeps) => ServiceSchema> = {
  actors: createActorsService,
  gateway: createGatewayService,
  ingest: createIngestService,
  query: createQueryService,
  notifier: createNotifierService,
};
