import type { ServiceSchema } from "moleculer";
import type { Resources } from "../adapters/resources";

/**
 * Ties a service's lifetime to the process's shared adapters: retained before the service's own
 * `started`, released after its own `stopped` (Moleculer runs mixin `stopped` handlers last).
 */
export function resourcesMixin(resources: Resources): Partial<ServiceSchema> {
  return {
    created() {
      resources.retain();
    },
    async stopped() {
      await resources.release();
    },
  };
}
