import crypto from "node:crypto";
import fs from "node:fs";
import { CONFIG_VARIABLES, loadConfig } from "../../../lib/config";
import {
  CHECKS,
  composeProblems,
  configVariablesFromSource,
  dependsOf,
  durationMs,
  envOf,
  interpolate,
  mountsOf,
  parseCompose,
  parseImage,
  portsOf,
  replicasOf,
  type ComposeContext,
  type Project,
} from "./compose";
import { COMPOSE_SCHEMA_FILE, composeSchemaErrors } from "./compose-schema";
import { parseDockerfile } from "./dockerfile";
import { metricsEndpoint } from "./metric-series";
import { readText, readYamlDocuments, ROOT } from "./repo-files";

/**
 * Static checks of compose.yaml (Docker cannot run here): the Compose Specification's schema, and
 * cross-references between the services and with the code and files they run (lib/config.ts, the
 * Dockerfile, bin/start.ts, grafana/, compose/). Each cross-check is also shown to fail on a
 * realistic one-line mistake made to an in-memory copy.
 */

const COMPOSE_TEXT = readText("compose.yaml");
const dockerStages = parseDockerfile(readText("Dockerfile"));
const margin = /shutdownGraceMs \+ (\d+)/.exec(readText("bin/start.ts"));

const ctx: ComposeContext = {
  dir: ROOT,
  configVariables: configVariablesFromSource(readText("lib/config.ts")),
  loadConfig: env => loadConfig(env),
  appVersion: (JSON.parse(readText("package.json")) as { version: string }).version,
  appImageHealthcheck: dockerStages[dockerStages.length - 1].instructions.some(
    i => i.keyword === "HEALTHCHECK",
  ),
  shutdownMarginMs: Number(margin?.[1] ?? NaN),
  metricsPath: metricsEndpoint(loadConfig({})).path,
};

const project: Project = { model: parseCompose(COMPOSE_TEXT), ctx };
const services = project.model.services;

/** The file with one mistake: `from` must occur exactly once, so the edit is the one intended. */
function withMistake(from: string, to: string, text = COMPOSE_TEXT): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`"${from}" must occur exactly once`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/** A project whose compose file, or one file beside it, has one mistake. */
function mistaken(mistake: { from: string; to: string; file?: string }): Project {
  if (!mistake.file) return { model: parseCompose(withMistake(mistake.from, mistake.to)), ctx };
  const files = { [mistake.file]: withMistake(mistake.from, mistake.to, readText(mistake.file)) };
  return { model: project.model, ctx: { ...ctx, files } };
}

describe("compose.yaml", () => {
  it("is valid against the Compose Specification's JSON Schema", () => {
    expect(composeSchemaErrors(project.model)).toEqual([]);
  });

  it("is validated against the vendored schema its README names (SHA-256)", () => {
    const recorded = /SHA-256 `([a-f0-9]{64})`/.exec(readText("test/unit/deploy/schemas/README.md"))?.[1];
    const actual = crypto.createHash("sha256").update(fs.readFileSync(COMPOSE_SCHEMA_FILE)).digest("hex");
    expect(actual).toBe(recorded);
  });

  it.each(Object.keys(CHECKS))("passes %s", check => {
    expect(CHECKS[check as keyof typeof CHECKS](project)).toEqual([]);
  });

  it("runs the servers, the gateway and two actors nodes by default; kafka-ui and pgAdmin with --profile debug", () => {
    const always = Object.keys(services).filter(s => !services[s].profiles);
    const debug = Object.keys(services).filter(s => services[s].profiles?.includes("debug"));
    expect(always.sort()).toEqual(
      ["actors", "gateway", "grafana", "kafka", "nats", "postgres", "prometheus", "redis"].sort(),
    );
    expect(debug.sort()).toEqual(["kafka-ui", "pgadmin"]);
    expect(replicasOf(services.actors)).toBe(2);
    expect(envOf(services.actors).SERVICES).toBe("actors");
    expect(envOf(services.gateway).SERVICES).toBe("gateway,ingest,query,notifier");
  });

  it("builds gateway and actors from the Dockerfile, with unique node ids (NODE_ID unset: <hostname>-<pid>)", () => {
    for (const name of ["gateway", "actors"]) {
      expect(services[name].build).toBe(".");
      expect(envOf(services[name]).NODE_ID).toBeUndefined();
      expect(Object.values(dependsOf(services[name]))).toEqual(Array(4).fill("service_healthy"));
    }
  });

  it("runs the Kafka version of the local stack and k8s/dev (3.9.1), single-node KRaft", () => {
    const devKafka = readYamlDocuments(`${ROOT}/k8s/dev/kafka.yaml`)
      .map(
        d => d.value as { kind: string; spec: { template: { spec: { containers: { image: string }[] } } } },
      )
      .find(o => o.kind === "StatefulSet")!;
    expect(services.kafka.image).toBe(devKafka.spec.template.spec.containers[0].image);
    expect(services.kafka.image).toMatch(/^apache\/kafka:3\.9\.1@sha256:[a-f0-9]{64}$/);
    expect(envOf(services.kafka).KAFKA_PROCESS_ROLES).toBe("broker,controller");
  });

  it("publishes only to 127.0.0.1: default passwords and an unauthenticated ingest stay off the network", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const port of portsOf(s))
        expect({ name, hostIp: port.hostIp }).toEqual({ name, hostIp: "127.0.0.1" });
    }
  });

  it("mounts Grafana's provisioning and dashboards from grafana/ and Prometheus' configuration from compose/", () => {
    expect(mountsOf(services.grafana).map(m => m.source)).toContain("./grafana");
    expect(mountsOf(services.prometheus).map(m => m.source)).toContain("./compose/prometheus.yml");
  });

  it("reports no problem at all", () => {
    expect(composeProblems(project)).toEqual([]);
  });
});

