import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
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
        if (!this.running && this.exited) throw new Error(`${this.name} exited:\n${this.tail()}`);
        return this.output.find(l => pattern.test(l));
      },
      timeoutMs,
      100,
    );
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    if (this.child && this.running) this.child.kill(signal);
    return this.exited ?? Promise.resolve(null);
  }

  tail(lines = 40): string {
    return this.output.slice(-lines).join("\n");
  }
}
