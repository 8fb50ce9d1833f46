import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ROOT, unique, type BenchStack } from "./stack";

/** A consumer group and a database of their own on `topic` (all removed at the end), and an actors node's environment for them. */
export async function actorsRun(stack: BenchStack, topic: string, prefix: string) {
  const groupId = unique(`${prefix}_group`);
  stack.atEnd(() => stack.dropKeys(stack.cacheKeys(`${groupId}:${topic}`)));
  const databaseUrl = await stack.database(prefix);
  const env = {
    SERVICES: "actors",
    KAFKA_BROKERS: stack.servers.brokers,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: groupId,
    KAFKA_PARTITIONS: String(stack.partitions),
    DATABASE_URL: databaseUrl,
    REDIS_URL: stack.servers.redisUrl,
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    // Info, to see the partition assignment.
    LOG_LEVEL: "info",
  };
  return { topic, groupId, databaseUrl, env };
}

export type ActorsRun = Awaited<ReturnType<typeof actorsRun>>;

export interface ActorsProcessOptions {
  /** The checkout whose bin/start.ts runs (default: this one). */
  root?: string;
  /** Modules loaded before bin/start.ts, in its process. */
  preload?: string[];
  /** Where `node --cpu-prof` writes the process's CPU profile. */
  profileDir?: string;
  onLine?: (line: string) => void;
}

/** An actors node in a process of its own, as in production: its work shares no event loop with the bench's. */
export class ActorsProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  /** When its partitions were assigned (performance.now()), from its log. */
  assignedAt: number | null = null;
  /** Its last 50 lines, for the error when it fails. */
  readonly tail: string[] = [];

  /** bin/start.ts through tsx's require hook, in `env` and nothing else of the bench's environment. */
  constructor(env: Record<string, string>, o: ActorsProcessOptions = {}) {
    const root = o.root ?? ROOT;
    const profile = o.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${o.profileDir}`] : [];
    const preload = (o.preload ?? []).flatMap(module => ["--require", module]);
    const args = [...profile, "--require", "tsx/cjs", ...preload, path.join(root, "bin/start.ts")];
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const read = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        if (this.assignedAt === null && /assigned partitions \[\d/.test(line))
          this.assignedAt = performance.now();
        o.onLine?.(line);
        if (this.tail.push(line) > 50) this.tail.shift();
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    this.exited = new Promise(resolve => child.on("exit", () => resolve()));
    this.child = child;
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("the actors process did not start");
    return this.child.pid;
  }

  /** Fails with the process's last lines if it exited, or did not get there by `deadline` (Date.now()). */
  assertAlive(deadline: number, what: string): void {
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

  /** SIGTERM, and the exit; SIGKILL if it has not exited after `killAfterMs`. */
  async stop(killAfterMs = Infinity): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGTERM");
    if (killAfterMs === Infinity) return this.exited;
    await Promise.race([this.exited, sleep(killAfterMs)]);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}
