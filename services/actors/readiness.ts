import { DEGRADED, isReady, STARTING } from "../../lib/waiting";

/**
 * Where an actors node stands in its consumer group: "starting" (waiting for Kafka or Postgres
 * before it joins), "joining" (asked to join, no assignment yet), "member" (holds its current
 * assignment, possibly empty), "rebalancing" (its assignment is being revoked, the next one not
 * handed out yet), "out" (the Kafka client crashed and the node rejoins by itself), "stopping".
 */
export type GroupPhase = "starting" | "joining" | "member" | "rebalancing" | "out" | "stopping";

export interface ActorsReadinessBody {
  status: "ready" | "not ready";
  nodeID: string;
  /** Why the node is not ready: each failing check, "name: what". Absent when ready. */
  reason?: string;
  phase: GroupPhase;
  generation: number;
  /** The partitions of the current assignment ([] when it holds none, or none any more). */
  partitions: number[];
  /** "ok", what went wrong, or "degraded: ..." (reported, not counted against readiness). */
  checks: Record<string, string>;
}

export interface ActorsReadinessInput {
  nodeID: string;
  /** What the service's start-up waits for ("starting" before the first attempt), for "starting". */
  startState: string;
  /** Stalled partitions, as `partition.<n>` checks (degraded: the node's other partitions flow). */
  stalls: Record<string, string>;
  /**
   * Whether the log answers, asked only when no answer to this member came within the contact
   * window: resolves "ok" or rejects with what went wrong (a metadata request with a timeout).
   */
  probeLog: () => Promise<unknown>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Readiness of a node that runs the actors (GET /readyz on METRICS_PORT): ready while the node is
 * a member of the consumer group holding its current assignment (possibly empty) and Kafka answers
 * it. Fed by the consumer's hooks; nothing here does I/O but `probeLog`, which runs only when the
 * last answer from Kafka is older than `contactWindowMs` (a member fetches and heartbeats every
 * second or so, so a healthy one never needs it; one stuck in a long Postgres retry might).
 */
export class GroupReadiness {
  private phase: GroupPhase = "starting";
  private since: number;
  private generation = 0;
  private partitions: number[] = [];
  private lastContactAt: number | null = null;
  private error = "";
  private probing: Promise<string> | null = null;

  constructor(
    private readonly options: {
      /** Kafka's own verdict on a silent member: KAFKA_SESSION_TIMEOUT_MS. */
      contactWindowMs: number;
      /** The embedded log lives in the process: always reachable. */
      embedded: boolean;
      groupId: string;
      /** A probe of the log that takes longer failed (default 2 s). */
      probeTimeoutMs?: number;
      now?: () => number;
    },
  ) {
    this.since = this.now();
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private enter(phase: GroupPhase): void {
    if (this.phase !== phase) this.since = this.now();
    this.phase = phase;
  }

  get current(): { phase: GroupPhase; since: number; generation: number; partitions: number[] } {
    return {
      phase: this.phase,
      since: this.since,
      generation: this.generation,
      partitions: [...this.partitions],
    };
  }

  /** The service starts (again): it waits for its dependencies before it joins. */
  starting(): void {
    this.enter("starting");
  }

  /** The start-up is done; the consumer is asked to join the group. */
  joining(): void {
    this.enter("joining");
  }

  assigned(partitions: number[], generation: number): void {
    this.generation = generation;
    this.partitions = [...partitions];
    this.contact();
    this.enter("member");
  }

  rebalancing(generation: number): void {
    // A rebalance learnt of after the member already left or rejoined changes nothing.
    if (this.phase !== "member" || generation !== this.generation) return;
    this.enter("rebalancing");
  }

  left(err: unknown, generation: number): void {
    this.generation = generation;
    this.partitions = [];
    this.error = (err as Error)?.message || String(err);
    this.enter("out");
  }

  contact(): void {
    this.lastContactAt = this.now();
  }

  stopping(): void {
    this.enter("stopping");
  }

  /** The group check: "ok" only for a member holding its current assignment. */
  groupCheck(startState: string): string {
    switch (this.phase) {
      case "member":
        return "ok";
      case "starting":
        return `not joined: ${startState}`;
      case "joining":
        return `not joined: joining the consumer group "${this.options.groupId}" since ${iso(this.since)}${
          startState === STARTING ? "" : ` (${startState})`
        }`;
      case "rebalancing":
        return `rebalancing since ${iso(this.since)}: the group hands out its partitions anew; generation ${this.generation}'s assignment [${this.partitions.join(", ")}] is revoked`;
      case "out":
        return `out of the consumer group since ${iso(this.since)}: ${this.error}; it rejoins by itself`;
      case "stopping":
        return "stopping: leaving the consumer group";
    }
  }

  /** The log check: "ok" when Kafka answered this member lately or answers a probe now. */
  async logCheck(probeLog: () => Promise<unknown>): Promise<string> {
    if (this.options.embedded) return "ok";
    const last = this.lastContactAt;
    const age = last === null ? null : this.now() - last;
    if (age !== null && age <= this.options.contactWindowMs) return "ok";
    // One probe at a time, whatever the number of readiness requests.
    if (!this.probing) {
      const timeoutMs = this.options.probeTimeoutMs ?? 2000;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      this.probing = Promise.race([probeLog(), timeout])
        .then(
          () => "ok",
          (err: Error) => {
            const silent =
              age === null
                ? "Kafka has not answered this member yet"
                : `Kafka has not answered this member for ${(age / 1000).toFixed(1)} s`;
            return `Kafka unreachable: ${silent}, and a metadata request failed: ${err?.message || String(err)}`;
          },
        )
        .finally(() => {
          clearTimeout(timer);
          this.probing = null;
        });
    }
    return this.probing;
  }

  /** The whole answer of GET /readyz: 200 with `ready`, else 503 with the reason. */
  async evaluate(input: ActorsReadinessInput): Promise<{ ready: boolean; body: ActorsReadinessBody }> {
    const checks: Record<string, string> = {
      group: this.groupCheck(input.startState),
      log: await this.logCheck(input.probeLog),
    };
    for (const [name, why] of Object.entries(input.stalls))
      checks[name] = why.startsWith(DEGRADED) ? why : `${DEGRADED}${why}`;
    const ready = isReady(checks);
    const failing = Object.entries(checks).filter(([, v]) => v !== "ok" && !v.startsWith(DEGRADED));
    return {
      ready,
      body: {
        status: ready ? "ready" : "not ready",
        nodeID: input.nodeID,
        ...(ready ? {} : { reason: failing.map(([k, v]) => `${k}: ${v}`).join("; ") }),
        phase: this.phase,
        generation: this.generation,
        partitions: this.phase === "member" ? [...this.partitions] : [],
        checks,
      },
    };
  }
}
