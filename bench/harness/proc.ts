import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";

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
export interface CpuUse {
  actors: number;
  postgres: number;
  kafka: number;
  other: number;
}

export function cpuUsedBetween(before: CpuReading, after: CpuReading, actorsPid: number): CpuUse {
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
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (kb) return Number(kb[1]) * 1024;
  } catch {
    // Not Linux: ps below.
  }
  return (
    Number(
      execFileSync("ps", ["-o", "rss=", "-p", String(pid)])
        .toString()
        .trim(),
    ) * 1024
  );
}

/** Runs node with `args` until it exits, collecting what it printed. */
export function runNode(
  args: string[],
  cwd?: string,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", code => resolve({ code, out, err }));
  });
}
