import { execFile } from "node:child_process";
import path from "node:path";
import { parseMessage } from "../../../domain/messages";
import { parseGeneratorArgs } from "../../../generator/cli";
import {
  exitCodeFor,
  formatSummary,
  runGenerator,
  startGenerator,
  type GeneratorOptions,
} from "../../../generator/run";
import { startRecordingServer, type RecordingServer } from "./recording-server";

const ROOT = path.resolve(__dirname, "../../..");

function cliOptions(argv: string[]): GeneratorOptions {
  const command = parseGeneratorArgs(argv);
  if (command.help) throw new Error("unexpected --help");
  return command.options;
}

const messagesOf = (server: RecordingServer) =>
  server.requests.flatMap(r => (Array.isArray(r.body) ? r.body : [r.body]));
const withoutTimestamps = (messages: unknown[]) =>
  messages.map(m => ({ ...(m as Record<string, unknown>), timestamp: undefined }));

describe("the generator run", () => {
  let server: RecordingServer;
  afterEach(async () => server.close());

  it("delivers --count 50 at --rate 500 as 50 single-object POSTs the gateway accepts", async () => {
    server = await startRecordingServer();
    const summary = await runGenerator(
      cliOptions(["--url", server.url, "--count", "50", "--rate", "500", "--quiet"]),
    );

    expect(summary).toMatchObject({
      messages: 50,
      delivered: 50,
      requests: 50,
      ok: 50,
      failed: 0,
      stoppedBy: "count",
    });
    expect(summary.failures).toEqual({});
    expect(exitCodeFor(summary)).toBe(0);
    expect(server.requests).toHaveLength(50);
    for (const r of server.requests) {
      expect(r.method).toBe("POST");
      expect(r.url).toBe("/ingest");
      expect(r.headers["content-type"]).toBe("application/json");
      expect(r.headers.authorization).toBeUndefined();
      expect(Array.isArray(r.body)).toBe(false);
    }
    expect(messagesOf(server).filter(m => !parseMessage(m).ok)).toEqual([]);
    // The streams alternate, so half the messages are price ticks.
    expect(messagesOf(server).filter(m => !("data_type" in (m as object)))).toHaveLength(25);
  });

  it("counts every non-200 answer as a failure and reports a failing exit status", async () => {
    server = await startRecordingServer({ status: 500 });
    const summary = await runGenerator({ url: server.url, count: 20, rate: 1000, quiet: true });

    expect(summary).toMatchObject({ requests: 20, ok: 0, failed: 20, delivered: 0, messages: 20 });
    expect(summary.failures).toEqual({ "HTTP 500": 20 });
    expect(exitCodeFor(summary)).toBe(1);
    expect(formatSummary(summary)).toContain("HTTP 500: 20");
  });

  it("does not count 201 as delivered, as the course client does not", async () => {
    server = await startRecordingServer({ status: 201 });
    const summary = await runGenerator({ url: server.url, count: 3, rate: 1000, quiet: true });
    expect(summary.failures).toEqual({ "HTTP 201": 3 });
    expect(exitCodeFor(summary)).toBe(1);
  });

  it("counts a refused connection as a network failure", async () => {
    server = await startRecordingServer();
    await server.close();
    const summary = await runGenerator({ url: server.url, count: 5, rate: 1000, quiet: true });
    expect(summary.failures).toEqual({ ECONNREFUSED: 5 });
    expect(exitCodeFor(summary)).toBe(1);
  });

  it("posts JSON arrays with --batch, the last one holding the remainder", async () => {
    server = await startRecordingServer();
    const summary = await runGenerator(
      cliOptions(["--url", server.url, "--count", "25", "--batch", "10", "--rate", "1000", "--quiet"]),
    );

    expect(server.requests.map(r => (Array.isArray(r.body) ? r.body.length : "object"))).toEqual([10, 10, 5]);
    expect(summary).toMatchObject({ messages: 25, delivered: 25, requests: 3, ok: 3 });
    expect(messagesOf(server).filter(m => !parseMessage(m).ok)).toEqual([]);
  });

  it("sends the bearer token and the requested symbols", async () => {
    server = await startRecordingServer();
    await runGenerator(
      cliOptions([
        "--url",
        server.url,
        "--count",
        "40",
        "--rate",
        "2000",
        "--token",
        "s3cret",
        "--symbols",
        "3",
        "--quiet",
      ]),
    );
    expect(new Set(server.requests.map(r => r.headers.authorization))).toEqual(new Set(["Bearer s3cret"]));
    const symbols = new Set(
      messagesOf(server).flatMap(m => (m as { stock_symbol?: string }).stock_symbol ?? []),
    );
    expect([...symbols].every(s => ["S0001", "S0002", "S0003"].includes(s))).toBe(true);
  });

  it("sends the same content for the same --seed", async () => {
    server = await startRecordingServer();
    // One request at a time, so the server records them in the order they were built.
    const argv = [
      "--url",
      server.url,
      "--count",
      "30",
      "--rate",
      "3000",
      "--concurrency",
      "1",
      "--seed",
      "replay",
    ];
    argv.push("--model", "walk", "--quiet");
    await runGenerator(cliOptions(argv));
    const first = withoutTimestamps(messagesOf(server));
    server.requests.length = 0;
    await runGenerator(cliOptions(argv));
    expect(withoutTimestamps(messagesOf(server))).toEqual(first);
  });

  it("keeps at most --concurrency requests in flight over kept-alive connections", async () => {
    server = await startRecordingServer({ delayMs: 5 });
    const summary = await runGenerator({
      url: server.url,
      count: 80,
      rate: 100_000,
      concurrency: 4,
      quiet: true,
    });
    expect(summary.delivered).toBe(80);
    expect(server.maxInFlight()).toBe(4);
    expect(new Set(server.requests.map(r => r.remotePort)).size).toBeLessThanOrEqual(4);
    expect(new Set(server.requests.map(r => r.headers.connection))).toEqual(new Set(["keep-alive"]));
  });

  it("paces the schedule to the requested rate", async () => {
    server = await startRecordingServer();
    const summary = await runGenerator({ url: server.url, count: 60, rate: 200, quiet: true });
    // 60 messages at 200/s: the last one is due at 295 ms, so no run can be shorter.
    expect(summary.durationSeconds).toBeGreaterThan(0.25);
    // Only a schedule off by orders of magnitude: how much longer it takes is up to the machine.
    expect(summary.durationSeconds).toBeLessThan(20);
  }, 30000);

  it("stops on --duration", async () => {
    server = await startRecordingServer();
    const summary = await runGenerator({ url: server.url, durationSeconds: 0.3, rate: 100, quiet: true });
    expect(summary.stoppedBy).toBe("duration");
    expect(summary.requests).toBeGreaterThan(10);
    // Request j is due j * 10 ms after the start (within the 1 ms the schedule rounds): at most
    // this many fit in the time the run took, however late a loaded machine fired the timer.
    expect(summary.requests).toBeLessThanOrEqual(Math.floor(100 * (summary.durationSeconds + 0.001)) + 1);
    expect(summary.failed).toBe(0);
  });

  it("stops cleanly when its abort signal fires, as the demo feed does", async () => {
    server = await startRecordingServer();
    const feed = startGenerator({ url: server.url, model: "walk", rate: 200, quiet: true });
    // Stopped once it has sent a few, not after a fixed time a loaded machine may spend starting it.
    const deadline = Date.now() + 20000;
    while (server.requests.length <= 5 && Date.now() < deadline) await new Promise(r => setTimeout(r, 20));
    feed.stop();
    const summary = await feed.done;
    expect(summary.stoppedBy).toBe("signal");
    expect(summary.failed).toBe(0);
    expect(summary.delivered).toBeGreaterThan(5);
    expect(server.requests).toHaveLength(summary.requests);
  }, 30000);

  it("with no --rate posts one price tick and one additional message at once, as the course's two threads do", async () => {
    server = await startRecordingServer();
    const lines: string[] = [];
    const summary = await runGenerator({ url: server.url, count: 2, log: line => lines.push(line) });
    expect(summary).toMatchObject({ delivered: 2, stoppedBy: "count" });
    expect(summary.durationSeconds).toBeLessThan(1);
    const kinds = messagesOf(server).map(m => ("data_type" in (m as object) ? "additional" : "price"));
    expect(kinds.sort()).toEqual(["additional", "price"]);
    expect(lines.filter(l => l.startsWith("200 "))).toHaveLength(2);
  });

  it("logs every failure in the course's pacing, as the course script prints each one", async () => {
    server = await startRecordingServer({ status: 422 });
    const lines: string[] = [];
    await runGenerator({ url: server.url, count: 2, log: line => lines.push(line) });
    expect(lines).toHaveLength(2);
    expect(lines.every(l => l.startsWith("Failed to send data (HTTP 422: "))).toBe(true);
  });

  it("logs only the first failure of each kind when paced, with the gateway's answer", async () => {
    server = await startRecordingServer({ status: 500 });
    const lines: string[] = [];
    await runGenerator({ url: server.url, count: 10, rate: 1000, log: line => lines.push(line) });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("HTTP 500");
    expect(lines[0]).toContain("broken on purpose");
  });
});

