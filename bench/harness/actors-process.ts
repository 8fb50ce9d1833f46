import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Servers } from "./stack";

/** This checkout. */
export const ROOT = path.resolve(__dirname, "../..");

/** The environment of an actors node (bin/start.ts, SERVICES=actors) on a topic, group and database of its own. */
export function actorsEnv(
  servers: Servers,
  run: { topic: string; groupId: string; partitions: number; databaseUrl: string },
): Record<string, string> {
  return {
    SERVICES: "actors",
    KAFKA_BROKERS: servers.brokers,
    KAFKA_TOPIC: run.topic,
    KAFKA_GROUP_ID: run.groupId,
    KAFKA_PARTITIONS: String(run.partitions),
    DATABASE_URL: run.databaseUrl,
    REDIS_URL: servers.redisUrl,
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    // Info, to see the partition assignment.
    LOG_LEVEL: "info",
  };
}

export interface ActorsProcessOptions {
  env: Record<string, string>;
  /** Node's arguments before bin/start.ts, the TypeScript hook among them (`--import tsx`). */
  nodeArgs: string[];
  /** The checkout whose bin/start.ts runs (default: this one). */
  root?: string;
  /** Each line the process prints. */
  onLine?: (line: string) => void;
}

/** An actors node of a checkout in a process of its own, as in production: its work shares no event loop with the bench's. */
export class ActorsProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  /** When its partitions were assigned (performance.now()), from its log. */
  assignedAt: number | null = null;
  /** Its last 50 lines, for the error when it fails. */
  readonly tail: string[] = [];

  constructor(o: ActorsProcessOptions) {
    const root = o.root ?? ROOT;
    this.child = spawn(process.execPath, [...o.nodeArgs, path.join(root, "bin/start.ts")], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const read = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        if (this.assignedAt === null && /assigned partitions \[\d/.test(line))
          this.assignedAt = performance.now();
        o.onLine?.(line);
        this.tail.push(line);
        if (this.tail.length > 50) this.tail.shift();
      }
    };
    this.child.stdout!.on("data", read);
    this.child.stderr!.on("data", read);
    this.exited = new Promise(resolve => this.child.on("exit", () => resolve()));
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("the actors process did not start");
    return this.child.pid;
  }

  /** Fails with the process's last lines if it exited, or did not get there by `deadline` (Date.now()). */
  assertAlive(deadline = Infinity, what = "too late"): void {
    if (this.child.exitCode !== null) throw new Error(`actors process exited:\n${this.tail.join("\n")}`);
    if (Date.now() > deadline) throw new Error(`${what}:\n${this.tail.join("\n")}`);
  }

  /** Resolves with the time of its partition assignment. */
  async waitForAssignment(timeoutMs = 60000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.assignedAt === null) {
      this.assertAlive(deadline, `no partition assignment in ${timeoutMs} ms`);
      await sleep(5);
    }
    return this.assignedAt;
  }

  signal(name: NodeJS.Signals): void {
    this.child.kill(name);
  }

  /** SIGTERM, and the exit; SIGKILL if it has not exited after `killAfterMs`. */
  async stop(killAfterMs = Infinity): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGTERM");
    if (killAfterMs === Infinity) return this.exited;
    await Promise.race([this.exited, sleep(killAfterMs)]);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}
