import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import v8 from "node:v8";
import vm from "node:vm";

/** The processes of this machine: what they used (Linux /proc), and node child processes run to their end. */

/** CPU seconds (user + system) used so far by each running process, by pid, with its command name. */
export type CpuReading = Map<number, { comm: string; seconds: number }>;

export function cpuByProcess(): CpuReading {
  const out: CpuReading = new Map();
  const tick = 100; // USER_HZ on Linux
  for (const entry of fs.existsSync("/proc") ? fs.readdirSync("/proc") : []) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      out.set(Number(entry), { comm, seconds: (Number(fields[11]) + Number(fields[12])) / tick });
    } catch {
      // The process ended meanwhile.
    }
  }
  return out;
}

/** CPU seconds used between two readings, by who used them. */
export function cpuUsedBetween(before: CpuReading, after: CpuReading, actorsPid: number) {
  const used = { actors: 0, postgres: 0, kafka: 0, other: 0 };
  for (const [pid, a] of after) {
    const d = a.seconds - (before.get(pid)?.seconds ?? 0);
    if (d <= 0) continue;
    if (pid === actorsPid) used.actors += d;
    else if (a.comm.startsWith("postgres")) used.postgres += d;
    else if (a.comm === "java") used.kafka += d;
    else used.other += d;
  }
  return used;
}

/** A process's resident set size in bytes. */
export function rssOf(pid: number): number {
  const kib = execFileSync("ps", ["-o", "rss=", "-p", String(pid)]).toString();
  return Number(kib.trim()) * 1024;
}

/** CPU microseconds (user + system, all threads) this process used since `start` (process.cpuUsage()). */
export function cpuMicrosSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

/** Runs node with `args` until it exits; the JSON after `prefix` on the last line it printed that starts so. */
export async function nodeJson<T>(what: string, args: string[], prefix = "", cwd?: string): Promise<T> {
  const child = spawn(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) =>
    child.on("error", reject).on("exit", resolve),
  );
  const line = out
    .split("\n")
    .filter(l => l.trim() && l.startsWith(prefix))
    .pop();
  if (code !== 0 || line === undefined) throw new Error(`${what} exited with ${code}:\n${err}\n${out}`);
  return JSON.parse(line.slice(prefix.length)) as T;
}

/** A full garbage collection in this process, without --expose-gc on its command line. */
export function collectGarbage(): void {
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}
