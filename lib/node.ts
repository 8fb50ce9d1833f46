import { ServiceBroker, type BrokerOptions } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { Resources } from "../adapters/resources";
import { SERVICE_FACTORIES } from "../services";
import type { Config } from "./config";

export interface StockNode {
  broker: ServiceBroker;
  resources: Resources;
  config: Config;
}

/** A broker with the services `config.services` names, sharing one set of adapters. Not started. */
export function createNode(config: Config, extra: Partial<BrokerOptions> = {}): StockNode {
  const broker = new ServiceBroker({ ...brokerOptions(config), ...extra });
  const resources = new Resources(config, broker.getLogger("resources"));
  for (const name of config.services) {
    broker.createService(SERVICE_FACTORIES[name]({ config, resources }));
  }
  return { broker, resources, config };
}