describe("compose.yaml checks catch a one-line mistake", () => {
  const cases: [
    keyof typeof CHECKS | "schema",
    string,
    { from: string; to: string; file?: string },
    RegExp,
  ][] = [
    [
      "schema",
      "a misspelt key",
      { from: "- redis-data:/data\n    healthcheck:", to: "- redis-data:/data\n    healtcheck:" },
      /unknown property "healtcheck"/,
    ],
    [
      "schema",
      "a misspelt depends_on condition",
      {
        from: "      kafka:\n        condition: service_healthy",
        to: "      kafka:\n        condition: service_heathy",
      },
      /depends_on\/kafka\/condition: must be equal to one of the allowed values/,
    ],
    [
      "checkEnvironmentNames",
      "a variable lib/config.ts does not read",
      { from: 'SHUTDOWN_GRACE_MS: "10000"', to: 'SHUTDOWN_GRACE: "10000"' },
      /gateway: SHUTDOWN_GRACE is not a variable lib\/config.ts reads/,
    ],
    [
      "checkAppConfig",
      "an adapter left unset (commented out)",
      { from: "  REDIS_URL: redis://redis:6379", to: "  # REDIS_URL: redis://redis:6379" },
      /actors: REDIS_URL is unset, so the node silently runs its embedded stand-in/,
    ],
    [
      "checkAppConfig",
      "a value lib/config.ts rejects",
      { from: 'PORT: "5000"', to: 'PORT: "5000a"' },
      /gateway: invalid configuration: PORT/,
    ],
    [
      "checkAppConfig",
      "a NODE_ID shared by replicas",
      { from: "SERVICES: actors", to: "SERVICES: actors\n      NODE_ID: actors-1" },
      /actors: NODE_ID "actors-1" is shared by its 2 replicas/,
    ],
    [
      "checkAppConfig",
      "a role nobody runs",
      { from: "SERVICES: gateway,ingest,query,notifier", to: "SERVICES: gateway,ingest,query" },
      /no app service runs notifier/,
    ],
    [
      "checkReferences",
      "a misspelt Kafka host",
      { from: "KAFKA_BROKERS: kafka:9092", to: "KAFKA_BROKERS: kafak:9092" },
      /gateway: KAFKA_BROKERS names host "kafak", which is no service of this file/,
    ],
    [
      "checkReferences",
      "the wrong NATS port",
      { from: "nats://nats:4222", to: "nats://nats:4223" },
      /actors: NATS_URL uses port 4223 of nats, which listens for nats on 4222/,
    ],
    [
      "checkReferences",
      "the wrong Redis port",
      { from: "redis://redis:6379", to: "redis://redis:6380" },
      /REDIS_URL uses port 6380 of redis, which listens for redis on 6379/,
    ],
    [
      "checkReferences",
      "a misspelt Postgres host",
      { from: "@postgres:5432/stocks", to: "@postgress:5432/stocks" },
      /DATABASE_URL names host "postgress"/,
    ],
    [
      "checkReferences",
      "kafka-ui pointed at the controller listener",
      {
        from: "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS: kafka:9092",
        to: "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS: kafka:9093",
      },
      /kafka-ui: KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS uses port 9093 of kafka, which listens for kafka on 9092, 9094/,
    ],
    [
      "checkReferences",
      "Grafana's Postgres at localhost",
      { from: "STOCKS_PG_ADDR: postgres:5432", to: "STOCKS_PG_ADDR: localhost:5432" },
      /grafana: datasource "stocks" .* names host "localhost"/,
    ],
    [
      "checkReferences",
      "Grafana's Prometheus on the wrong port",
      { from: "PROMETHEUS_URL: http://prometheus:9090", to: "PROMETHEUS_URL: http://prometheus:9091" },
      /grafana: datasource "Prometheus" .* uses port 9091 of prometheus, which listens for http on 9090/,
    ],
    [
      "checkKafka",
      "the in-network listener advertised as localhost",
      { from: "PLAINTEXT://kafka:9092,HOST", to: "PLAINTEXT://localhost:9092,HOST" },
      /gateway: KAFKA_BROKERS reaches kafka:9092, whose listener advertises localhost:9092/,
    ],
    [
      "checkKafka",
      "the consumer offsets topic with 3 replicas on 1 broker",
      {
        from: 'KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "1"',
        to: 'KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "3"',
      },
      /KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR is 3, more than the 1 broker/,
    ],
    [
      "checkKafka",
      "topic auto-creation on",
      { from: 'KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"', to: 'KAFKA_AUTO_CREATE_TOPICS_ENABLE: "true"' },
      /KAFKA_AUTO_CREATE_TOPICS_ENABLE must be "false"/,
    ],
    [
      "checkPublishedPorts",
      "the gateway published on another container port",
      { from: "127.0.0.1:5000:5000", to: "127.0.0.1:5000:8080" },
      /gateway: the gateway's PORT 5000 is not published/,
    ],
    [
      "checkPublishedPorts",
      "the gateway published on another host port",
      { from: "127.0.0.1:5000:5000", to: "127.0.0.1:8000:5000" },
      /gateway: PORT 5000 is published as 8000/,
    ],
    [
      "checkPublishedPorts",
      "two services on one host port",
      { from: "127.0.0.1:8080:8080", to: "127.0.0.1:3000:8080" },
      /kafka-ui: host port 127.0.0.1:3000 is also published by grafana/,
    ],
    [
      "checkPrometheus",
      "a scrape port other than METRICS_PORT",
      { file: "compose/prometheus.yml", from: "port: 3030", to: "port: 3031" },
      /prometheus: .* uses port 3031 of gateway, which listens for metrics on 3030/,
    ],
    [
      "checkPrometheus",
      "a node left out of the scrape",
      { file: "compose/prometheus.yml", from: "names: [gateway, actors]", to: "names: [gateway]" },
      /prometheus: compose\/prometheus.yml does not scrape actors/,
    ],
    [
      "checkPrometheus",
      "a metrics path the nodes do not serve",
      { file: "compose/prometheus.yml", from: "metrics_path: /metrics", to: "metrics_path: /prometheus" },
      /scrapes \/prometheus, the nodes serve \/metrics/,
    ],
    [
      "checkDatabaseCredentials",
      "a Postgres password that differs from DATABASE_URL's",
      { from: "POSTGRES_PASSWORD: dev-only-password", to: "POSTGRES_PASSWORD: dev-only-pasword" },
      /gateway: DATABASE_URL logs in as stocks with a password other than postgres's POSTGRES_PASSWORD/,
    ],
    [
      "checkDatabaseCredentials",
      "another database name",
      { from: "POSTGRES_DB: stocks", to: "POSTGRES_DB: stock" },
      /actors: DATABASE_URL uses database "stocks", but postgres creates "stock"/,
    ],
    [
      "checkGrafana",
      "the reader role's password changed in its init script",
      {
        file: "compose/postgres/10-grafana-reader.sql",
        from: "PASSWORD 'grafana-reader-dev-password'",
        to: "PASSWORD 'grafana-reader-password'",
      },
      /grafana: datasource "stocks" .* logs in as grafana_reader with a password other than/,
    ],
    [
      "checkGrafana",
      "a provisioning variable left unset",
      { from: "      STOCKS_PG_SSLMODE: disable\n", to: "\n" },
      /grafana: grafana\/provisioning\/datasources\/stock.yaml uses \$\{STOCKS_PG_SSLMODE\}/,
    ],
    [
      "checkGrafana",
      "provisioning mounted from the wrong folder",
      { from: "./grafana:/etc/stock-grafana:ro", to: "./grafana/provisioning:/etc/stock-grafana:ro" },
      /grafana: GF_PATHS_PROVISIONING is mounted from no folder of the repository/,
    ],
    [
      "checkPgAdmin",
      "a pgpass password that is not Postgres'",
      { file: "compose/pgadmin/pgpass", from: ":dev-only-password", to: ":dev-password" },
      /pgadmin: .*servers.json server "stocks \(compose\)" logs in as stocks with a password other than/,
    ],
    [
      "checkPgAdmin",
      "a server registered at localhost",
      { file: "compose/pgadmin/servers.json", from: '"Host": "postgres"', to: '"Host": "localhost"' },
      /pgadmin: .*servers.json server "stocks \(compose\)" names host "localhost"/,
    ],
    [
      "checkVolumes",
      "the Postgres volume mounted beside its data",
      { from: "- postgres-data:/var/lib/postgresql/data", to: "- postgres-data:/var/lib/postgres/data" },
      /postgres: its data \(\/var\/lib\/postgresql\/data\) is on no named volume/,
    ],
    [
      "checkVolumes",
      "a volume not declared",
      { from: "\n  redis-data:\n", to: "\n" },
      /redis: volume redis-data is not declared/,
    ],
    [
      "checkBindMounts",
      "a mounted file that does not exist",
      { from: "./compose/prometheus.yml:", to: "./compose/prometheus.yaml:" },
      /prometheus: mounts .\/compose\/prometheus.yaml, which does not exist/,
    ],
    [
      "checkBindMounts",
      "a build context without a Dockerfile",
      { from: "build: .", to: "build: ./app" },
      /gateway: builds app\/Dockerfile, which does not exist/,
    ],
    [
      "checkImages",
      "the tag latest",
      { from: "redis:7.4.11-bookworm", to: "redis:latest" },
      /redis: redis:latest(@\S+)? is not pinned/,
    ],
    [
      "checkImages",
      "no tag",
      { from: "kafbat/kafka-ui:v1.5.0", to: "kafbat/kafka-ui" },
      /kafka-ui: kafbat\/kafka-ui has no tag/,
    ],
    [
      "checkImages",
      "a floating major",
      { from: "postgres:17.11-bookworm", to: "postgres:16" },
      /postgres: postgres:16(@\S+)? is a floating tag/,
    ],
    [
      "checkImages",
      "a floating minor",
      { from: "nats:2.14.5-alpine", to: "nats:2.14-alpine" },
      /nats: nats:2.14-alpine(@\S+)? is a floating tag/,
    ],
    [
      "checkImages",
      "an app image tag that is not package.json's version",
      { from: "image: stock-actors:0.1.0", to: "image: stock-actors:latest" },
      /builds stock-actors:latest, but package.json's version is/,
    ],
    [
      "checkProfiles",
      "pgAdmin outside the debug profile",
      { from: "dpage/pgadmin4:9.17\n    profiles: [debug]\n", to: "dpage/pgadmin4:9.17\n" },
      /pgadmin: a debugging tool, but it runs outside the debug profile/,
    ],
    [
      "checkProfiles",
      "a default service waiting for a debug one",
      {
        from: "      prometheus:\n        condition: service_healthy",
        to: "      pgadmin:\n        condition: service_healthy",
      },
      /grafana: always runs, but depends on pgadmin, which runs only in a profile/,
    ],
    [
      "checkHealth",
      "a dependency whose healthcheck is gone",
      { from: 'test: ["CMD", "redis-cli", "ping"]', to: 'test: ["NONE"]' },
      /gateway: waits for redis to be healthy, but redis has no healthcheck/,
    ],
    [
      "checkHealth",
      "a dependency only waited for to start",
      {
        from: "    redis:\n      condition: service_healthy",
        to: "    redis:\n      condition: service_started",
      },
      /actors: uses redis \(REDIS_URL\) without waiting for it/,
    ],
    [
      "checkRestart",
      "no restart policy",
      {
        from: "prom/prometheus:v3.5.0\n    restart: unless-stopped",
        to: 'prom/prometheus:v3.5.0\n    restart: "no"',
      },
      /prometheus: restart is "no"/,
    ],
    [
      "checkRedis",
      "an eviction policy that drops snapshots",
      { from: "- noeviction", to: "- allkeys-lru" },
      /redis: --maxmemory-policy must be noeviction/,
    ],
    ["checkRedis", "AOF off", { from: '- "yes"', to: '- "no"' }, /redis: AOF is off/],
    [
      "checkStopGrace",
      "Docker's default stop timeout",
      { from: "stop_grace_period: 30s", to: "stop_grace_period: 10s" },
      /actors: stop_grace_period 10s is not above 12000 ms/,
    ],
    [
      "checkReplicas",
      "more actors nodes than partitions",
      { from: "replicas: 2", to: "replicas: 13" },
      /13 actors nodes for 12 partitions/,
    ],
  ];

  it.each(cases)("%s: %s", (check, _what, mistake, expected) => {
    const broken = mistaken(mistake);
    const problems = check === "schema" ? composeSchemaErrors(broken.model) : CHECKS[check](broken);
    expect(problems).toContainEqual(expect.stringMatching(expected));
  });

  it("accepts an image pinned by digest alone", () => {
    const digest = `sha256:${"0".repeat(64)}`;
    const pinned = mistaken({ from: "redis:7.4.11-bookworm", to: `redis@${digest}` });
    expect(CHECKS.checkImages(pinned)).toEqual([]);
    const malformed = mistaken({ from: "redis:7.4.11-bookworm", to: "redis@sha256:abc" });
    expect(CHECKS.checkImages(malformed)).toContainEqual(expect.stringMatching(/malformed digest/));
  });
});

