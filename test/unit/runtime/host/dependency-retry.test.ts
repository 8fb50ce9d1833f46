import type { LogBatch } from "../../../../adapters/log/types";
import { MemorySnapshotStore } from "../../../../adapters/snapshots/memory-snapshots";
import { FencedError, UnavailableError } from "../../../../domain/errors";
import {
  Abandoned,
  CacheBreaker,
  retryWhileOwned,
  StallWatch,
} from "../../../../runtime/host/dependency-retry";
import type { Dependency, HostObserver } from "../../../../runtime/host/options";
import { recordingLogger } from "../../../support/logger";

/**
 * A partition's waits for Postgres and Kafka (retried with backoff while the node owns the
 * partition, reported as a stall) and the snapshot cache's breaker (best effort, resting after a
 * failure). Real timers: the first retry waits 100 ms, the next 200 ms.
 */

const down = () => new UnavailableError("Postgres: connect ECONNREFUSED 127.0.0.1:5432");
const step = { what: "persist partition 3", dependency: "postgres" as Dependency };

/** A batch of partition 3 whose heartbeats are counted, active until `active` says otherwise. */
function batchOf(active: () => boolean = () => true): LogBatch & { heartbeats: number } {
  const batch = {
    partition: 3,
    messages: [],
    highWatermark: 0,
    heartbeats: 0,
    heartbeat: async () => void (batch.heartbeats += 1),
    isActive: active,
  };
  return batch;
}

/** An observer that keeps each stall and cache report as a line. */
function recordingObserver(): HostObserver & { reports: string[] } {
  const reports: string[] = [];
  return {
    reports,
    stall: (partition, dependency, stalled) => reports.push(`stall ${partition} ${dependency} ${stalled}`),
    cache: up => reports.push(`cache ${up ? "up" : "down"}`),
  };
}

const running = { maxBackoffMs: 10_000, stopping: () => false };

describe("retryWhileOwned", () => {
  it("retries a retriable failure with growing waits and heartbeats until it succeeds, stalled meanwhile", async () => {
    const logger = recordingLogger();
    const observer = recordingObserver();
    const watch = new StallWatch(3, logger, observer);
    const batch = batchOf();
    const attempts: number[] = [];
    let during: ReturnType<StallWatch["current"]> = null;
    const value = await retryWhileOwned(watch, batch, running, step, async () => {
      attempts.push(performance.now());
      if (attempts.length < 3) throw down();
      during = watch.current();
      return 42;
    });
    expect(value).toBe(42);
    expect(batch.heartbeats).toBe(2);
    const waits = attempts.slice(1).map((t, i) => t - attempts[i]);
    // At least the backoff (timers may fire a millisecond early), doubling.
    expect(waits[0]).toBeGreaterThanOrEqual(98);
    expect(waits[1]).toBeGreaterThanOrEqual(198);
    expect(during).toMatchObject({ partition: 3, dependency: "postgres", step: step.what, attempts: 2 });
    expect(observer.reports).toEqual(["stall 3 postgres true", "stall 3 postgres false"]);
    expect(watch.current()).toBeNull();
    // One line when the wait starts, one when it ends, none per retry.
    expect(logger.lines.map(l => l.split(" ")[0])).toEqual(["warn", "info"]);
  });

  it("gives up with Abandoned when the batch goes inactive during the wait, and the stall ends", async () => {
    let active = true;
    const observer = recordingObserver();
    const watch = new StallWatch(3, recordingLogger(), observer);
    let calls = 0;
    const wait = retryWhileOwned(
      watch,
      batchOf(() => active),
      running,
      step,
      async () => {
        calls += 1;
        active = false;
        throw down();
      },
    );
    await expect(wait).rejects.toThrow(Abandoned);
    await expect(wait).rejects.toThrow(/persist partition 3: partition 3 is no longer ours/);
    expect(calls).toBe(1);
    expect(observer.reports).toEqual(["stall 3 postgres true", "stall 3 postgres false"]);
    expect(watch.current()).toBeNull();
  });

  it("waits no longer than maxBackoffMs before the first retry", async () => {
    const times: number[] = [];
    await retryWhileOwned(
      new StallWatch(0, recordingLogger(), undefined),
      batchOf(),
      { maxBackoffMs: 10, stopping: () => false },
      step,
      async () => {
        times.push(performance.now());
        if (times.length < 2) throw down();
      },
    );
    expect(times[1] - times[0]).toBeLessThan(50);
  });

  it("runs nothing for a batch that is no longer active", async () => {
    let calls = 0;
    const watch = new StallWatch(3, recordingLogger(), undefined);
    await expect(
      retryWhileOwned(
        watch,
        batchOf(() => false),
        running,
        step,
        async () => void (calls += 1),
      ),
    ).rejects.toThrow(Abandoned);
    expect(calls).toBe(0);
  });

  it("gives up with Abandoned at the first retriable failure of a stopping node, without waiting", async () => {
    const observer = recordingObserver();
    const watch = new StallWatch(3, recordingLogger(), observer);
    const batch = batchOf();
    const stopping = { maxBackoffMs: 10_000, stopping: () => true };
    await expect(
      retryWhileOwned(watch, batch, stopping, step, async () => {
        throw down();
      }),
    ).rejects.toThrow(/persist partition 3: stopping/);
    expect(batch.heartbeats).toBe(0);
    expect(observer.reports).toEqual([]);
  });

  it("passes a failure no retry can fix on at once", async () => {
    const observer = recordingObserver();
    const watch = new StallWatch(3, recordingLogger(), observer);
    const batch = batchOf();
    let calls = 0;
    const fenced = new FencedError(3, 1, 2);
    await expect(
      retryWhileOwned(watch, batch, running, step, async () => {
        calls += 1;
        throw fenced;
      }),
    ).rejects.toBe(fenced);
    expect(calls).toBe(1);
    expect(batch.heartbeats).toBe(0);
    expect(observer.reports).toEqual([]);
  });
});

