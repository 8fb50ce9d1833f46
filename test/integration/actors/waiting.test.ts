import { setTimeout as sleep } from "node:timers/promises";
import type { Producer } from "kafkajs";
import { messageKey, type StockMessage } from "../../../domain/messages";
import { freePort } from "../../../lib/net";
import { PrivateKafka } from "../../support/private-kafka";
import { AppProcess } from "../../support/processes";
import { freshDatabase, kafkaClient, STACK, waitFor, withAdmin } from "../../support/stack";
import { TcpProxy } from "../../support/tcp-proxy";
import {
  actorsEnv,
  deleteSnapshots,
  expectedTickRows,
  generateMessages,
  newScenario,
  openDatabase,
  place,
  readTicks,
  replay,
  settingsOf,
  SYMBOLS,
  type TestScenario,
} from "./harness";

/**
 * A node waits for its dependencies instead of dying: started while Kafka, Postgres and Redis
 * are away, or running when Kafka goes away for longer than kafkajs retries, it stays up, says it
 * is not ready, logs one line when a wait starts and one when it ends, and then stores every tick
 * exactly once. Redis is only a cache: nothing waits for it. A partition stalled by a Postgres
 * outage shows in the metrics and `/api/cluster`, with one line when it stalls and one when it
 * recovers.
 *
 * The Kafka broker here is a private one this file stops and starts; Postgres and Redis are the
 * shared servers, made unreachable through TCP proxies (see outages.test.ts), never stopped.
 */

const PARTITIONS = 3;

const kafka = new PrivateKafka();
const cleanups: (() => Promise<unknown>)[] = [];
const processes: AppProcess[] = [];

beforeAll(async () => {
  await kafka.start();
}, 120000);

afterAll(async () => {
  await Promise.all(processes.map(p => p.kill("SIGKILL")));
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await kafka.destroy();
}, 60000);

/** A fresh database, topic (on the private broker) and group. */
async function scenario(prefix: string): Promise<{ s: TestScenario; db: ReturnType<typeof openDatabase> }> {
  const database = await freshDatabase();
  cleanups.push(database.drop);
  const db = openDatabase(database.url);
  cleanups.push(() => db.close());
  const s = newScenario(prefix, PARTITIONS, database.url);
  await withAdmin(
    admin =>
      admin.createTopics({ waitForLeaders: true, topics: [{ topic: s.topic, numPartitions: PARTITIONS }] }),
    kafka.brokers,
  );
  cleanups.push(() => deleteSnapshots(s));
  return { s, db };
}

async function produce(topic: string, messages: readonly StockMessage[]): Promise<void> {
  const producer: Producer = kafkaClient("waiting-producer", kafka.brokers).producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 500) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + 500).map(m => ({ key: messageKey(m), value: JSON.stringify(m) })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** Waits until the group committed every message of the topic on the private broker. */
async function waitUntilAllCommitted(s: TestScenario, timeoutMs = 90000): Promise<void> {
  await waitFor(
    `group ${s.groupId} to commit all of ${s.topic}`,
    () =>
      withAdmin(async admin => {
        const [ends, [committed]] = await Promise.all([
          admin.fetchTopicOffsets(s.topic),
          admin.fetchOffsets({ groupId: s.groupId, topics: [s.topic] }),
        ]);
        const done = new Map(committed.partitions.map(p => [p.partition, Number(p.offset)]));
        return ends.every(e => Number(e.high) === 0 || done.get(e.partition) === Number(e.high));
      }, kafka.brokers),
    timeoutMs,
    250,
  );
}

async function metrics(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
  return r.text();
}

/** The k8s readiness probe's rule (k8s/actors.yaml): a `stock_partitions_owned` sample exists. */
const holdsAssignment = (text: string) => /^stock_partitions_owned[{ ]/m.test(text);

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as T };
}

/** GET /readyz on the metrics port: the actors' own readiness. */
const actorsReadiness = (port: number) =>
  getJson<{ status: string; reason?: string; partitions: number[] }>(`http://127.0.0.1:${port}/readyz`);

const count = (p: AppProcess, pattern: RegExp) => p.output.filter(l => pattern.test(l)).length;

