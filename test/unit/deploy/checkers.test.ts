import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { baseImageProblems, dockerIgnoreMatcher, parseDockerfile, parseImageReference } from "./dockerfile";
import { schemaErrors, unknownFields } from "./kube-schema";
import { labelValuesQuery, promReferences } from "./promql";
import { checkSql, readSchema, type Schema } from "./sql-schema";

/** The readers behind the deploy checks catch what they claim to catch. */

function schemaFrom(sql: string): Schema {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "deploy-schema-"));
  try {
    fs.writeFileSync(path.join(dir, "001_a.sql"), sql);
    fs.writeFileSync(
      path.join(dir, "002_b.sql"),
      "ALTER TABLE quotes ADD COLUMN venue text, DROP COLUMN note;",
    );
    fs.writeFileSync(path.join(dir, "010_c.sql"), "ALTER TABLE quotes RENAME COLUMN px TO price;");
    return readSchema(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("readSchema", () => {
  const schema = schemaFrom(`
    -- a comment with a quote: the seed's table
    CREATE TABLE quotes (
      symbol text NOT NULL, "timestamp" timestamptz NOT NULL, px double precision CHECK (px > 0),
      note text DEFAULT 'a; b -- not a comment', PRIMARY KEY (symbol, "timestamp")
    );
    CREATE VIEW last_quotes (sym, at) AS SELECT symbol, max("timestamp") FROM quotes GROUP BY symbol;
    CREATE OR REPLACE VIEW quote_kinds AS SELECT q.symbol, k.kind AS kind_name, q."timestamp"
      FROM quotes q CROSS JOIN LATERAL (VALUES ('bid'), ('ask')) AS k(kind);
  `);

  it("applies the migrations in version order: columns of tables, added, dropped and renamed", () => {
    expect([...schema.get("quotes")!.columns].sort()).toEqual(["price", "symbol", "timestamp", "venue"]);
  });

  it("names a view's columns by its column list, else by the aliases and columns of its SELECT", () => {
    expect([...schema.get("last_quotes")!.columns]).toEqual(["sym", "at"]);
    expect([...schema.get("quote_kinds")!.columns]).toEqual(["symbol", "kind_name", "timestamp"]);
    expect([...schema.get("quote_kinds")!.literals]).toEqual(["bid", "ask"]);
  });
});

describe("checkSql", () => {
  const schema = schemaFrom(
    'CREATE TABLE quotes (symbol text, "timestamp" timestamptz, px double precision, note text);',
  );

  it("accepts Grafana macros, variables, functions, casts, aliases and literals", () => {
    const sql = `SELECT $__timeGroupAlias("timestamp", $__interval), avg(q.price::numeric) AS "avg price",
      upper(q.symbol) || ' x' AS label FROM quotes AS q
      WHERE q.symbol = \${symbol:sqlstring} AND $__timeFilter("timestamp") AND venue = 'x' GROUP BY 1 ORDER BY "avg price"`;
    expect(checkSql(sql, schema)).toMatchObject({ relations: ["quotes"], problems: [] });
  });

  it("reports an unknown relation and an unknown column", () => {
    expect(checkSql("SELECT symbol FROM quote", schema).problems).toEqual([
      'unknown table or view "quote"',
      'unknown column "symbol" (in quote)',
    ]);
    expect(checkSql('SELECT symbol, "Timestamp", close FROM quotes', schema).problems).toEqual([
      'unknown column "Timestamp" (in quotes)',
      'unknown column "close" (in quotes)',
    ]);
  });

  it("collects the literals compared with a column", () => {
    expect(checkSql("SELECT price FROM quotes WHERE venue = 'XNAS'", schema).comparisons).toContainEqual([
      "venue",
      "XNAS",
    ]);
  });
});

describe("promReferences", () => {
  it("finds metric and label names, not functions, keywords, ranges or variables", () => {
    const refs = promReferences(
      'histogram_quantile(0.99, sum by (le, action) (rate(a_bucket{nodeID=~"$node", x!="y"}[$__rate_interval]))) / on (nodeID) group_left b offset 5m',
    );
    expect(refs.metrics.sort()).toEqual(["a_bucket", "b"]);
    expect(refs.labels.sort()).toEqual(["action", "le", "nodeID", "x"]);
  });

  it("reads Grafana's label_values() variable queries", () => {
    expect(labelValuesQuery("label_values(process_uptime, nodeID)")).toEqual({
      metric: "process_uptime",
      label: "nodeID",
    });
    expect(labelValuesQuery("label_values(nodeID)")).toEqual({ metric: undefined, label: "nodeID" });
    expect(labelValuesQuery("sum(x)")).toBeNull();
  });
});

describe("kube-schema", () => {
  const deployment = (container: Record<string, unknown>) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x", lables: {} },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i", ...container }] },
      },
    },
  });

  it("rejects values of the wrong type and kinds it does not know", () => {
    expect(schemaErrors(deployment({ ports: [{ containerPort: "5000" }] }))[0]).toMatch(
      /containerPort must be integer/,
    );
    expect(
      schemaErrors({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c" }, data: { PORT: 5000 } })[0],
    ).toMatch(/must be string/);
    expect(schemaErrors({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" } })[0]).toMatch(/not a kind/);
  });

  it("reports fields the schema does not declare, at any depth", () => {
    const problems = unknownFields(
      deployment({ readinesProbe: {}, livenessProbe: { httpGet: { port: 1, pth: "/" } } }),
    );
    expect(problems).toEqual([
      "Deployment.metadata.lables",
      "Deployment.spec.template.spec.containers[0].readinesProbe",
      "Deployment.spec.template.spec.containers[0].livenessProbe.httpGet.pth",
    ]);
  });
});

describe("parseDockerfile and dockerIgnoreMatcher", () => {
  it("reads stages, continuation lines, flags and exec forms", () => {
    const stages = parseDockerfile(
      'ARG V=1\nFROM node:20 AS build\n# comment\nRUN --mount=type=cache,target=/x npm ci \\\n  && npm run build\nFROM node:20\nCOPY --from=build /app/dist ./dist\nHEALTHCHECK --interval=5s CMD ["node", "-e", "1"]\nCMD ["node", "a.js"]\n',
    );
    expect(stages.map(s => [s.image, s.name])).toEqual([
      ["node:20", "build"],
      ["node:20", undefined],
    ]);
    expect(stages[0].instructions[0]).toMatchObject({
      keyword: "RUN",
      flags: { mount: "type=cache,target=/x" },
    });
    expect(stages[0].instructions[0].args).toMatch(/^npm ci\s+&& npm run build$/);
    expect(stages[1].instructions.map(i => [i.keyword, i.flags, i.exec])).toEqual([
      ["COPY", { from: "build" }, undefined],
      ["HEALTHCHECK", { interval: "5s" }, ["node", "-e", "1"]],
      ["CMD", {}, ["node", "a.js"]],
    ]);
  });

  it("expands the global build arguments in FROM, and refuses one that no ARG sets", () => {
    const stages = parseDockerfile(
      'ARG BASE="node:24-bookworm-slim"\nARG DIGEST=sha256:abc\nFROM ${BASE}@$DIGEST AS build\nFROM ${BASE}@${DIGEST}\n',
    );
    expect(stages.map(s => [s.from, s.image, s.name])).toEqual([
      ["${BASE}@$DIGEST", "node:24-bookworm-slim@sha256:abc", "build"],
      ["${BASE}@${DIGEST}", "node:24-bookworm-slim@sha256:abc", undefined],
    ]);
    expect(() => parseDockerfile("ARG IMAGE\nFROM ${IMAGE}\n")).toThrow(/IMAGE/);
    expect(() => parseDockerfile("FROM ${IMAGE}\n")).toThrow(/IMAGE/);
  });

  it("splits image references into repository, tag and digest", () => {
    expect(parseImageReference("node:24-bookworm-slim@sha256:ab")).toEqual({
      repository: "node",
      tag: "24-bookworm-slim",
      digest: "sha256:ab",
    });
    expect(parseImageReference("node")).toEqual({ repository: "node", tag: undefined, digest: undefined });
    expect(parseImageReference("registry:5000/node@sha256:ab")).toEqual({
      repository: "registry:5000/node",
      tag: undefined,
      digest: "sha256:ab",
    });
  });

  describe("baseImageProblems", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const pinned = `node:24-bookworm-slim@${digest}`;
    const dockerfile = (arg: string, ...froms: string[]) =>
      parseDockerfile(
        `ARG NODE_IMAGE=${arg}\n` + froms.map((f, i) => `FROM ${f} AS s${i}\nRUN true\n`).join(""),
      );
    const problems = (arg: string, ...froms: string[]) =>
      baseImageProblems(
        dockerfile(arg, ...(froms.length ? froms : ["${NODE_IMAGE}", "${NODE_IMAGE}"])),
        "24",
      );

    it("accepts stages that all use one node:<major>-bookworm-slim image pinned by digest, through one ARG", () => {
      expect(problems(pinned)).toEqual([]);
      expect(problems(`node:24.18.0-bookworm-slim@${digest}`)).toEqual([]);
    });

    it.each([
      ["without a digest", "node:24-bookworm-slim", /not pinned by digest/],
      [
        "with a digest that is not sha256:<64 hex>",
        "node:24-bookworm-slim@sha256:abc",
        /not pinned by digest/,
      ],
      ["on the latest tag", `node:latest@${digest}`, /tag must be <major>-bookworm-slim, not latest/],
      ["without a tag", `node@${digest}`, /tag must be <major>-bookworm-slim, not none/],
      ["on a floating lts tag", `node:lts-bookworm-slim@${digest}`, /tag must be/],
      ["on another Debian", `node:24-alpine@${digest}`, /tag must be/],
      ["on another major than the engines'", `node:20-bookworm-slim@${digest}`, /Node 20, but .* Node 24/],
      ["of another image", `nodejs:24-bookworm-slim@${digest}`, /not the official node image/],
    ])("refuses a base image %s", (_what, image, message) => {
      expect(problems(image).join("\n")).toMatch(message);
    });

    it("refuses stages that name the image apart from the ARG, or use different images", () => {
      expect(problems(pinned, "${NODE_IMAGE}", pinned).join("\n")).toMatch(/same build ARG/);
      expect(problems(pinned, pinned, pinned).join("\n")).toMatch(/same build ARG/);
      const other = `node:24-bookworm-slim@sha256:${"b".repeat(64)}`;
      expect(problems(pinned, "${NODE_IMAGE}", other).join("\n")).toMatch(/different images/);
    });
  });

  it("matches .dockerignore globs, directories with their contents, and exceptions", () => {
    const ignored = dockerIgnoreMatcher("node_modules\n*.log\n**/*.tmp\ndocs\n!docs/keep.md\n");
    expect(["node_modules/x/y.js", "a.log", "a/b/c.tmp", "docs/other.md"].every(ignored)).toBe(true);
    expect(["src/a.log", "docs/keep.md", "package.json"].some(ignored)).toBe(false);
  });
});