describe("StallWatch", () => {
  it("reports a stall once when it starts, with what fails and since when, and once when it ends", () => {
    const logger = recordingLogger();
    const observer = recordingObserver();
    const watch = new StallWatch(5, logger, observer);
    expect(watch.current()).toBeNull();
    const before = Date.now();
    watch.failed("commit partition 5", new UnavailableError("Kafka: rebalancing"), "kafka", 500);
    watch.failed("commit partition 5", new UnavailableError("Kafka: not coordinator"), "kafka", 500);
    const stall = watch.current();
    expect(stall).toMatchObject({
      partition: 5,
      dependency: "kafka",
      step: "commit partition 5",
      error: "Kafka: not coordinator",
      attempts: 2,
    });
    expect(Date.parse(stall?.since ?? "")).toBeGreaterThanOrEqual(before - 1);
    expect(logger.lines[0]).toMatch(/^warn partition 5 stalled: .*retrying with backoff up to 500 ms$/);
    watch.succeeded();
    expect(observer.reports).toEqual(["stall 5 kafka true", "stall 5 kafka false"]);
    // No stall, nothing to report.
    watch.succeeded();
    watch.end("stopping");
    expect(observer.reports).toHaveLength(2);
  });

  it("ends a stall that is given up, saying why", () => {
    const logger = recordingLogger();
    const observer = recordingObserver();
    const watch = new StallWatch(5, logger, observer);
    watch.failed("persist partition 5", down(), "postgres", 500);
    watch.end("the partition was reassigned");
    expect(watch.current()).toBeNull();
    expect(observer.reports).toEqual(["stall 5 postgres true", "stall 5 postgres false"]);
    expect(logger.lines[1]).toMatch(/^info partition 5 stopped waiting .*\(the partition was reassigned\)/);
  });
});

describe("CacheBreaker", () => {
  let now = 1_000_000;
  beforeEach(() => {
    now = 1_000_000;
    jest.spyOn(Date, "now").mockImplementation(() => now);
  });
  afterEach(() => jest.restoreAllMocks());

  const failing = async (): Promise<never> => {
    throw new Error("Redis: connect ECONNREFUSED");
  };

  it("answers the cache's value while it works, with nothing to report", async () => {
    const observer = recordingObserver();
    const breaker = new CacheBreaker(new MemorySnapshotStore(), recordingLogger(), 100, observer);
    await breaker.snapshots.save(0, [{ symbol: "AAPL", state: "{}" }]);
    expect(await breaker.read("load", c => c.load(0, ["AAPL", "MSFT"]))).toEqual(["{}", null]);
    expect(await breaker.write("save", c => c.save(0, []))).toBe(true);
    expect(observer.reports).toEqual([]);
  });

  it("answers null after a failure and leaves the cache alone while it rests, then tries again", async () => {
    const logger = recordingLogger();
    const observer = recordingObserver();
    const breaker = new CacheBreaker(new MemorySnapshotStore(), logger, 100, observer);
    expect(await breaker.read("load", failing)).toBeNull();
    expect(observer.reports).toEqual(["cache down"]);
    expect(logger.lines).toEqual([
      expect.stringMatching(/^warn snapshot cache \(memory\) unavailable: load failed: Redis: connect/),
    ]);

    // At least a second of rest, however short the retry backoff.
    let calls = 0;
    const counted = async () => (calls += 1);
    now += 999;
    expect(await breaker.read("load", counted)).toBeNull();
    expect(await breaker.write("save", async () => void (calls += 1))).toBe(false);
    expect(calls).toBe(0);

    // Failing again after the rest: the same outage, reported once.
    now += 1;
    expect(await breaker.read("load", failing)).toBeNull();
    expect(observer.reports).toEqual(["cache down"]);

    now += 1000;
    expect(await breaker.read("load", counted)).toBe(1);
    expect(observer.reports).toEqual(["cache down", "cache up"]);
    expect(logger.lines[1]).toMatch(/^info snapshot cache \(memory\) available again after 2\.0 s/);
  });

  it("rests as long as the retry backoff when that is longer than a second", async () => {
    const breaker = new CacheBreaker(new MemorySnapshotStore(), recordingLogger(), 5000, undefined);
    expect(await breaker.write("save", failing)).toBe(false);
    now += 4999;
    expect(await breaker.read("load", async () => "tried")).toBeNull();
    now += 1;
    expect(await breaker.read("load", async () => "tried")).toBe("tried");
  });
});