function start(name: string, s: TestScenario, env: Record<string, string>): AppProcess {
  const p = new AppProcess(
    name,
    actorsEnv(s, {
      KAFKA_BROKERS: kafka.brokers,
      LOG_LEVEL: "info",
      RETRY_MAX_BACKOFF_MS: "1000",
      ...env,
    }),
  ).start();
  processes.push(p);
  return p;
}

function proxyTo(url: string): TcpProxy {
  const u = new URL(url);
  const proxy = new TcpProxy(u.hostname, Number(u.port));
  cleanups.push(() => proxy.stop());
  return proxy;
}

function withPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

interface Readiness {
  status: string;
  checks: Record<string, string>;
}

/** `start.actors` says how many attempts failed: "(N failed attempt(s))". */
const failedAttempts = (check: string | undefined) =>
  Number(/\((\d+) failed attempt/.exec(check ?? "")?.[1] ?? 0);

describe("waiting for dependencies instead of exiting", () => {
  it("starts while Kafka, Postgres and Redis are away, is not ready, waits, then stores every tick exactly", async () => {
    const { s, db } = await scenario("actors_waiting_start");
    const messages = generateMessages({ seed: 61, symbols: SYMBOLS, ticks: 3000 });
    const placed = place(messages, PARTITIONS);
    await produce(s.topic, messages);
    await kafka.stop();

    const postgres = proxyTo(s.databaseUrl);
    const redis = proxyTo(STACK.redisUrl);
    const [pgPort, redisPort, httpPort, metricsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    // With the gateway and ingest in the same process, as in the all-in-one node: the gateway
    // must come up meanwhile, and ingest waits for Kafka too.
    const node = start("waiting-start", s, {
      SERVICES: "actors,gateway,ingest",
      PORT: String(httpPort),
      HOST: "127.0.0.1",
      METRICS_PORT: String(metricsPort),
      DATABASE_URL: withPort(s.databaseUrl, pgPort),
      REDIS_URL: withPort(STACK.redisUrl, redisPort),
    });
    const base = `http://127.0.0.1:${httpPort}`;

    await node.waitForLine(/actors waiting: reach the log \(Kafka\) failed/, 60000);
    // The first attempt fails only once kafkajs has given up (KafkaJSNumberOfRetriesExceeded,
    // ~10 s): where the node used to exit. A second failed attempt means it outlived that.
    const waiting = await waitFor(
      "a second failed attempt to reach Kafka",
      async () => {
        const r = await getJson<Readiness>(`${base}/readyz`);
        return failedAttempts(r.body.checks["start.actors"]) >= 2 ? r : undefined;
      },
      60000,
      500,
    );
    expect(waiting.status).toBe(503);
    expect(waiting.body.status).toBe("not ready");
    expect((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(3000) })).status).toBe(200);
    expect(holdsAssignment(await metrics(metricsPort))).toBe(false);
    // The actors' own readiness, on the metrics port: not joined, and why.
    const actorsWaiting = await actorsReadiness(metricsPort);
    expect(actorsWaiting.status).toBe(503);
    expect(actorsWaiting.body.reason).toMatch(
      /^group: not joined: waiting since .*reach the log \(Kafka\) failed/,
    );
    expect(node.running).toBe(true);
    expect(count(node, /actors waiting:/)).toBe(1);

    await kafka.start();
    await node.waitForLine(/actors waiting: migrate the database \(Postgres\) failed/, 60000);
    expect(count(node, /actors resumed after .* \(reach the log \(Kafka\)\)/)).toBe(1);
    const pgWait = await getJson<Readiness>(`${base}/readyz`);
    expect(pgWait.status).toBe(503);
    expect(pgWait.body.checks["start.actors"]).toMatch(/Postgres/);

    // Redis stays away: the snapshot cache is not waited for, the actors go on without it.
    await postgres.start(pgPort);
    await waitUntilAllCommitted(s);
    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    await waitFor("/readyz to answer 200", async () => (await getJson(`${base}/readyz`)).status === 200);
    await waitFor(
      "the actors' /readyz to answer 200",
      async () => (await actorsReadiness(metricsPort)).status === 200,
    );
    const text = await metrics(metricsPort);
    expect(holdsAssignment(text)).toBe(true);
    expect(text).toMatch(/^stock_snapshot_cache_up(\{[^}]*\})? 0$/m);
    expect(count(node, /snapshot cache \(redis\) unavailable:/)).toBe(1);
    await redis.start(redisPort);
    // One line per change of state: two waits began, two ended.
    expect(count(node, /actors waiting:/)).toBe(2);
    expect(count(node, /actors resumed after/)).toBe(2);
    expect(count(node, /ingest waiting: reach the log \(Kafka\) failed/)).toBe(1);
    expect(count(node, /ingest resumed after/)).toBe(1);
    expect(node.running).toBe(true);
  }, 240000);

  it("keeps running while its Kafka is away for longer than kafkajs retries, then resumes exactly", async () => {
    const { s, db } = await scenario("actors_waiting_kafka");
    const messages = generateMessages({ seed: 62, symbols: SYMBOLS, ticks: 3000 });
    const placed = place(messages, PARTITIONS);
    const metricsPort = await freePort();
    const node = start("waiting-kafka", s, { METRICS_PORT: String(metricsPort) });

    await produce(s.topic, messages.slice(0, 1500));
    await waitUntilAllCommitted(s);
    expect(holdsAssignment(await metrics(metricsPort))).toBe(true);
    expect((await actorsReadiness(metricsPort)).body).toMatchObject({
      status: "ready",
      partitions: [0, 1, 2],
    });

    await kafka.stop();
    // Unready over HTTP once Kafka stops answering the member, whichever way it is seen first.
    const lost = await waitFor(
      "the actors' /readyz to answer 503",
      async () => {
        const r = await actorsReadiness(metricsPort);
        return r.status === 503 ? r : undefined;
      },
      90000,
      250,
    );
    expect(lost.body.reason).toMatch(/Kafka unreachable|out of the consumer group|rebalancing/);
    // The consumer drops out of the group: not ready (no assignment) until it is back.
    await node.waitForLine(/actors out of the consumer group:/, 90000);
    await waitFor(
      "the node to report no assignment",
      async () => !holdsAssignment(await metrics(metricsPort)),
    );
    // The outage's length is the input here, not a hope: kafkajs's admin gives up after ~10 s of
    // retries (KafkaJSNumberOfRetriesExceeded, where nodes used to exit), so Kafka stays away 20 s.
    await new Promise(resolve => setTimeout(resolve, 20000));
    expect(node.running).toBe(true);

    await kafka.start();
    await node.waitForLine(/actors back in the consumer group after/, 90000);
    await waitFor(
      "the actors' /readyz to answer 200 again",
      async () => (await actorsReadiness(metricsPort)).status === 200,
      60000,
    );
    await produce(s.topic, messages.slice(1500));
    await waitUntilAllCommitted(s);
    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    expect(holdsAssignment(await metrics(metricsPort))).toBe(true);
    expect(count(node, /actors out of the consumer group:/)).toBe(1);
    expect(count(node, /actors back in the consumer group after/)).toBe(1);
    expect(node.running).toBe(true);
  }, 300000);

  it("goes on while Redis is away, and shows a partition stalled by Postgres in its metric and /api/cluster, one line each way", async () => {
    const { s, db } = await scenario("actors_stall");
    const messages = generateMessages({ seed: 63, symbols: SYMBOLS, ticks: 3000 });
    const placed = place(messages, PARTITIONS);
    const redis = proxyTo(STACK.redisUrl);
    const redisPort = await redis.start();
    const postgres = proxyTo(s.databaseUrl);
    const pgPort = await postgres.start();
    const [httpPort, metricsPort] = [await freePort(), await freePort()];
    const node = start("stall", s, {
      SERVICES: "actors,gateway",
      PORT: String(httpPort),
      HOST: "127.0.0.1",
      METRICS_PORT: String(metricsPort),
      REDIS_URL: withPort(STACK.redisUrl, redisPort),
      DATABASE_URL: withPort(s.databaseUrl, pgPort),
    });
    const base = `http://127.0.0.1:${httpPort}`;
    type Cluster = { stalled: { nodeID: string; partition: number; dependency: string; attempts: number }[] };

    await produce(s.topic, messages.slice(0, 1000));
    await waitUntilAllCommitted(s);

    // Redis away: every tick is still stored and committed; the cache says it is down, once.
    await redis.cut();
    await produce(s.topic, messages.slice(1000, 1800));
    await waitUntilAllCommitted(s);
    expect((await getJson<Cluster>(`${base}/api/cluster`)).body.stalled).toEqual([]);
    expect(await metrics(metricsPort)).toMatch(/^stock_snapshot_cache_up(\{[^}]*\})? 0$/m);
    expect(count(node, /snapshot cache \(redis\) unavailable:/)).toBe(1);
    await redis.restore();

    // Postgres away: the partitions hold still, each says so once.
    await postgres.cut();
    await produce(s.topic, messages.slice(1800));
    // Held long enough for many retries: the log must still say it once.
    const held = await waitFor(
      "a partition stalled on Postgres for several attempts",
      async () => {
        const { body } = await getJson<Cluster>(`${base}/api/cluster`);
        return body.stalled.some(x => x.dependency === "postgres" && x.attempts >= 4) ? body : undefined;
      },
      60000,
      250,
    );
    const stalled = held.stalled.map(x => x.partition);
    // /readyz names each stalled partition and why.
    const readiness = await getJson<Readiness>(`${base}/readyz`);
    for (const p of stalled)
      expect(readiness.body.checks[`partition.${p}`]).toMatch(/^degraded: stalled since .* on postgres/);
    const text = await metrics(metricsPort);
    for (const p of stalled)
      expect(text).toMatch(
        new RegExp(`^stock_partition_stalled\\{[^}]*partition="${p}"[^}]*reason="postgres"[^}]*\\} 1$`, "m"),
      );

    await postgres.restore();
    await waitUntilAllCommitted(s);
    const expected = replay(placed, settingsOf({}));
    expect(await readTicks(db)).toEqual(expectedTickRows(placed, expected));
    await waitFor("no stalled partition in /api/cluster", async () => {
      const { body } = await getJson<Cluster>(`${base}/api/cluster`);
      return body.stalled.length === 0;
    });
    const after = await metrics(metricsPort);
    for (const p of stalled)
      expect(after).toMatch(
        new RegExp(`^stock_partition_stalled\\{[^}]*partition="${p}"[^}]*reason="postgres"[^}]*\\} 0$`, "m"),
      );
    // The batches after Postgres came back used the cache again (Redis was back by then).
    expect(after).toMatch(/^stock_snapshot_cache_up(\{[^}]*\})? 1$/m);
    expect(count(node, /snapshot cache \(redis\) available again after/)).toBe(1);
    for (let p = 0; p < PARTITIONS; p++) {
      const stalls = count(node, new RegExp(`partition ${p} stalled:`));
      const recoveries = count(node, new RegExp(`partition ${p} recovered after`));
      expect({ p, stalls, recoveries }).toEqual({
        p,
        stalls: stalled.includes(p) ? 1 : stalls,
        recoveries: stalls,
      });
      expect(stalls).toBeLessThanOrEqual(1);
    }
  }, 240000);

  it("stops cleanly on SIGTERM while waiting for Kafka", async () => {
    const { s } = await scenario("actors_waiting_sigterm");
    await kafka.stop();
    const node = start("waiting-sigterm", s, {});
    await node.waitForLine(/actors waiting: reach the log \(Kafka\) failed/, 60000);
    // The first attempt has failed (kafkajs retried it for seconds); past the 200 ms pause the
    // next one is under way, and SIGTERM must not wait for it to run out either.
    await sleep(1500);
    const signalled = Date.now();
    const code = await node.kill("SIGTERM");
    expect(code).toBe(0);
    console.log(`stopped ${Date.now() - signalled} ms after SIGTERM`);
    const took = Date.now() - signalled;
    console.log(`stopped ${took} ms after SIGTERM, with a Kafka connection attempt in flight`);
    expect(took).toBeLessThan(5000);
    await kafka.start();
  }, 120000);
});
