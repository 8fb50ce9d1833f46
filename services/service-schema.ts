import type { ServiceSchema } from "moleculer";

/**
 * A service schema whose handlers know their own service: its `methods` (`Methods`) and the
 * fields its `created` sets (`Fields`: `deps`, `state`), so `this.state.host` is typed in every
 * action, method, event and lifecycle handler. Moleculer's plain `ServiceSchema`, the one
 * `broker.createService` takes, types `this` as any service; at run time Moleculer binds every
 * handler to the service it builds from this very schema, so widening the type loses nothing.
 */
export function serviceSchema<Settings, Methods, Fields>(
  schema: ServiceSchema<Settings, Methods, Fields>,
): ServiceSchema<Settings> {
  return schema as ServiceSchema<Settings>;
}
