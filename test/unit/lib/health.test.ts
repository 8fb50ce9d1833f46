import { UnavailableError } from "../../../domain/errors";
import { recordingLogger } from "../../support/logger";
import { DependencyHealth } from "../../../lib/health";

const refused = () => new UnavailableError("Postgres: connect ECONNREFUSED 127.0.0.1:5432");

/** A health whose probe answers as `answers` says at the time of each probe. */
function setup(options: { upIntervalMs?: number; downIntervalMs?: number; timeoutMs?: number } = {}) {
  const logger = recordingLogger();
  const state = { up: true, hang: false, probes: 0 };
  const health = new DependencyHealth({
    subject: "query",
    what: "reach Postgres",
    note: "; reads answer 503",
    logger,
    probe: () => {
      state.probes += 1;
      if (state.hang) return new Promise(() => undefined);
      return state.up ? Promise.resolve() : Promise.reject(refused());
    },
    upIntervalMs: options.upIntervalMs ?? 50,
    downIntervalMs: options.downIntervalMs ?? 10,
    timeoutMs: options.timeoutMs ?? 50,
  });
  return { health, logger, state };
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("DependencyHealth", () => {
  it("is up until a probe fails, and follows the dependency both ways by itself", async () => {
    const { health, logger, state } = setup();
    health.start();
    try {
      await health.check();
      expect(health.down).toBeNull();
      state.up = false;
      await until("the outage to be seen", () => health.down !== null);
      expect(health.down).toMatchObject({
        what: "reach Postgres",
        error: expect.stringMatching(/ECONNREFUSED/),
      });
      await until("a few probes while down", () => (health.down?.attempts ?? 0) >= 3);
      state.up = true;
      await until("the dependency to be seen back", () => health.down === null);
      expect(logger.lines).toEqual([
        expect.stringMatching(
          /^warn query degraded: reach Postgres failed: Postgres: connect ECONNREFUSED .*; reads answer 503$/,
        ),
        expect.stringMatching(
          /^info query recovered after .* and \d+ failed attempt\(s\) \(reach Postgres\)$/,
        ),
      ]);
    } finally {
      health.stop();
    }
  });

  it("is marked down at once by a caller's failed request, and probed back soon", async () => {
    const { health, state } = setup({ upIntervalMs: 60000, downIntervalMs: 10 });
    health.start();
    try {
      await health.check();
      const probes = state.probes;
      health.failed(refused());
      expect(health.down).toMatchObject({ attempts: 1 });
      // The dependency answers again: the next probe, due in 10 ms (not 60 s), sees it.
      await until("the probe after the failure", () => health.down === null);
      expect(state.probes).toBeGreaterThan(probes);
    } finally {
      health.stop();
    }
  });

  it("counts a probe that never answers as failed, after its timeout", async () => {
    const { health, state } = setup({ timeoutMs: 30 });
    state.hang = true;
    const started = Date.now();
    await health.check();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(health.down?.error).toMatch(/no answer within 30 ms/);
  });

  it("probes once at a time and not at all once stopped", async () => {
    const { health, state } = setup({ upIntervalMs: 10 });
    await Promise.all([health.check(), health.check(), health.check()]);
    expect(state.probes).toBe(1);
    health.start();
    await until("background probes", () => state.probes >= 3);
    health.stop();
    const probes = state.probes;
    await sleep(60);
    expect(state.probes).toBeLessThanOrEqual(probes + 1);
  });
});
