import { KafkaLog } from "../../../adapters/log/kafka-log";
import { freePort } from "../../../lib/net";
import type { ActorsReadinessBody } from "../../../services/actors/readiness";
import { createTopic, deleteTopic, STACK, uniqueName, waitFor } from "../../support/stack";
import { TcpProxy } from "../../support/tcp-proxy";
import { useActorsScenario } from "./harness";

/**
 * Readiness of actors-only nodes over HTTP, on METRICS_PORT (no gateway runs there): real
 * processes on the shared Kafka, Postgres and Redis, with Postgres reached through a proxy the
 * test cuts so that a node is held before it joins. Kafka going away is in waiting.test.ts (a
 * private broker); the states themselves are unit-tested (test/unit/services).
 */

const PARTITIONS = 4;
const ctx = useActorsScenario("actors_readiness", PARTITIONS, { teardownTimeoutMs: 60000 });
const proxies: TcpProxy[] = [];

afterAll(async () => {
  for (const p of proxies) await p.stop();
});

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as T };
}

const readiness = (port: number) => getJson<ActorsReadinessBody>(`http://127.0.0.1:${port}/readyz`);

function withPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

describe("GET /readyz on the metrics port of an actors node", () => {
  const ports = { a: 0, b: 0 };

  it("answers 503 naming the reason until the node joined the group, then 200 with its assignment", async () => {
    const { scenario } = ctx;
    const u = new URL(scenario.databaseUrl);
    const proxy = new TcpProxy(u.hostname, Number(u.port));
    proxies.push(proxy);
    const pgPort = await proxy.start();
    await proxy.cut();
    ports.a = await freePort();
    const a = ctx.startProcess("readiness-a", {
      METRICS_PORT: String(ports.a),
      DATABASE_URL: withPort(scenario.databaseUrl, pgPort),
      KAFKA_CLIENT_ID: "readiness-a",
      LOG_LEVEL: "info",
      RETRY_MAX_BACKOFF_MS: "500",
    });

    // Held at start-up: Kafka answers, Postgres does not, so the node cannot join yet.
    const held = await waitFor(
      "/readyz to name the wait for Postgres",
      async () => {
        const r = await readiness(ports.a);
        return /migrate the database \(Postgres\) failed/.test(r.body.reason ?? "") ? r : undefined;
      },
      60000,
      200,
    );
    expect(held.status).toBe(503);
    expect(held.body).toMatchObject({
      status: "not ready",
      phase: "starting",
      partitions: [],
      reason: expect.stringMatching(
        /^group: not joined: waiting since \S+ \(\d+ failed attempt\(s\)\): migrate/,
      ),
    });
    expect(held.body.checks.log).toBe("ok");
    // Liveness and the metrics answer meanwhile; the metrics are the reporter's own.
    const live = await getJson<{ status: string }>(`http://127.0.0.1:${ports.a}/healthz`);
    expect([live.status, live.body.status]).toEqual([200, "ok"]);
    const metrics = await fetch(`http://127.0.0.1:${ports.a}/metrics`);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    expect(text).toMatch(/^moleculer_broker_started/m);
    expect(text).not.toMatch(/^stock_partitions_owned[{ ]/m);

    await proxy.restore();
    const ready = await waitFor(
      "/readyz to answer 200",
      async () => {
        const r = await readiness(ports.a);
        return r.status === 200 ? r : undefined;
      },
      60000,
      200,
    );
    expect(ready.body).toMatchObject({
      status: "ready",
      phase: "member",
      partitions: [0, 1, 2, 3],
      checks: { group: "ok", log: "ok" },
    });
    expect(ready.body.reason).toBeUndefined();
    expect(a.running).toBe(true);
  }, 120000);

  it("goes through a rebalance when a second node joins, and both are ready afterwards with their share", async () => {
    const [a] = ctx.processes;
    ports.b = await freePort();
    const b = ctx.startProcess("readiness-b", {
      METRICS_PORT: String(ports.b),
      KAFKA_CLIENT_ID: "readiness-b",
      LOG_LEVEL: "info",
    });
    // The first node learns of the rebalance, is unready until its next assignment, and says so.
    await a.waitForLine(/consumer group rebalancing: the assignment of generation 1 is revoked/, 60000);
    await a.waitForLine(/assigned partitions \[.*\] \(generation 2\)/, 60000);
    await b.waitForLine(/assigned partitions \[/, 60000);
    const [ra, rb] = await waitFor(
      "both nodes to answer 200",
      async () => {
        const both = await Promise.all([readiness(ports.a), readiness(ports.b)]);
        return both.every(r => r.status === 200) ? both : undefined;
      },
      60000,
      200,
    );
    const owned = [...ra.body.partitions, ...rb.body.partitions].sort();
    expect(owned).toEqual([0, 1, 2, 3]);
    expect(ra.body.partitions.length).toBeGreaterThan(0);
    expect(rb.body.partitions.length).toBeGreaterThan(0);
    const aLines = a.output.join("\n");
    expect(aLines.indexOf("consumer group rebalancing")).toBeLessThan(aLines.indexOf("(generation 2)"));

    // A node stopping (SIGTERM) leaves the group: the other rebalances and takes everything.
    await b.kill("SIGTERM");
    await a.waitForLine(/assigned partitions \[0, 1, 2, 3\] \(generation 3\)/, 60000);
    const alone = await waitFor(
      "the first node to answer 200 with every partition",
      async () => {
        const r = await readiness(ports.a);
        return r.status === 200 && r.body.partitions.length === PARTITIONS ? r : undefined;
      },
      30000,
      200,
    );
    expect(alone.body.generation).toBe(3);
  }, 180000);
});

describe("the Kafka consumer's hooks that readiness follows", () => {
  it("calls onRebalancing on a member when another joins, before its next assignment, and onContact all along", async () => {
    const topic = uniqueName("readiness_hooks");
    const groupId = uniqueName("readiness_hooks_group");
    await createTopic(topic, 2);
    const log = new KafkaLog({
      brokers: STACK.kafkaBrokers.split(","),
      clientId: "readiness-hooks",
      topic,
      partitions: 2,
      sessionTimeoutMs: 10000,
    });
    const events: string[] = [];
    let contacts = 0;
    const hooks = (name: string) => ({
      onAssignment: (partitions: number[], generation: number) =>
        events.push(`${name} assigned ${generation} [${partitions.join(",")}]`),
      onRebalancing: (generation: number) => events.push(`${name} rebalancing ${generation}`),
      onLeft: (_err: unknown, generation: number) => events.push(`${name} left ${generation}`),
      onContact: () => (contacts += 1),
      onBatch: async (batch: { messages: unknown[] }) => batch.messages.length,
    });
    const first = log.createConsumer({ groupId });
    const second = log.createConsumer({ groupId });
    try {
      await first.run(hooks("first"));
      await waitFor("the first assignment", () => events.includes("first assigned 1 [0,1]"), 60000);
      const before = contacts;
      await waitFor("fetches and heartbeats to count as contact", () => contacts > before + 5, 10000);
      await second.run(hooks("second"));
      await waitFor(
        "both members assigned",
        () =>
          events.some(e => e.startsWith("first assigned 2")) &&
          events.some(e => e.startsWith("second assigned 1")),
        60000,
      );
      const firsts = events.filter(e => e.startsWith("first"));
      expect(firsts.slice(0, 3)).toEqual([
        "first assigned 1 [0,1]",
        "first rebalancing 1",
        expect.stringMatching(/^first assigned 2 \[\d\]$/),
      ]);
    } finally {
      await second.stop();
      await first.stop();
      await log.close();
      await deleteTopic(topic);
    }
  }, 120000);
});
