import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ALL_SERVICES, CONFIG_VARIABLES, loadConfig } from "../../../lib/config";
import { ConfigError } from "../../../domain/errors";

describe("loadConfig", () => {
  it("runs every service on embedded defaults when nothing is set", () => {
    const c = loadConfig({});
    expect(c.port).toBe(5000);
    expect(c.services).toEqual([...ALL_SERVICES]);
    expect(c.kafka).toMatchObject({
      brokers: undefined,
      topic: "stock",
      partitions: 12,
      groupId: "stock-actors",
    });
    expect(c.natsUrl).toBeUndefined();
    expect(c.databaseUrl).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.indicators).toEqual({
      smaPeriod: 20,
      emaPeriod: 20,
      rsiPeriod: 14,
      rsiOversold: 30,
      rsiOverbought: 70,
    });
    expect(c.demoFeed.enabled).toBe(true);
    expect(c.metricsPort).toBe(3030);
  });

  it("turns the demo feed off by default once a real Kafka is configured, and on demand with DEMO_FEED=0", () => {
    expect(loadConfig({ KAFKA_BROKERS: "127.0.0.1:9092" }).demoFeed.enabled).toBe(false);
    expect(loadConfig({ DEMO_FEED: "0" }).demoFeed.enabled).toBe(false);
    expect(loadConfig({ KAFKA_BROKERS: "k:9092", DEMO_FEED: "1" }).demoFeed.enabled).toBe(true);
  });

  it("reads the distributed settings", () => {
    const c = loadConfig({
      PORT: "8080",
      NODE_ID: "actors-1",
      SERVICES: "actors, query",
      KAFKA_BROKERS: "k1:9092,k2:9092",
      KAFKA_PARTITIONS: "24",
      NATS_URL: "nats://nats:4222",
      DATABASE_URL: "postgres://u@db:5432/stocks",
      REDIS_URL: "redis://redis:6379",
      RSI_PERIOD: "5",
      INGEST_BODY_LIMIT: "512kb",
    });
    expect(c).toMatchObject({
      port: 8080,
      nodeID: "actors-1",
      services: ["actors", "query"],
      natsUrl: "nats://nats:4222",
      databaseUrl: "postgres://u@db:5432/stocks",
      redisUrl: "redis://redis:6379",
    });
    expect(c.kafka.brokers).toEqual(["k1:9092", "k2:9092"]);
    expect(c.kafka.partitions).toBe(24);
    expect(c.indicators.rsiPeriod).toBe(5);
    expect(c.ingest.bodyLimitBytes).toBe(512 * 1024);
  });

  it.each([
    ["KAFKA_PARTITIONS", "abc", /KAFKA_PARTITIONS \(got "abc"\): must be a whole number/],
    ["KAFKA_PARTITIONS", "0", /KAFKA_PARTITIONS .*>=1|KAFKA_PARTITIONS .*too small/i],
    ["PORT", "70000", /PORT/],
    [
      "SERVICES",
      "gateway,billing",
      /SERVICES .*must be a comma list of gateway, ingest, actors, query, notifier/,
    ],
    ["KAFKA_BROKERS", "localhost", /KAFKA_BROKERS .*host:port/],
    ["DATABASE_URL", "mysql://x/y", /DATABASE_URL .*postgres or postgresql/],
    ["REDIS_URL", "not a url", /REDIS_URL .*redis or rediss/],
    ["NATS_URL", "http://nats:4222", /NATS_URL .*nats or tls/],
    ["DEMO_FEED", "maybe", /DEMO_FEED .*1\/0, true\/false/],
    ["RSI_OVERSOLD", "80", /RSI_OVERSOLD \(got "80"\): must be below RSI_OVERBOUGHT/],
    ["LOG_LEVEL", "loud", /LOG_LEVEL/],
    ["INGEST_BODY_LIMIT", "huge", /INGEST_BODY_LIMIT .*size such as 512kb or 5mb/],
    ["INGEST_AUTH", "optional", /INGEST_AUTH \(got "optional"\): must be auto, required, off/],
  ])("rejects %s=%s with a message naming the variable", (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  describe("INGEST_AUTH", () => {
    const GATEWAY = { SERVICES: "gateway,ingest,query,notifier" };

    it("defaults to auto: a token is required exactly when INGEST_TOKEN is set", () => {
      expect(loadConfig({}).ingest).toMatchObject({ auth: "auto", token: undefined, tokenIgnored: false });
      expect(loadConfig({ INGEST_TOKEN: "s3cret" }).ingest).toMatchObject({ auth: "auto", token: "s3cret" });
      expect(loadConfig({ INGEST_AUTH: " AUTO " }).ingest.auth).toBe("auto");
    });

    it("required: a gateway node gets its token", () => {
      const c = loadConfig({ ...GATEWAY, INGEST_AUTH: "required", INGEST_TOKEN: "s3cret" });
      expect(c.ingest).toMatchObject({ auth: "required", token: "s3cret", tokenIgnored: false });
    });

    it.each([
      ["unset", {}],
      ["empty", { INGEST_TOKEN: "" }],
      ["blank", { INGEST_TOKEN: "   " }],
    ])(
      "required: a gateway node with the token %s refuses to start, naming INGEST_TOKEN and INGEST_AUTH",
      (_, token) => {
        for (const services of [GATEWAY, {}]) {
          const load = () => loadConfig({ ...services, INGEST_AUTH: "required", ...token });
          expect(load).toThrow(ConfigError);
          expect(load).toThrow(
            /^invalid configuration: INGEST_TOKEN.*: must be set \(not empty\) when INGEST_AUTH=required and this node runs the gateway .*INGEST_AUTH=off/,
          );
        }
      },
    );

    it("required: a node without the gateway (actors, ingest alone) needs no token", () => {
      for (const SERVICES of ["actors", "ingest,query", "notifier"])
        expect(loadConfig({ SERVICES, INGEST_AUTH: "required" }).ingest).toMatchObject({
          auth: "required",
          token: undefined,
        });
    });

    it("off: no token is required, and a token that is set is ignored (and said to be)", () => {
      expect(loadConfig({ ...GATEWAY, INGEST_AUTH: "off" }).ingest).toMatchObject({
        auth: "off",
        token: undefined,
        tokenIgnored: false,
      });
      expect(loadConfig({ ...GATEWAY, INGEST_AUTH: "Off", INGEST_TOKEN: "s3cret" }).ingest).toMatchObject({
        auth: "off",
        token: undefined,
        tokenIgnored: true,
      });
    });
  });

  it("is documented by the README's configuration table: every variable it reads, and no other", () => {
    const readme = fs.readFileSync(path.resolve(__dirname, "../../../README.md"), "utf8");
    const section = readme.slice(readme.indexOf("\n## Configuration\n"), readme.indexOf("\n## Dashboard\n"));
    const documented = [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)` /gm)].map(m => m[1]);
    expect([...documented].sort()).toEqual([...CONFIG_VARIABLES].sort());
    expect(CONFIG_VARIABLES).toContain("IDEMPOTENCY_TTL_HOURS");
  });

  it("treats empty variables as unset", () => {
    expect(loadConfig({ KAFKA_BROKERS: "", PORT: "" }).kafka.brokers).toBeUndefined();
  });

  /** Runs bin/start.ts with `env` (a bad configuration stops it before anything starts). */
  function start(env: Record<string, string>): { status: number | null; stderr: string } {
    const root = path.resolve(__dirname, "../../..");
    try {
      execFileSync(process.execPath, ["--import", "tsx", path.join(root, "bin/start.ts")], {
        cwd: root,
        env: { PATH: process.env.PATH, ...env },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 30000,
      });
      return { status: 0, stderr: "" };
    } catch (err) {
      const e = err as { status: number | null; stderr: Buffer };
      return { status: e.status, stderr: e.stderr.toString() };
    }
  }

  it("stops start-up with a one-line message naming the variable", () => {
    const { status, stderr } = start({ KAFKA_PARTITIONS: "abc" });
    expect(status).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/KAFKA_PARTITIONS \(got "abc"\): must be a whole number/);
  });

  it("stops a gateway node with INGEST_AUTH=required and an empty INGEST_TOKEN, in one line", () => {
    const { status, stderr } = start({
      SERVICES: "gateway,ingest",
      INGEST_AUTH: "required",
      INGEST_TOKEN: "",
      DATA_DIR: "memory",
    });
    expect(status).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^invalid configuration: INGEST_TOKEN: must be set .*INGEST_AUTH=required/);
  });
});
