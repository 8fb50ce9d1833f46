import { AppProcess, startOnFreePorts } from "../../support/processes";
import { deleteTopic, STACK, uniqueName } from "../../support/stack";
import { postJson, startIngestNode, tick, type ErrorBody, type IngestNode } from "./helpers";

/**
 * INGEST_AUTH, on real processes of the application (dist/bin/start.js) where start-up itself is
 * the subject, and on an in-process node for the requests: `required` refuses to start a gateway
 * without a token, `off` opens ingest and says so at start.
 */

const processes: AppProcess[] = [];
const topics: string[] = [];

afterAll(async () => {
  await Promise.all(processes.map(p => p.kill("SIGKILL")));
  for (const topic of topics) await deleteTopic(topic);
});

/** The environment of a production-like gateway node (real Kafka), before INGEST_* settings. */
const gatewayEnv = (extra: Record<string, string>): Record<string, string> => ({
  SERVICES: "gateway,ingest,query,notifier",
  KAFKA_BROKERS: STACK.kafkaBrokers,
  KAFKA_TOPIC: topics[topics.push(uniqueName("ingest_auth")) - 1],
  KAFKA_PARTITIONS: "2",
  DATA_DIR: "memory",
  HOST: "127.0.0.1",
  METRICS_PORT: "0",
  DEMO_FEED: "0",
  LOG_LEVEL: "info",
  ...extra,
});

describe("INGEST_AUTH=required", () => {
  it.each([
    ["unset", {}],
    ["empty", { INGEST_TOKEN: "" }],
  ])(
    "stops a gateway node whose INGEST_TOKEN is %s: exit 1, one line naming INGEST_TOKEN and INGEST_AUTH",
    async (_, token: Record<string, string>) => {
      const p = new AppProcess("auth-required", gatewayEnv({ INGEST_AUTH: "required", PORT: "0", ...token }));
      processes.push(p.start());
      expect(await p.waitForExit()).toBe(1);
      expect(p.output).toEqual([
        expect.stringMatching(
          /^invalid configuration: INGEST_TOKEN: must be set \(not empty\) when INGEST_AUTH=required and this node runs the gateway \(POST \/ingest\); set INGEST_TOKEN, or set INGEST_AUTH=off/,
        ),
      ]);
    },
  );

  describe("with a token", () => {
    const TOKEN = "required-token-0123456789";
    let ingest: IngestNode;

    beforeAll(async () => {
      ingest = await startIngestNode("ingest_required", { INGEST_AUTH: "required", INGEST_TOKEN: TOKEN });
    });

    afterAll(async () => {
      await ingest?.stop();
    });

    it("answers 401 without the token and 200 with it", async () => {
      const refused = await postJson(ingest.url, tick());
      expect([refused.status, (refused.json as ErrorBody).type]).toEqual([401, "UNAUTHORIZED"]);
      const reply = await postJson(ingest.url, tick(), { headers: { Authorization: `Bearer ${TOKEN}` } });
      expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    });
  });
});

describe("INGEST_AUTH=off", () => {
  it("ignores a token that is set, accepts every caller, and warns at start that /ingest is open", async () => {
    const { process: p, ports } = await startOnFreePorts(
      "auth-off",
      ["http"] as const,
      ({ http }) =>
        gatewayEnv({
          INGEST_AUTH: "off",
          INGEST_TOKEN: "ignored-token",
          PORT: String(http),
          SERVICES: "gateway,ingest",
        }),
      p => p.waitForLine(/ingest +POST .*\/ingest \(open: no token \(INGEST_AUTH=off\)\)/, 90000),
    );
    processes.push(p);
    expect(p.output.filter(l => /WARN/.test(l) && /INGEST_AUTH=off: POST \/ingest is open/.test(l))).toEqual([
      expect.stringContaining("(INGEST_TOKEN is set, and ignored)"),
    ]);
    const url = `http://127.0.0.1:${ports.http}/ingest`;
    // Ingest may still be connecting its producer: 503 NOT_READY until then.
    let reply = await postJson(url, tick());
    for (let i = 0; reply.status === 503 && i < 300; i++) {
      await new Promise(r => setTimeout(r, 200));
      reply = await postJson(url, tick());
    }
    expect([reply.status, reply.json]).toEqual([200, { accepted: 1 }]);
    const wrong = await postJson(url, tick(), { headers: { Authorization: "Bearer something-else" } });
    expect(wrong.status).toBe(200);
  }, 120000);
});
