import os from "node:os";
import { GiB, fmt } from "./figures";

/** Prints the lines as one block. */
export const printLines = (...lines: string[]) => console.log(lines.join("\n"));

/** Columns padded to their widest cell, the first left-aligned, the others right-aligned. */
export function table(rows: string[][], indent = ""): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)));
  const line = (r: string[]) =>
    indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  const rule = indent + widths.map(w => "-".repeat(w)).join("  ");
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join("\n");
}

/** The machine and node a run was taken on, for a bench's header. */
export function machine(): string {
  const load = os.loadavg().map(l => l.toFixed(2));
  const cpu = `${os.cpus().length} x ${os.cpus()[0]?.model.trim() ?? "cpu"}`;
  return `node ${process.version}, ${cpu}, ${fmt(os.totalmem() / GiB, 1)} GiB RAM, ${os.type()} ${os.release()}, load average ${load.join(" ")}`;
}
