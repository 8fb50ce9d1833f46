import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { startFakeGateway, type FakeGateway } from "../replay/fake-gateway";
import { barTime, dailyBars, tempDir, yahooCsv } from "../replay/helpers";

const ROOT = path.resolve(__dirname, "../../..");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run replay -- ...` as a child process (the gateways are in this process). */
function replay(args: string[]): Promise<Run> {
  return new Promise(resolve => {
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "bin/replay.ts"), ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? "" }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("npm run replay against the app it is pointed at", () => {
  let a: FakeGateway;
  let b: FakeGateway;
  let tmp: ReturnType<typeof tempDir>;
  const bars = dailyBars(120);
  const args = (app: FakeGateway) => [
    path.join(tmp.dir, "AAA.csv"),
    "--url",
    app.base,
    "--state-dir",
    path.join(tmp.dir, "state"),
    "--batch",
    "50",
    "--report-timeout",
    "20",
  ];

  beforeEach(async () => {
    [a, b] = await Promise.all([startFakeGateway(), startFakeGateway()]);
    tmp = tempDir();
    fs.writeFileSync(path.join(tmp.dir, "AAA.csv"), yahooCsv(bars));
  });

  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    tmp.cleanup();
  });

  const reportRow = (run: Run) => run.stdout.split("\n").find(l => l.startsWith("AAA "));

  it("run again into a fresh app, sends every row again and prints a complete report", async () => {
    const first = await replay(args(a));
    expect({ code: first.code, row: reportRow(first) }).toEqual({
      code: 0,
      row: expect.stringContaining("120"),
    });

    const second = await replay(args(b));
    expect(second.stderr).toMatch(
      /AAA: the app holds no tick of AAA, fewer than the 120 the state .* says it was sent \(another app, or its data was removed\): sending lines 2-121 again/,
    );
    expect(second.stderr).not.toMatch(/already replayed completely/);
    expect(second.stderr).toMatch(/AAA: done: 120 of 120 rows resolved, 120 accepted \(120 by this run\)/);
    expect((b.accepted.get("AAA") ?? []).map(t => t.timestamp)).toEqual(bars.map(x => barTime(x.date)));
    expect(reportRow(second)).toMatch(/^AAA\s+120\s/);
    expect(second.code).toBe(0);
  }, 60_000);

  it("with nothing to send and an app it cannot ask, says why, prints no report and exits 1", async () => {
    expect((await replay(args(a))).code).toBe(0);
    a.queryDown = "Postgres unreachable";
    const again = await replay(args(a));
    expect(again.stderr).toMatch(/AAA: cannot ask the app what it holds of AAA \(.*503 POSTGRES_UNAVAILABLE/);
    expect(again.stderr).toMatch(
      /AAA: cannot tell whether the app holds the rows the state says it was sent .*: run again once the app answers/,
    );
    expect(again.stderr).not.toMatch(/waiting until the app has analysed/);
    expect(again.stdout).toBe("");
    expect(again.code).toBe(1);
  }, 60_000);
});
