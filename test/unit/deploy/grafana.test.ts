import fs from "node:fs";
import path from "node:path";
import { loadConfig } from "../../../lib/config";
import { METRIC } from "../../../lib/metrics";
import { envOf, parseCompose } from "./compose";
import { exportedSeries, metricsEndpoint, TARGET_LABELS } from "./metric-series";
import { labelValuesQuery, promReferences } from "./promql";
import { listFiles, readText, readYamlDocuments, rel, ROOT } from "./repo-files";
import { checkSql, readSchema } from "./sql-schema";

/**
 * Static checks of grafana/: provisioning, and every query of every dashboard against what the
 * system really has: the tables, views and columns of migrations/*.sql, and the series a node's
 * /metrics exports (lib/metrics.ts plus Moleculer's own, named as the Prometheus reporter names them).
 */

interface DataSourceRef {
  type?: string;
  uid?: string;
}

interface Target {
  refId?: string;
  datasource?: DataSourceRef;
  rawSql?: string;
  expr?: string;
  format?: string;
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: DataSourceRef;
  targets?: Target[];
  panels?: Panel[];
  gridPos?: { x: number; y: number; w: number; h: number };
  fieldConfig?: {
    defaults?: {
      min?: number;
      max?: number;
      thresholds?: { steps: { value: number | null; color: string }[] };
    };
  };
}

interface Variable {
  name: string;
  type: string;
  datasource?: DataSourceRef;
  query?: string | { query?: string };
}

interface Annotation {
  name: string;
  datasource?: DataSourceRef;
  target?: Target;
}

interface Dashboard {
  uid: string;
  title: string;
  refresh?: string;
  panels: Panel[];
  templating?: { list: Variable[] };
  annotations?: { list: Annotation[] };
}

interface Query {
  dashboard: string;
  where: string;
  datasource?: DataSourceRef;
  sql?: string;
  expr?: string;
  format?: string;
  panel?: Panel;
}

interface ProvisionedDataSource {
  name: string;
  uid: string;
  type: string;
  url?: string;
}

const GRAFANA = path.join(ROOT, "grafana");
const provisioningFiles = (kind: string) =>
  listFiles(path.join(GRAFANA, "provisioning", kind), [".yaml", ".yml"]);
const datasources = provisioningFiles("datasources").flatMap(f =>
  readYamlDocuments(f).flatMap(d => (d.value as { datasources?: ProvisionedDataSource[] }).datasources ?? []),
);
const providers = provisioningFiles("dashboards").flatMap(f =>
  readYamlDocuments(f).flatMap(
    d =>
      (
        d.value as {
          providers?: { type: string; folder?: string; folderUid?: string; options: { path: string } }[];
        }
      ).providers ?? [],
  ),
);
const dashboardFiles = listFiles(path.join(GRAFANA, "dashboards"), [".json"]);
const dashboards = dashboardFiles.map(f => ({
  file: rel(f),
  dashboard: JSON.parse(fs.readFileSync(f, "utf8")) as Dashboard,
}));
const dashboardTitled = (title: string) => {
  const found = dashboards.find(d => d.dashboard.title === title);
  if (!found) throw new Error(`no dashboard titled "${title}" in grafana/dashboards`);
  return found.dashboard;
};

const schema = readSchema(path.join(ROOT, "migrations"));
const series = exportedSeries();
const DEFAULTS = loadConfig({});
const byUid = new Map(datasources.map(d => [d.uid, d]));
const POSTGRES_TYPES = ["postgres", "grafana-postgresql-datasource"];
const isPostgres = (ref?: DataSourceRef) => POSTGRES_TYPES.includes(byUid.get(ref?.uid ?? "")?.type ?? "");
const isPrometheus = (ref?: DataSourceRef) => byUid.get(ref?.uid ?? "")?.type === "prometheus";
/** Series Prometheus itself adds to every target. */
const SCRAPE_SERIES = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);

function flatPanels(panels: Panel[]): Panel[] {
  return panels.flatMap(p => [p, ...flatPanels(p.panels ?? [])]);
}

