import { ServiceBroker } from "moleculer";
import type { AddressInfo } from "node:net";
import { routeOnMetricsPort, sendJson } from "../../../services/actors/metrics-port";
import { GroupReadiness } from "../../../services/actors/readiness";

const WINDOW = 10000;

/** A readiness on a clock the test moves, with a log probe that answers as `probe` says. */
function setup(options: { embedded?: boolean } = {}) {
  const clock = { now: Date.parse("2026-11-26T10:00:00Z") };
  const probe = { ok: true, calls: 0 };
  const group = new GroupReadiness({
    contactWindowMs: WINDOW,
    embedded: options.embedded ?? false,
    groupId: "stock-actors",
    probeTimeoutMs: 50,
    now: () => clock.now,
  });
  const evaluate = (startState = "starting", stalls: Record<string, string> = {}) =>
    group.evaluate({
      nodeID: "actors-1",
      startState,
      stalls,
      probeLog: () => {
        probe.calls += 1;
        return probe.ok
          ? Promise.resolve(12)
          : Promise.reject(new Error("Connection error: connect ECONNREFUSED"));
      },
    });
  return { group, clock, probe, evaluate };
}

describe("GroupReadiness (GET /readyz of an actors node)", () => {
  it("is not ready before the node joined: starting, waiting, joining", async () => {
    const { group, evaluate } = setup();
    const waiting =
      "waiting since 2026-11-26T09:59:00.000Z (3 failed attempt(s)): migrate the database (Postgres) failed: refused";
    let r = await evaluate(waiting);
    expect(r.ready).toBe(false);
    expect(r.body).toMatchObject({
      status: "not ready",
      nodeID: "actors-1",
      phase: "starting",
      partitions: [],
      reason: expect.stringContaining(`group: not joined: ${waiting}`),
    });
    group.joining();
    r = await evaluate();
    expect(r.body.checks.group).toBe(
      'not joined: joining the consumer group "stock-actors" since 2026-11-26T10:00:00.000Z',
    );
    expect(r.ready).toBe(false);
  });

  it("is ready once it holds an assignment, an empty one too", async () => {
    const { group, evaluate } = setup();
    group.joining();
    group.assigned([], 1);
    let r = await evaluate();
    expect(r).toEqual({
      ready: true,
      body: {
        status: "ready",
        nodeID: "actors-1",
        phase: "member",
        generation: 1,
        partitions: [],
        checks: { group: "ok", log: "ok" },
      },
    });
    group.assigned([2, 0, 1], 2);
    r = await evaluate();
    expect(r.body).toMatchObject({ status: "ready", generation: 2, partitions: [2, 0, 1] });
  });

  it("goes unready during a rebalance and back with the next assignment", async () => {
    const { group, clock, evaluate } = setup();
    group.assigned([0, 1, 2, 3], 1);
    clock.now += 1000;
    group.rebalancing(1);
    let r = await evaluate();
    expect(r.ready).toBe(false);
    expect(r.body.phase).toBe("rebalancing");
    expect(r.body.reason).toBe(
      "group: rebalancing since 2026-11-26T10:00:01.000Z: the group hands out its partitions anew; generation 1's assignment [0, 1, 2, 3] is revoked",
    );
    group.assigned([0, 1], 2);
    r = await evaluate();
    expect(r.body).toMatchObject({ status: "ready", phase: "member", partitions: [0, 1] });
    // A rebalance of a generation already over (learnt late) changes nothing.
    group.rebalancing(1);
    expect((await evaluate()).ready).toBe(true);
  });

  it("goes unready when the member drops out of the group, until it rejoins", async () => {
    const { group, evaluate } = setup();
    group.assigned([0, 1], 1);
    group.left(new Error("The group coordinator is not available"), 2);
    let r = await evaluate();
    expect(r.ready).toBe(false);
    expect(r.body).toMatchObject({ phase: "out", partitions: [] });
    expect(r.body.checks.group).toMatch(
      /^out of the consumer group since .*: The group coordinator is not available; it rejoins by itself$/,
    );
    group.assigned([0, 1], 3);
    r = await evaluate();
    expect(r.ready).toBe(true);
  });

  it("asks the log only when Kafka has not answered the member within the window, and is unready when it does not answer", async () => {
    const { group, clock, probe, evaluate } = setup();
    group.assigned([0], 1);
    clock.now += WINDOW;
    expect((await evaluate()).ready).toBe(true);
    expect(probe.calls).toBe(0);
    // Silent longer than the session timeout: a metadata request decides.
    clock.now += 2500;
    expect((await evaluate()).ready).toBe(true);
    expect(probe.calls).toBe(1);
    probe.ok = false;
    const r = await evaluate();
    expect(r.ready).toBe(false);
    expect(r.body.checks.log).toBe(
      "Kafka unreachable: Kafka has not answered this member for 12.5 s, and a metadata request failed: Connection error: connect ECONNREFUSED",
    );
    expect(r.body.reason).toBe(`log: ${r.body.checks.log}`);
    // The next answer (a fetch, a heartbeat) makes it ready again, without a probe.
    group.contact();
    const calls = probe.calls;
    expect((await evaluate()).ready).toBe(true);
    expect(probe.calls).toBe(calls);
  });

  it("counts a probe that never answers as failed, after its timeout, and probes once for concurrent requests", async () => {
    const { group, clock } = setup();
    group.assigned([0], 1);
    clock.now += WINDOW + 1;
    let calls = 0;
    const silent = () => {
      calls += 1;
      return new Promise(() => undefined);
    };
    const ask = () =>
      group.evaluate({ nodeID: "actors-1", startState: "starting", stalls: {}, probeLog: silent });
    const [a, b] = await Promise.all([ask(), ask()]);
    expect(calls).toBe(1);
    for (const r of [a, b]) expect(r.body.checks.log).toMatch(/no answer within 50 ms$/);
  });

  it("reports stalled partitions as degraded, still ready", async () => {
    const { group, evaluate } = setup();
    group.assigned([3], 1);
    const r = await evaluate("starting", {
      "partition.3": "stalled since x on postgres (4 failed attempt(s)): persist failed",
    });
    expect(r.ready).toBe(true);
    expect(r.body.checks["partition.3"]).toBe(
      "degraded: stalled since x on postgres (4 failed attempt(s)): persist failed",
    );
  });

  it("never asks the embedded log, which lives in the process", async () => {
    const { group, clock, probe, evaluate } = setup({ embedded: true });
    group.assigned([0], 1);
    clock.now += 10 * WINDOW;
    probe.ok = false;
    expect((await evaluate()).ready).toBe(true);
    expect(probe.calls).toBe(0);
  });

  it("is unready while stopping", async () => {
    const { group, evaluate } = setup();
    group.assigned([0], 1);
    group.stopping();
    const r = await evaluate();
    expect(r.body).toMatchObject({
      status: "not ready",
      phase: "stopping",
      reason: "group: stopping: leaving the consumer group",
    });
  });
});

