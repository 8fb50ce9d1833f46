import { formatCount } from "./progress";

/** `2-4, 7, 10-12`, cut after `maxRanges` ranges with `and N more`. Lines must be ascending. */
export function formatLineRanges(lines: readonly number[], maxRanges = 8): string {
  const ranges: [number, number][] = [];
  for (const line of lines) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && line === last[1] + 1) last[1] = line;
    else ranges.push([line, line]);
  }
  const text = ranges.slice(0, maxRanges).map(([a, b]) => (a === b ? String(a) : `${a}-${b}`));
  const more = ranges.length - maxRanges;
  return more > 0 ? `${text.join(", ")} and ${more} more` : text.join(", ");
}

/**
 * Rows grouped by reason, most frequent first, each with its lines:
 *
 *   3 rows rejected by the gateway:
 *     high: must not be below opening_price or closing_price (lines 5, 9-10)
 */
export function describeRows(
  title: string,
  rows: readonly { line: number; reason: string }[],
  options: { total?: number; maxReasons?: number } = {},
): string[] {
  const total = options.total ?? rows.length;
  if (total === 0) return [];
  const byReason = new Map<string, number[]>();
  for (const r of rows) {
    const lines = byReason.get(r.reason);
    if (lines === undefined) byReason.set(r.reason, [r.line]);
    else lines.push(r.line);
  }
  const groups = [...byReason.entries()].sort((a, b) => b[1].length - a[1].length);
  const maxReasons = options.maxReasons ?? 10;
  const out = [`${formatCount(total)} ${total === 1 ? "row" : "rows"} ${title}:`];
  for (const [reason, lines] of groups.slice(0, maxReasons)) {
    lines.sort((a, b) => a - b);
    out.push(`  ${reason} (${lines.length === 1 ? "line" : "lines"} ${formatLineRanges(lines)})`);
  }
  if (groups.length > maxReasons) out.push(`  ... and ${groups.length - maxReasons} more reasons`);
  if (total > rows.length) out.push(`  (the first ${formatCount(rows.length)} are listed in the state file)`);
  return out;
}
