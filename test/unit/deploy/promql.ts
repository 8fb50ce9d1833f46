/**
 * The metric and label names a PromQL expression refers to. Enough of PromQL for dashboards:
 * selectors with label matchers, range vectors, functions, aggregations with by/without, vector
 * matching with on/ignoring/group_left/group_right, and Grafana's $variables.
 */

export interface PromReferences {
  metrics: string[];
  labels: string[];
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "bool",
  "and",
  "or",
  "unless",
  "inf",
  "nan",
]);

export function promReferences(expr: string): PromReferences {
  const labels: string[] = [];
  let text = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  text = text.replace(/\{([^}]*)\}/g, (_, matchers: string) => {
    for (const m of matchers.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)) labels.push(m[1]);
    return " ";
  });
  text = text.replace(
    /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/gi,
    (_, list: string) => {
      labels.push(
        ...list
          .split(",")
          .map(l => l.trim())
          .filter(Boolean),
      );
      return " ";
    },
  );
  text = text
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\$\{[^}]*\}|\$\w+/g, " ")
    .replace(/\boffset\s+\S+/gi, " ");
  const metrics: string[] = [];
  for (const m of text.matchAll(/(?<![\w.])[A-Za-z_:][\w:]*/g)) {
    const after = text.slice(m.index + m[0].length).trimStart();
    if (after.startsWith("(") || KEYWORDS.has(m[0].toLowerCase())) continue;
    metrics.push(m[0]);
  }
  return { metrics: [...new Set(metrics)], labels: [...new Set(labels)] };
}

/** Grafana's Prometheus variable query `label_values(metric, label)` (the metric is optional). */
export function labelValuesQuery(query: string): { metric?: string; label: string } | null {
  const m = /^\s*label_values\(\s*(?:([A-Za-z_:][\w:]*)(\{[^}]*\})?\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*$/.exec(
    query,
  );
  return m ? { metric: m[1], label: m[3] } : null;
}