describe("routeOnMetricsPort", () => {
  let broker: ServiceBroker;
  let base = "";

  beforeAll(async () => {
    broker = new ServiceBroker({
      logger: false,
      metrics: { enabled: true, reporter: [{ type: "Prometheus", options: { port: 0, path: "/metrics" } }] },
    });
    const server = (broker.metrics as unknown as { reporter: { server: import("node:http").Server }[] })
      .reporter[0].server;
    if (!server.listening) await new Promise(resolve => server.once("listening", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await broker.stop();
  });

  it("serves its routes beside the reporter, whose /metrics and 404 stay its own, and removes them again", async () => {
    const before = await fetch(`${base}/metrics`);
    const metricsBefore = await before.text();
    const remove = routeOnMetricsPort(broker, {
      "/readyz": (_req, res) => sendJson(res, 503, { status: "not ready" }),
    });
    expect(remove).not.toBeNull();
    try {
      const ready = await fetch(`${base}/readyz?verbose=1`);
      expect([ready.status, await ready.json()]).toEqual([503, { status: "not ready" }]);
      expect(ready.headers.get("content-type")).toBe("application/json; charset=utf-8");
      const post = await fetch(`${base}/readyz`, { method: "POST" });
      expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get("content-type")).toBe(before.headers.get("content-type"));
      const names = (text: string) => text.split("\n").filter(l => l.startsWith("# TYPE"));
      expect(names(await metrics.text())).toEqual(names(metricsBefore));
      expect((await fetch(`${base}/other`)).status).toBe(404);
    } finally {
      remove!();
    }
    expect((await fetch(`${base}/readyz`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it("returns null on a node without a Prometheus reporter (METRICS_PORT=0)", () => {
    const bare = new ServiceBroker({ logger: false, metrics: { enabled: true, reporter: [] } });
    expect(routeOnMetricsPort(bare, {})).toBeNull();
  });
});