function queriesOf(title: string, d: Dashboard): Query[] {
  const out: Query[] = [];
  for (const panel of flatPanels(d.panels)) {
    for (const t of panel.targets ?? []) {
      out.push({
        dashboard: title,
        where: `panel "${panel.title}" ${t.refId}`,
        datasource: t.datasource ?? panel.datasource,
        sql: t.rawSql,
        expr: t.expr,
        format: t.format,
        panel,
      });
    }
  }
  for (const v of d.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const query = typeof v.query === "string" ? v.query : v.query?.query;
    const q: Query = { dashboard: title, where: `variable ${v.name}`, datasource: v.datasource };
    if (isPostgres(v.datasource)) q.sql = query;
    else q.expr = query;
    out.push(q);
  }
  for (const a of d.annotations?.list ?? []) {
    const t = a.target ?? {};
    out.push({
      dashboard: title,
      where: `annotation ${a.name}`,
      datasource: a.datasource ?? t.datasource,
      sql: t.rawSql,
      expr: t.expr,
    });
  }
  return out;
}

const queries = dashboards.flatMap(({ dashboard }) => queriesOf(dashboard.title, dashboard));
const sqlQueries = queries.filter(q => q.sql !== undefined);
const promQueries = queries.filter(q => q.expr !== undefined);

