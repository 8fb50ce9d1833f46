import { Resources } from "../../../adapters/resources";
import { loadConfig } from "../../../lib/config";
import { describeOutage, isReady } from "../../../lib/waiting";

const quiet = () => undefined;
const logger = { info: quiet, warn: quiet, error: quiet, debug: quiet };

/**
 * Readiness by role (`Resources.check`): what the node's HTTP traffic cannot do without fails a
 * check; Postgres, the query service's wait for it and the snapshot cache only degrade the node.
 * The log is the embedded one (in memory); Postgres is a closed loopback port (refused at once).
 */
describe("Resources.check", () => {
  let resources: Resources;

  beforeEach(() => {
    resources = new Resources(
      loadConfig({ DATA_DIR: "memory", DATABASE_URL: "postgres://nobody@127.0.0.1:1/stocks" }),
      logger,
    );
    resources.retain();
  });

  afterEach(async () => {
    await resources.release();
  });

  it("keeps a gateway node with ingest and query ready while Postgres is away, saying so", async () => {
    const checks = await resources.check(["gateway", "ingest", "query", "notifier"]);
    expect(checks.log).toBe("ok");
    expect(checks.database).toMatch(/^degraded: Postgres: .*ECONNREFUSED/);
    expect(isReady(checks)).toBe(true);
  });

  it("degrades on the query service's wait for Postgres once a first attempt failed, not before", async () => {
    const waiting = describeOutage({
      what: "migrate the database (Postgres)",
      error: "refused",
      since: 0,
      attempts: 2,
    });
    resources.reportStartup("query", "starting");
    expect(isReady(await resources.check(["gateway", "query"]))).toBe(false);
    resources.reportStartup("query", waiting);
    const checks = await resources.check(["gateway", "query"]);
    expect(checks["start.query"]).toBe(`degraded: ${waiting}`);
    expect(isReady(checks)).toBe(true);
  });

  it("fails on ingest and actors still starting or waiting: the ingest path and the group need them", async () => {
    const waiting = describeOutage({
      what: "reach the log (Kafka)",
      error: "refused",
      since: 0,
      attempts: 1,
    });
    for (const service of ["ingest", "actors"]) {
      resources.reportStartup(service, waiting);
      const checks = await resources.check(["gateway", service]);
      expect(checks[`start.${service}`]).toBe(waiting);
      expect(isReady(checks)).toBe(false);
      resources.reportStartup(service, null);
    }
  });
});
