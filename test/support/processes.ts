import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { freePort } from "../../lib/net";
import { ROOT, waitFor } from "./stack";

/** A real node process of the application (dist/bin/start.js), with its output kept for failures. */
export class AppProcess {
  readonly output: string[] = [];
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> | null = null;

  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
  ) {}

  start(): this {
    const child = spawn(process.execPath, [path.join(ROOT, "dist/bin/start.js")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) this.output.push(line);
      if (this.output.length > 5000) this.output.splice(0, this.output.length - 5000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.exited = new Promise(resolve => child.on("exit", code => resolve(code)));
    this.child = child;
    return this;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once a line matching `pattern` was printed. */
  waitForLine(pattern: RegExp, timeoutMs = 60000): Promise<string> {
    return waitFor(
      `${this.name} to print ${pattern}${this.running ? "" : " (process exited)"}`,
      () => {
        // The line first: a process may print it and exit before the next poll.
        const line = this.output.find(l => pattern.test(l));
        if (line !== undefined) return line;
        if (!this.running && this.exited) throw new Error(`${this.name} exited:\n${this.tail()}`);
        return undefined;
      },
      timeoutMs,
      100,
    );
  }

  /** Resolves with the exit code once the process has exited (null for a signal). */
  waitForExit(): Promise<number | null> {
    return this.exited ?? Promise.resolve(null);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    if (this.child && this.running) this.child.kill(signal);
    return this.exited ?? Promise.resolve(null);
  }

  tail(lines = 40): string {
    return this.output.slice(-lines).join("\n");
  }
}

/**
 * Starts an application process on ports picked just before (`freePort`) and waits for `ready`.
 * Between the pick and the process's own listen another process may take a port; the app then
 * exits with EADDRINUSE, and the start is tried again on fresh ports. Any other failure is thrown.
 */
export async function startOnFreePorts<K extends string>(
  name: string,
  portNames: readonly K[],
  env: (ports: Record<K, number>) => Record<string, string>,
  ready: (p: AppProcess, ports: Record<K, number>) => Promise<unknown>,
  attempts = 5,
): Promise<{ process: AppProcess; ports: Record<K, number> }> {
  for (let attempt = 1; ; attempt++) {
    const ports = {} as Record<K, number>;
    for (const key of portNames) ports[key] = await freePort();
    const p = new AppProcess(name, env(ports)).start();
    let settled = false;
    const died = p.waitForExit().then(code => {
      if (!settled) throw new Error(`${name} exited (code ${code}) before it was ready:\n${p.tail()}`);
    });
    const isReady = ready(p, ports);
    died.catch(() => undefined);
    isReady.catch(() => undefined);
    try {
      await Promise.race([isReady, died]);
      return { process: p, ports };
    } catch (err) {
      const collided = p.output.some(l => /EADDRINUSE|address already in use/i.test(l));
      await p.kill("SIGKILL");
      if (!collided || attempt >= attempts) throw err;
    } finally {
      settled = true;
    }
  }
}
