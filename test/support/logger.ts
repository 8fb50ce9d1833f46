import type { Logger } from "../../lib/logger";

/** A Logger that keeps every line as "<level> <args joined by spaces>", for asserting what was logged. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add =
    (level: string) =>
    (...args: unknown[]) =>
      lines.push(`${level} ${args.map(String).join(" ")}`);
  return { lines, info: add("info"), warn: add("warn"), error: add("error"), debug: add("debug") };
}
