import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../lib/net";
import { ROOT, waitFor } from "./stack";

/** The jars `stack/stack.sh up` fetched; the global setup runs it, so they are there. */
const KAFKA_LIBS = path.join(ROOT, ".stack/kafka/libs");

/**
 * Kafka's own cluster ids are 16 random bytes in URL-safe base64 without padding; one starting with
 * "-" would read as a command-line flag, so Kafka never hands those out and neither do we.
 */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

/**
 * A one-node KRaft broker of its own, for tests that must stop and restart Kafka: the shared broker
 * on 9092 serves every other test file and engineer, so it is never touched. Same jars and settings
 * as stack/stack.sh, other ports, a temporary data directory that survives `stop()`/`start()` (so
 * topics and their messages do) and goes away with `destroy()`.
 */
export class PrivateKafka {
  readonly dir: string;
  private readonly dataDir: string;
  private readonly configFile: string;
  private ports: { broker: number; controller: number } | null = null;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private output: string[] = [];
  private readonly killOnExit = () => this.child?.kill("SIGKILL");

  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "private-kafka-"));
    this.dataDir = path.join(this.dir, "data");
    this.configFile = path.join(this.dir, "server.properties");
  }

  /** `host:port` for KAFKA_BROKERS; fixed by the first `start()` and kept across restarts. */
  get brokers(): string {
    if (!this.ports) throw new Error("the private broker has not been started yet");
    return `127.0.0.1:${this.ports.broker}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts the broker (formatting its storage the first time) and resolves once it serves requests.
   * The first start picks its ports just before the broker binds them: if another process took one
   * in between, it starts afresh on new ports. Later starts keep the ports (clients know them).
   */
  async start(timeoutMs = 90000): Promise<void> {
    if (this.running) return;
    if (!existsSync(path.join(KAFKA_LIBS, ".complete")))
      throw new Error(`no Kafka jars in ${KAFKA_LIBS}: run \`npm run stack:up\` first`);
    if (this.ports) return this.launch(timeoutMs);
    for (let attempt = 1; ; attempt++) {
      this.ports = { broker: await freePort(), controller: await freePort() };
      this.writeConfig();
      this.format();
      try {
        return await this.launch(timeoutMs);
      } catch (err) {
        const collided = this.output.some(l => /Address already in use|BindException/.test(l));
        if (!collided || attempt >= 5) throw err;
        await this.stop("SIGKILL");
        rmSync(this.dataDir, { recursive: true, force: true });
      }
    }
  }

  private async launch(timeoutMs: number): Promise<void> {
    this.output = [];
    // Not detached: the broker belongs to this test process, and `exit` below kills it if the run dies.
    const child = spawn(
      "java",
      [
        "-Xms256m",
        "-Xmx256m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        `-Dlog4j.configuration=file:${path.join(this.dir, "log4j.properties")}`,
        "-cp",
        `${KAFKA_LIBS}/*`,
        "kafka.Kafka",
        this.configFile,
      ],
      { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) this.output.push(line);
      if (this.output.length > 2000) this.output.splice(0, this.output.length - 2000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.exited = new Promise(resolve => child.once("exit", () => resolve()));
    this.child = child;
    process.once("exit", this.killOnExit);
    // The port opens before the broker finishes recovering its logs; this line comes once it serves.
    // "close", not "exit": the broker's last words (why it stopped) are in the pipes until then.
    let exited = false;
    child.once("close", () => (exited = true));
    await waitFor(
      `the private Kafka broker on ${this.brokers} to start`,
      () => {
        // Thrown out of the wait (not retried by it): a broker that exited will not start.
        if (exited) return { failed: new Error(`the private Kafka broker exited:\n${this.tail()}`) };
        return this.output.some(l => l.includes("Kafka Server started")) && { failed: null };
      },
      timeoutMs,
      200,
    ).then(({ failed }) => {
      if (failed) throw failed;
    });
  }

  /** SIGTERM is a clean shutdown; SIGKILL a crash. Either way the data directory stays for `start()`. */
  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM", graceMs = 30000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill(signal);
    const escalate = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(escalate);
    process.removeListener("exit", this.killOnExit);
    this.child = null;
  }

  /** Kills the broker if it runs and removes its data; safe to call in any state, more than once. */
  async destroy(): Promise<void> {
    await this.stop("SIGKILL").catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  tail(lines = 30): string {
    return this.output.slice(-lines).join("\n");
  }

  private writeConfig(): void {
    const { broker, controller } = this.ports!;
    writeFileSync(
      this.configFile,
      [
        "process.roles=broker,controller",
        "node.id=1",
        `controller.quorum.voters=1@127.0.0.1:${controller}`,
        `listeners=PLAINTEXT://127.0.0.1:${broker},CONTROLLER://127.0.0.1:${controller}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${broker}`,
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        `log.dirs=${this.dataDir}`,
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "min.insync.replicas=1",
        "group.initial.rebalance.delay.ms=0",
        "",
      ].join("\n"),
    );
    writeFileSync(
      path.join(this.dir, "log4j.properties"),
      [
        "log4j.rootLogger=INFO, stdout",
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
        "",
      ].join("\n"),
    );
  }

  private format(): void {
    const result = spawnSync(
      "java",
      [
        "-XX:TieredStopAtLevel=1",
        "-cp",
        `${KAFKA_LIBS}/*`,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        clusterId(),
        "-c",
        this.configFile,
      ],
      { cwd: this.dir, encoding: "utf8", timeout: 120000 },
    );
    if (result.status !== 0)
      throw new Error(`formatting the private broker's storage failed:\n${result.stdout}\n${result.stderr}`);
  }
}