describe("compose reader", () => {
  it("reads the variable names from lib/config.ts's source: the list the module exports", () => {
    expect(ctx.configVariables).toEqual(CONFIG_VARIABLES);
    expect(
      configVariablesFromSource(
        'const DECLARED = { a: variable("A_B", int(0, 9).default(1)), /* the socket\'s */ g: {\n' +
          '  // variable("X", y): not "this" one\n  c: variable("C", z.enum(["D"]).describe("a } \\" }")) },\n}; variable("E", x)',
      ),
    ).toEqual(["A_B", "C"]);
  });

  it("interpolates as Compose does: defaults, alternatives, nesting, $$ and errors for required ones", () => {
    const env = { SET: "x", EMPTY: "" };
    expect(interpolate("${UNSET:-a}/${EMPTY:-b}/${EMPTY-c}/${SET:-d}/$SET/$$SET", env)).toBe("a/b//x/x/$SET");
    expect(interpolate("${UNSET:-${SET}y}/${SET:+alt}/${EMPTY+alt}/${UNSET}", env)).toBe("xy/alt/alt/");
    expect(() => interpolate("${UNSET:?needed}", env)).toThrow(/required variable UNSET: needed/);
  });

  it("parses image references: registry, library/, tag and digest", () => {
    expect(parseImage("postgres:17.11-bookworm")).toEqual({ repository: "postgres", tag: "17.11-bookworm" });
    expect(parseImage("docker.io/library/redis")).toEqual({ repository: "redis" });
    expect(parseImage("localhost:5000/team/app:1.2.3@sha256:ab")).toEqual({
      repository: "team/app",
      tag: "1.2.3",
      digest: "sha256:ab",
    });
  });

  it("reads durations, short-syntax ports and volumes", () => {
    expect(durationMs("1m30s")).toBe(90000);
    expect(durationMs("500ms")).toBe(500);
    expect(() => durationMs("30")).toThrow();
    expect(portsOf({ ports: ["127.0.0.1:5000:5000/tcp", "8080:80", 9000] })).toEqual([
      { hostIp: "127.0.0.1", published: 5000, target: 5000 },
      { hostIp: undefined, published: 8080, target: 80 },
      { target: 9000 },
    ]);
    expect(mountsOf({ volumes: ["data:/data", "./x.yml:/etc/x.yml:ro", "/anon"] })).toEqual([
      { type: "volume", source: "data", target: "/data", readOnly: false },
      { type: "bind", source: "./x.yml", target: "/etc/x.yml", readOnly: true },
      { type: "volume", target: "/anon", readOnly: false },
    ]);
  });
});
