import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import { mountsOf, parseCompose } from "./compose";
import { exportedSeries, TARGET_LABELS } from "./metric-series";
import { promReferences } from "./promql";
import { readText, readYamlDocuments, ROOT } from "./repo-files";

/**
 * The alerting rules (grafana/prometheus/alerts.yml and the PrometheusRule of k8s/monitoring):
 * promtool's own checks and unit tests, the metrics and labels they name against what the nodes
 * export, and where they are loaded (compose, the local Prometheus, the Prometheus Operator).
 */

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

const RULES_FILE = "grafana/prometheus/alerts.yml";
const RULES_TESTS = "grafana/prometheus/alerts.test.yml";
const rules = readYamlDocuments(path.join(ROOT, RULES_FILE))[0].value as RuleFile;
const alerts = rules.groups.flatMap(g => g.rules).filter(r => r.alert);
const prometheusRule = readYamlDocuments(path.join(ROOT, "k8s/monitoring/prometheusrule.yaml"))[0].value as {
  kind: string;
  spec: RuleFile;
};
const series = exportedSeries();
/** Series Prometheus itself adds to every target. */
const SCRAPE_SERIES = new Map([["up", new Set(["job", "instance"])]]);
/** The scrape jobs of this repository's Prometheus configurations and of the ServiceMonitor. */
const JOBS = ["stock-analytics", "stock-metrics"];

/** promtool, or null; with CI=true a missing promtool fails the run instead of skipping. */
const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find(f => fs.existsSync(f)) ?? null;
if (!promtool) {
  const message = "promtool missing (apt-get install prometheus): the alerting rules are not run through it";
  if (process.env.CI === "true") throw new Error(message);
  console.warn(message);
}
const withPromtool = promtool ? it : it.skip;

function runPromtool(args: string[], cwd: string): { code: number | null; output: string } {
  const r = spawnSync(promtool!, args, { cwd, encoding: "utf8" });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

/** GitHub's anchor of a Markdown heading. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, "")
    .replace(/ /g, "-");

describe("alerting rules (grafana/prometheus/alerts.yml)", () => {
  withPromtool("pass `promtool check rules`, as the file and as the PrometheusRule's groups", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stock-rules-"));
    try {
      fs.writeFileSync(path.join(dir, "operator.yml"), stringify(prometheusRule.spec));
      for (const file of [path.join(ROOT, RULES_FILE), path.join(dir, "operator.yml")]) {
        const r = runPromtool(["check", "rules", file], dir);
        expect({ file: path.basename(file), code: r.code, output: r.output }).toMatchObject({ code: 0 });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  withPromtool("pass their unit tests (`promtool test rules alerts.test.yml`), one or more per alert", () => {
    const r = runPromtool(
      ["test", "rules", path.basename(RULES_TESTS)],
      path.dirname(path.join(ROOT, RULES_TESTS)),
    );
    expect({ code: r.code, output: r.output }).toMatchObject({ code: 0 });
    const tests = readYamlDocuments(path.join(ROOT, RULES_TESTS))[0].value as {
      rule_files: string[];
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    expect(tests.rule_files).toEqual([path.basename(RULES_FILE)]);
    const fired = new Set(
      tests.tests.flatMap(t =>
        (t.alert_rule_test ?? []).filter(a => a.exp_alerts.length > 0).map(a => a.alertname),
      ),
    );
    expect(alerts.map(a => a.alert).filter(a => !fired.has(a!))).toEqual([]);
  });

  it("cover lag growth, stalled partitions, stopped result writes, dead letters, ingest 5xx, silent nodes and the snapshot cache", () => {
    const uses = (metric: string) => alerts.filter(a => promReferences(a.expr).metrics.includes(metric));
    expect(uses("stock_consumer_lag").length).toBeGreaterThanOrEqual(2);
    expect(uses("stock_partition_stalled").length).toBeGreaterThanOrEqual(1);
    expect(uses("stock_batch_persist_latency_seconds_bucket").length).toBeGreaterThanOrEqual(1);
    expect(uses("stock_snapshot_cache_up")).toHaveLength(1);
    expect(uses("stock_dead_letters_total")).toHaveLength(1);
    expect(uses("moleculer_request_error_total")).toHaveLength(1);
    expect(uses("up").length).toBeGreaterThanOrEqual(2);
    // Partitions never wait for Redis any more: no rule may key on a stall reason that cannot occur.
    expect(alerts.filter(a => /reason\s*!?=~?\s*"redis"/.test(a.expr)).map(a => a.alert)).toEqual([]);
    expect(alerts.some(a => /\babsent\(/.test(a.expr))).toBe(true);
  });

  it("name only series the nodes export (or Prometheus adds), with labels those series carry", () => {
    const problems: string[] = [];
    for (const a of alerts) {
      const refs = promReferences(a.expr);
      const labels = new Set<string>(["__name__", ...TARGET_LABELS]);
      for (const m of refs.metrics) {
        const known = series.get(m)?.labels ?? SCRAPE_SERIES.get(m);
        if (known) known.forEach(l => labels.add(l));
        else problems.push(`${a.alert}: no series ${m}`);
      }
      for (const l of refs.labels) if (!labels.has(l)) problems.push(`${a.alert}: no label ${l}`);
      for (const m of a.expr.matchAll(/\bup\{job=~"([^"]+)"\}/g)) {
        const jobs = new RegExp(`^(?:${m[1]})$`);
        for (const job of JOBS) if (!jobs.test(job)) problems.push(`${a.alert}: job ${job} not matched`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("give every alert a severity, a summary and a runbook section of docs/runbook.md that exists", () => {
    const anchors = new Set(
      [...readText("docs/runbook.md").matchAll(/^#{1,6} (.+)$/gm)].map(m => anchorOf(m[1])),
    );
    for (const a of alerts) {
      const runbook = /^docs\/runbook\.md#(.+)$/.exec(a.annotations?.runbook_url ?? "");
      expect({
        alert: a.alert,
        severity: ["warning", "critical"].includes(a.labels?.severity ?? ""),
        summary: Boolean(a.annotations?.summary),
        runbook: Boolean(runbook && anchors.has(runbook[1])),
      }).toEqual({ alert: a.alert, severity: true, summary: true, runbook: true });
    }
  });

  it("ship the same groups to the Prometheus Operator (k8s/monitoring/prometheusrule.yaml)", () => {
    expect(prometheusRule.kind).toBe("PrometheusRule");
    expect(prometheusRule.spec).toEqual(rules);
  });

  it("are loaded by the Prometheus of compose.yaml and of a local run", () => {
    const compose = parseCompose(readText("compose.yaml"));
    const mounts = mountsOf(compose.services.prometheus);
    const config = readYamlDocuments(path.join(ROOT, "compose/prometheus.yml"))[0].value as {
      rule_files?: string[];
    };
    expect(config.rule_files?.length).toBeGreaterThan(0);
    for (const file of config.rule_files ?? []) {
      const mount = mounts.find(m => m.target === file);
      expect({ file, source: mount?.source }).toEqual({ file, source: `./${RULES_FILE}` });
    }
    const local = readYamlDocuments(path.join(ROOT, "grafana/prometheus/prometheus.yml"))[0].value as {
      rule_files?: string[];
    };
    expect((local.rule_files ?? []).map(f => path.join("grafana/prometheus", f))).toEqual([RULES_FILE]);
  });
});
