import os from "node:os";
import { GiB, fmt } from "./figures";

/** Printing a bench's output: blocks of lines, tables, and the machine a run was taken on. */

/** Prints the lines as one block. */
export const printLines = (...lines: string[]) => console.log(lines.join("\n"));

/** Columns padded to their widest cell, the first left-aligned, the others right-aligned. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map(w => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

/** The machine, as the benches' headers describe it. */
export const machine = {
  cpus: () => `${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}`,
  memory: () => `${fmt(os.totalmem() / GiB, 1)} GiB RAM`,
  load: (digits = 2) =>
    os
      .loadavg()
      .map(l => l.toFixed(digits))
      .join(" "),
};
