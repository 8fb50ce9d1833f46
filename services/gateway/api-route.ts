import type { ServerResponse } from "node:http";
import type { ServiceBroker } from "moleculer";
import type { ApiRouteSchema, IncomingRequest } from "moleculer-web";
import type { PartitionLag } from "../../adapters/log/types";
import { ingestJsonSchema } from "../../domain/messages";
import type { ActorDirectory } from "./actor-directory";
import { parseParams, symbolParams } from "../../lib/query-params";

type Respond = (res: ServerResponse, status: number, body: unknown) => void;
type Fail = (res: ServerResponse, err: Error) => void;

/**
 * The REST API under /api. Reads go to the `query` service (Postgres); a symbol's live state
 * goes to the actors node that owns its partition, and the answer names that node.
 */
export function apiRoute<Gateway extends { broker: ServiceBroker }>(deps: {
  /**
   * The gateway's actor directory (moleculer-web calls every alias on the gateway service);
   * throws while it has none.
   */
  directory: (gateway: Gateway) => ActorDirectory;
  respond: Respond;
  fail: Fail;
}): ApiRouteSchema {
  const { directory, respond, fail } = deps;
  const guarded = (fn: (this: Gateway, req: IncomingRequest, res: ServerResponse) => Promise<void>) =>
    async function (this: Gateway, req: IncomingRequest, res: ServerResponse) {
      try {
        await fn.call(this, req, res);
      } catch (err) {
        fail(res, err as Error);
      }
    };

  return {
    name: "api",
    path: "/api",
    bodyParsers: false,
    mappingPolicy: "restrict",
    logging: false,
    aliases: {
      "GET symbols": "query.symbols",
      "GET symbols/:symbol/history": "query.history",
      "GET signals": "query.signals",
      "GET aggregates/:symbol": "query.aggregates",
      "GET report/:symbol": "query.report",
      "GET dead-letters": "query.deadLetters",
      "GET notifications": "notifier.status",

      "GET symbols/:symbol": guarded(async function (req, res) {
        const { symbol } = parseParams(symbolParams, { symbol: req.$params.symbol });
        respond(res, 200, await directory(this).callOwner("actors.state", symbol));
      }),

      "GET cluster": guarded(async function (_req, res) {
        respond(res, 200, await clusterView(this.broker, directory(this)));
      }),

      "GET schema/ingest"(_req: IncomingRequest, res: ServerResponse) {
        respond(res, 200, ingestJsonSchema());
      },
    },
    onError(_req: IncomingRequest, res: ServerResponse, err: Error) {
      fail(res, err);
    },
  };
}

/** `GET /api/cluster`: every node and its services, the actors nodes' partitions and stalls, and the lag. */
async function clusterView(broker: ServiceBroker, dir: ActorDirectory): Promise<unknown> {
  // Lag is a view for operators: a slow or absent actors service leaves it null, not the answer.
  const [replies, lag] = await Promise.all([
    dir.refresh(),
    broker.call<PartitionLag[], object>("actors.lag", {}, { timeout: 2000 }).catch(() => null),
  ]);
  const actorsNodes = replies.sort((a, b) => a.nodeID.localeCompare(b.nodeID));
  const nodes = broker.registry.nodes
    .list({ onlyAvailable: false, withServices: true })
    .map(n => ({
      nodeID: n.id,
      available: n.available,
      local: n.local,
      hostname: n.hostname ?? null,
      services: n.services.map(s => String(s.name)).filter(name => !name.startsWith("$")),
    }))
    .sort((a, b) => a.nodeID.localeCompare(b.nodeID));
  return {
    gateway: broker.nodeID,
    nodes,
    actors: actorsNodes.map(a => ({ nodeID: a.nodeID, partitions: a.partitions, actors: a.actors })),
    partitionCount: actorsNodes[0]?.partitionCount ?? null,
    partitions: dir.table(),
    lag,
    // Partitions whose loop waits for a dependency, with the node that owns each.
    stalled: actorsNodes.flatMap(a => (a.stalled ?? []).map(s => ({ nodeID: a.nodeID, ...s }))),
  };
}
