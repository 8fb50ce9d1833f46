import { UnavailableError, ValidationError } from "../../../domain/errors";
import { recordingLogger } from "../../support/logger";
import {
  describeOutage,
  nextBackoff,
  Outage,
  repeatFilter,
  untilAvailable,
  WaitAborted,
} from "../../../lib/waiting";

const down = () => new UnavailableError("Postgres: connect ECONNREFUSED 127.0.0.1:5432");

describe("nextBackoff", () => {
  it("doubles up to the cap and never goes below 1 ms", () => {
    const seen: number[] = [];
    for (let d = 100, i = 0; i < 8; i++, d = nextBackoff(d, 1000)) seen.push(d);
    expect(seen).toEqual([100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    expect(nextBackoff(0, 1000)).toBe(1);
  });
});

describe("Outage", () => {
  it("logs one line when failures start and one when the step succeeds again, whatever the retries", () => {
    const logger = recordingLogger();
    let now = 1_000_000;
    const outage = new Outage(
      "partition 3",
      logger,
      { failing: "stalled", recovered: "recovered" },
      () => now,
    );
    expect(outage.succeeded()).toBeNull();
    expect(outage.failed("persist partition 3", down())).toBe(true);
    for (let i = 0; i < 500; i++) {
      now += 100;
      expect(outage.failed("persist partition 3", down())).toBe(false);
    }
    expect(outage.state).toMatchObject({ what: "persist partition 3", attempts: 501, since: 1_000_000 });
    now = 1_012_345;
    expect(outage.succeeded()).toMatchObject({ attempts: 501 });
    expect(outage.succeeded()).toBeNull();
    expect(logger.lines).toEqual([
      "warn partition 3 stalled: persist partition 3 failed: Postgres: connect ECONNREFUSED 127.0.0.1:5432",
      "info partition 3 recovered after 12.3 s and 501 failed attempt(s) (persist partition 3)",
    ]);
  });

  it("keeps the latest error while failing, and says so once when it is abandoned", () => {
    const logger = recordingLogger();
    const outage = new Outage("actors", logger, { failing: "waiting", recovered: "resumed" }, () => 0);
    outage.failed("reach the log (Kafka)", new Error("first"));
    outage.failed("reach the log (Kafka)", new Error("second"));
    expect(outage.state?.error).toBe("second");
    expect(describeOutage(outage.state)).toBe(
      "waiting since 1970-01-01T00:00:00.000Z (2 failed attempt(s)): reach the log (Kafka) failed: second",
    );
    expect(outage.abandoned("stopping")).not.toBeNull();
    expect(outage.abandoned("stopping")).toBeNull();
    expect(logger.lines).toHaveLength(2);
    expect(logger.lines[1]).toMatch(
      /^info actors stopped waiting after 0\.0 s and 2 failed attempt\(s\) \(stopping\)/,
    );
    expect(describeOutage(null)).toBe("starting");
  });
});

describe("untilAvailable", () => {
  it("retries a retriable failure until it succeeds, logging the wait once each way", async () => {
    const logger = recordingLogger();
    const changes: (string | null)[] = [];
    let calls = 0;
    const value = await untilAvailable(
      "connect",
      async () => {
        calls += 1;
        if (calls < 6) throw down();
        return "connected";
      },
      {
        outage: new Outage("ingest", logger, { failing: "waiting", recovered: "resumed" }),
        signal: new AbortController().signal,
        initialBackoffMs: 1,
        maxBackoffMs: 4,
        onChange: s => changes.push(s ? `${s.attempts}` : null),
      },
    );
    expect(value).toBe("connected");
    expect(calls).toBe(6);
    expect(changes).toEqual(["1", "2", "3", "4", "5", null]);
    expect(logger.lines.map(l => l.split(":")[0])).toEqual([
      "warn ingest waiting",
      expect.stringMatching(/^info ingest resumed after/),
    ]);
  });

  it("passes on at once a failure no retry can fix", async () => {
    const logger = recordingLogger();
    const fatal = new ValidationError("migration 001_init changed after it was applied", []);
    await expect(
      untilAvailable("migrate", () => Promise.reject(fatal), {
        outage: new Outage("query", logger),
        signal: new AbortController().signal,
        maxBackoffMs: 10,
      }),
    ).rejects.toBe(fatal);
    expect(logger.lines).toEqual([]);
  });

  it("ends the wait when its signal aborts, even during an attempt that never settles", async () => {
    const logger = recordingLogger();
    const abort = new AbortController();
    let calls = 0;
    const waiting = untilAvailable(
      "connect",
      () => {
        calls += 1;
        if (calls === 1) return Promise.reject(down());
        // The second attempt hangs (a connect to a host that never answers); SIGTERM comes meanwhile.
        setImmediate(() => abort.abort());
        return new Promise<never>(() => undefined);
      },
      { outage: new Outage("actors", logger), signal: abort.signal, initialBackoffMs: 1, maxBackoffMs: 1 },
    );
    await expect(waiting).rejects.toBeInstanceOf(WaitAborted);
    expect(calls).toBe(2);
    expect(logger.lines).toHaveLength(2);
    expect(logger.lines[1]).toMatch(/stopped waiting .*\(stopping\)/);
  });
});

describe("repeatFilter", () => {
  it("passes a line on once per interval, and different lines independently", () => {
    let now = 0;
    const fresh = repeatFilter(60000, () => now);
    expect(fresh("Connection error: ECONNREFUSED")).toBe(true);
    now = 1000;
    expect(fresh("Connection error: ECONNREFUSED")).toBe(false);
    expect(fresh("Crash: KafkaJSNumberOfRetriesExceeded")).toBe(true);
    now = 61000;
    expect(fresh("Connection error: ECONNREFUSED")).toBe(true);
  });
});