describe("the generator options", () => {
  it("rejects options it cannot honour", async () => {
    await expect(runGenerator({ rate: -1 })).rejects.toThrow(/rate/);
    await expect(runGenerator({ url: "ftp://example.com" })).rejects.toThrow(/http/);
    await expect(runGenerator({ count: 1.5 })).rejects.toThrow(/count/);
  });
});

describe("the generator CLI", () => {
  let server: RecordingServer;
  afterEach(async () => server.close());

  const runCli = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      // Asynchronous: the server this child talks to runs on this process's event loop.
      const child = execFile(
        process.execPath,
        ["--import", "tsx", "bin/generator.ts", ...args],
        { cwd: ROOT, encoding: "utf8", timeout: 15_000 },
        (err, stdout) => {
          if (err !== null && typeof err.code !== "number") reject(err);
          else resolve({ code: child.exitCode, stdout });
        },
      );
    });

  it("exits 1 and prints the summary when the gateway fails", async () => {
    server = await startRecordingServer({ status: 503 });
    const result = await runCli(["--url", server.url, "--count", "3", "--rate", "100", "--quiet"]);
    expect(result.stdout).toContain("HTTP 503: 3");
    expect(result.code).toBe(1);
  });

  it("exits 0 when every request is answered 200", async () => {
    server = await startRecordingServer();
    const result = await runCli([
      "--url",
      server.url,
      "--count",
      "4",
      "--rate",
      "100",
      "--batch",
      "2",
      "--quiet",
    ]);
    expect(result.stdout).toContain("4 sent, 4 delivered");
    expect(result.code).toBe(0);
  });
});
