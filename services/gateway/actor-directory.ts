import { Errors, type ServiceBroker } from "moleculer";
import { partitionForKey } from "../../lib/partitioner";
import type { AssignmentEvent, PartitionsReply } from "../contracts";

interface NodeAssignment {
  partitions: Set<number>;
  partitionCount: number;
  /** Local clock of when we learned it: newer news about a partition wins. */
  learnedAt: number;
}

/**
 * Which actors node owns which partition, so a query for a symbol goes to the node whose
 * live actor holds it (docs/architecture.md, "Routing a query to the owner"). It learns from
 * the `actors.assignment` events every actors node broadcasts after a rebalance, asks every
 * actors node directly on start-up, and forgets nodes that leave.
 */
export class ActorDirectory {
  private readonly nodes = new Map<string, NodeAssignment>();
  private clock = 0;

  constructor(private readonly broker: ServiceBroker) {}

  learn(event: AssignmentEvent): void {
    this.nodes.set(event.nodeID, {
      partitions: new Set(event.partitions),
      partitionCount: event.partitionCount,
      learnedAt: ++this.clock,
    });
    // A partition now claimed by this node is no longer another node's.
    for (const [nodeID, a] of this.nodes) {
      if (nodeID === event.nodeID) continue;
      for (const p of event.partitions) a.partitions.delete(p);
    }
  }

  forget(nodeID: string): void {
    this.nodes.delete(nodeID);
  }

  /** Nodes that currently run the actors service. */
  actorNodes(): string[] {
    const ids = new Set<string>();
    for (const s of this.broker.registry.getServiceList({
      onlyAvailable: true,
      skipInternal: true,
      withActions: false,
    })) {
      if (s.name === "actors" && s.nodeID) ids.add(s.nodeID);
    }
    return [...ids].sort();
  }

  /** Asks every actors node which partitions it owns. */
  async refresh(): Promise<PartitionsReply[]> {
    const replies = await Promise.all(
      this.actorNodes().map(nodeID =>
        this.broker
          .call<PartitionsReply, object>("actors.partitions", {}, { nodeID, timeout: 5000 })
          .catch(() => null),
      ),
    );
    const alive = new Set(this.actorNodes());
    for (const nodeID of [...this.nodes.keys()]) if (!alive.has(nodeID)) this.nodes.delete(nodeID);
    const ok = replies.filter((r): r is PartitionsReply => r !== null);
    for (const r of ok)
      this.learn({
        nodeID: r.nodeID,
        partitions: r.partitions,
        generation: r.generation,
        partitionCount: r.partitionCount,
      });
    return ok;
  }

  partitionOf(symbol: string): number | null {
    for (const a of this.nodes.values())
      if (a.partitionCount > 0) return partitionForKey(symbol, a.partitionCount);
    return null;
  }

  /** The nodes believed to own the symbol's partition, most recently learned first. */
  ownersOf(symbol: string): string[] {
    const partition = this.partitionOf(symbol);
    if (partition === null) return [];
    return [...this.nodes.entries()]
      .filter(([, a]) => a.partitions.has(partition))
      .sort((x, y) => y[1].learnedAt - x[1].learnedAt)
      .map(([nodeID]) => nodeID);
  }

  /**
   * Calls an actors action on the node that owns the symbol. When the map is stale (a rebalance
   * in flight), the owner answers NOT_OWNER; then the directory refreshes and asks every actors
   * node in turn, so the caller gets the live actor's answer or a clear 404/503.
   */
  async callOwner<T>(action: string, symbol: string, params: Record<string, unknown> = {}): Promise<T> {
    const tried = new Set<string>();
    const attempt = async (nodeID: string): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> => {
      tried.add(nodeID);
      try {
        return {
          ok: true,
          value: await this.broker.call<T, object>(action, { symbol, ...params }, { nodeID, timeout: 5000 }),
        };
      } catch (err) {
        return { ok: false, err };
      }
    };
    let lastError: unknown = null;
    for (const round of [0, 1]) {
      if (round === 1) await this.refresh();
      const candidates = [...this.ownersOf(symbol), ...this.actorNodes()].filter(n => !tried.has(n));
      for (const nodeID of candidates) {
        const r = await attempt(nodeID);
        if (r.ok) return r.value;
        const type = (r.err as { type?: string }).type;
        if (type !== "NOT_OWNER" && type !== "SERVICE_NOT_AVAILABLE" && type !== "SERVICE_NOT_FOUND")
          throw r.err;
        lastError = r.err;
      }
    }
    if (this.actorNodes().length === 0) {
      throw new Errors.MoleculerRetryableError("no node runs the actors service", 503, "NO_ACTORS");
    }
    throw new Errors.MoleculerRetryableError(
      `no actors node owns the partition of ${symbol} right now (rebalancing?)${lastError ? `: ${(lastError as Error).message}` : ""}`,
      503,
      "NO_OWNER",
    );
  }

  /** Partition -> owner, as far as this directory knows. */
  table(): { partition: number; nodeID: string }[] {
    const rows: { partition: number; nodeID: string }[] = [];
    for (const [nodeID, a] of this.nodes) for (const p of a.partitions) rows.push({ partition: p, nodeID });
    return rows.sort((x, y) => x.partition - y.partition);
  }
}