describe("Grafana provisioning (grafana/provisioning)", () => {
  it('provisions the Postgres datasource "stocks" and a Prometheus datasource, each with a fixed uid', () => {
    expect(datasources.map(d => d.uid)).toEqual([...new Set(datasources.map(d => d.uid))]);
    expect(datasources.find(d => d.name === "stocks")?.type).toMatch(
      /^(postgres|grafana-postgresql-datasource)$/,
    );
    expect(datasources.filter(d => d.type === "prometheus")).toHaveLength(1);
    for (const d of datasources) expect(d.uid).toMatch(/^[\w-]{1,40}$/);
  });

  it("loads grafana/dashboards through a file provider into a folder with a fixed uid", () => {
    expect(providers).toHaveLength(1);
    expect(providers[0].folder).toBe("Stock analytics");
    expect(providers[0].folderUid).toMatch(/^[\w-]{1,40}$/);
    expect(providers[0].type).toBe("file");
    expect(providers[0].options.path).toMatch(/\/dashboards$/);
    expect(dashboardFiles.length).toBeGreaterThanOrEqual(2);
  });

  it("documents every environment variable the provisioning files use in compose.yaml and the README", () => {
    const used = new Set<string>();
    for (const f of [...provisioningFiles("datasources"), ...provisioningFiles("dashboards")]) {
      for (const m of fs.readFileSync(f, "utf8").matchAll(/\$\{(\w+)\}|\$(\w+)/g)) {
        // $__name is Grafana's own (a comment may mention $__rate_interval), not the environment's.
        if (!(m[1] ?? m[2]).startsWith("__")) used.add(m[1] ?? m[2]);
      }
    }
    const env = Object.keys(envOf(parseCompose(readText("compose.yaml")).services.grafana));
    const readme = readText("grafana/README.md");
    for (const name of used) {
      expect({ name, compose: env.includes(name), readme: readme.includes(name) }).toEqual({
        name,
        compose: true,
        readme: true,
      });
    }
  });

  it("points the sample Prometheus configuration at the metrics port and path every node serves", () => {
    const config = readYamlDocuments(path.join(GRAFANA, "prometheus", "prometheus.yml"))[0].value as {
      scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    const endpoint = metricsEndpoint(DEFAULTS);
    for (const job of config.scrape_configs) {
      expect(job.metrics_path ?? "/metrics").toBe(endpoint.path);
      for (const target of job.static_configs.flatMap(s => s.targets)) {
        expect(target).toMatch(new RegExp(`:${DEFAULTS.metricsPort}$`));
      }
    }
  });
});

describe("Grafana dashboards (grafana/dashboards)", () => {
  it("parse, with unique uids, titles, panel ids and a layout inside 24 columns", () => {
    const uids = dashboards.map(d => d.dashboard.uid);
    expect(uids).toEqual([...new Set(uids)]);
    for (const { file, dashboard } of dashboards) {
      expect({ file, title: typeof dashboard.title, panels: Array.isArray(dashboard.panels) }).toEqual({
        file,
        title: "string",
        panels: true,
      });
      const panels = flatPanels(dashboard.panels);
      const ids = panels.map(p => p.id);
      expect(ids).toEqual([...new Set(ids)]);
      for (const p of panels) {
        expect({ file, panel: p.title, fits: Boolean(p.gridPos && p.gridPos.x + p.gridPos.w <= 24) }).toEqual(
          {
            file,
            panel: p.title,
            fits: true,
          },
        );
      }
    }
  });

  it("refresh every 5 s by default", () => {
    for (const { file, dashboard } of dashboards)
      expect({ file, refresh: dashboard.refresh }).toEqual({ file, refresh: "5s" });
  });

  it("use provisioned datasources only, by uid and with their type, in panels, variables and annotations", () => {
    const problems: string[] = [];
    for (const { dashboard } of dashboards) {
      for (const p of flatPanels(dashboard.panels)) {
        if (p.type !== "row" && !p.datasource)
          problems.push(`${dashboard.title}: panel "${p.title}" has no datasource`);
      }
    }
    for (const q of queries) {
      const ds = byUid.get(q.datasource?.uid ?? "");
      if (!ds)
        problems.push(
          `${q.dashboard} ${q.where}: datasource ${JSON.stringify(q.datasource)} is not provisioned`,
        );
      else if (q.datasource?.type && q.datasource.type !== ds.type) {
        problems.push(`${q.dashboard} ${q.where}: type ${q.datasource.type}, provisioned as ${ds.type}`);
      }
      if (q.sql !== undefined && !isPostgres(q.datasource))
        problems.push(`${q.dashboard} ${q.where}: SQL to ${ds?.type}`);
      if (q.expr !== undefined && !isPrometheus(q.datasource))
        problems.push(`${q.dashboard} ${q.where}: PromQL to ${ds?.type}`);
    }
    expect(problems).toEqual([]);
  });

  it("query in SQL only the tables, views and columns that migrations/*.sql create", () => {
    expect(sqlQueries.length).toBeGreaterThan(0);
    const problems = sqlQueries.flatMap(q =>
      checkSql(q.sql!, schema).problems.map(p => `${q.dashboard} ${q.where}: ${p}`),
    );
    expect(problems).toEqual([]);
  });

  it("compare stock_analysis.indicator only with the indicator names the view produces", () => {
    const names = schema.get("stock_analysis")!.literals;
    expect([...names].sort()).toEqual([
      "exponential_moving_average",
      "moving_average",
      "relative_strength_index",
    ]);
    for (const q of sqlQueries) {
      const refs = checkSql(q.sql!, schema);
      if (!refs.relations.includes("stock_analysis")) continue;
      for (const [column, literal] of refs.comparisons) {
        if (column === "indicator")
          expect({ where: q.where, literal, known: names.has(literal) }).toMatchObject({ known: true });
      }
    }
  });

  it("give every time series SQL a time column and bound it by the dashboard's time range", () => {
    for (const q of sqlQueries.filter(q => q.format === "time_series")) {
      const sql = q.sql!;
      expect({ where: q.where, time: /\$__timeGroupAlias|\$__timeGroup\(|AS "?time"?\b/i.test(sql) }).toEqual(
        {
          where: q.where,
          time: true,
        },
      );
      expect({ where: q.where, filtered: /\$__timeFilter\(|\$__timeFrom\(/.test(sql) }).toEqual({
        where: q.where,
        filtered: true,
      });
    }
  });

  it("query in PromQL only series a node's /metrics exports, with labels those series carry", () => {
    expect(promQueries.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const q of promQueries) {
      const variable = labelValuesQuery(q.expr!);
      const refs = variable
        ? { metrics: variable.metric ? [variable.metric] : [], labels: [variable.label] }
        : promReferences(q.expr!);
      if (!variable && refs.metrics.length === 0) problems.push(`${q.dashboard} ${q.where}: names no metric`);
      const labels = new Set<string>(["__name__", ...TARGET_LABELS]);
      for (const m of refs.metrics) {
        const s = series.get(m);
        if (s) s.labels.forEach(l => labels.add(l));
        else if (!SCRAPE_SERIES.has(m)) problems.push(`${q.dashboard} ${q.where}: no series ${m}`);
      }
      for (const l of refs.labels)
        if (!labels.has(l))
          problems.push(`${q.dashboard} ${q.where}: no label ${l} on ${refs.metrics.join(", ")}`);
    }
    expect(problems).toEqual([]);
  });

  it("define every $variable their queries use", () => {
    const problems: string[] = [];
    for (const { dashboard } of dashboards) {
      const defined = new Set((dashboard.templating?.list ?? []).map(v => v.name));
      for (const q of queriesOf(dashboard.title, dashboard)) {
        for (const m of `${q.sql ?? ""} ${q.expr ?? ""}`.matchAll(/\$\{(\w+)[^}]*\}|\$(\w+)/g)) {
          const name = m[1] ?? m[2];
          if (!name.startsWith("__") && !defined.has(name))
            problems.push(`${dashboard.title} ${q.where}: $${name}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  describe("Stock analytics", () => {
    const d = dashboardTitled("Stock analytics");
    const own = queriesOf(d.title, d);
    const panel = (title: string) => {
      const found = flatPanels(d.panels).find(p => p.title === title);
      if (!found) throw new Error(`no panel "${title}"`);
      return found;
    };
    const sqlOf = (p: Panel) => (p.targets ?? []).map(t => t.rawSql ?? "").join("\n");

    it("offers the symbols of aggregated_metrics as the $symbol variable", () => {
      const symbol = d.templating?.list.find(v => v.name === "symbol");
      expect(symbol?.query).toMatch(/^SELECT DISTINCT symbol FROM aggregated_metrics\b/);
      expect(isPostgres(symbol?.datasource)).toBe(true);
    });

    it("overlays SMA and EMA on the closing price of $symbol", () => {
      const sql = sqlOf(panel("Price with SMA and EMA"));
      for (const column of ["closing_price", "moving_average", "exponential_moving_average", "${symbol"]) {
        expect(sql).toContain(column);
      }
    });

    it("draws RSI on 0..100 with thresholds at RSI_OVERSOLD and RSI_OVERBOUGHT", () => {
      const rsi = panel("RSI");
      expect(sqlOf(rsi)).toContain("relative_strength_index");
      const defaults = rsi.fieldConfig?.defaults;
      expect([defaults?.min, defaults?.max]).toEqual([0, 100]);
      const steps = (defaults?.thresholds?.steps ?? []).map(s => s.value).filter(v => v !== null);
      expect(steps).toEqual([DEFAULTS.indicators.rsiOversold, DEFAULTS.indicators.rsiOverbought]);
    });

    it("shows signals as annotations and tables, aggregated_metrics as a table, volume from minute_buckets", () => {
      const relations = (q: Query) => checkSql(q.sql ?? "", schema).relations;
      expect(own.some(q => q.where.startsWith("annotation") && relations(q).includes("signals"))).toBe(true);
      const tables = flatPanels(d.panels)
        .filter(p => p.type === "table")
        .map(sqlOf);
      expect(tables.some(sql => /\bFROM signals\b/.test(sql))).toBe(true);
      expect(tables.some(sql => /\bFROM aggregated_metrics\b/.test(sql))).toBe(true);
      expect(sqlOf(panel("Volume per minute"))).toMatch(/\bFROM minute_buckets\b/);
    });
  });

  describe("Cluster", () => {
    const d = dashboardTitled("Cluster");
    const exprs = queriesOf(d.title, d)
      .map(q => q.expr ?? "")
      .join("\n");

    it("charts every metric lib/metrics.ts defines", () => {
      for (const name of Object.values(METRIC)) {
        const base = name.replace(/\./g, "_");
        expect({ metric: base, charted: new RegExp(`\\b${base}(_bucket)?\\b`).test(exprs) }).toEqual({
          metric: base,
          charted: true,
        });
      }
    });

    it("derives latency percentiles from histogram buckets and charts Moleculer's request rates", () => {
      for (const base of [
        METRIC.produceLatency,
        METRIC.applyLatency,
        METRIC.persistLatency,
        METRIC.snapshotLatency,
      ]) {
        const bucket = `${base.replace(/\./g, "_")}_bucket`;
        expect(exprs).toMatch(
          new RegExp(`histogram_quantile\\(0\\.99, sum by \\(le\\) \\(rate\\(${bucket}\\{`),
        );
      }
      expect(exprs).toMatch(/rate\(moleculer_request_total\{/);
      expect(exprs).toMatch(/sum by \(reason\) \(rate\(stock_ingest_rejected_total\{/);
      expect(exprs).toMatch(/sum by \(side\) \(rate\(stock_signals_total\{/);
    });
  });
});
